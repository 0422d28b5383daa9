import { randomUUID } from "node:crypto";
import { createContextKey } from "@connectrpc/connect";
import type { Logger } from "pino";

/** What every call carries from the edge of the server to its handler. */
export interface RequestContext {
  /** The caller's `x-request-id` when it is well-formed, otherwise a fresh UUID. */
  readonly requestId: string;
  /** A logger whose every line carries the request id. */
  readonly log: Logger;
}

/**
 * Typed context key for the per-call {@link RequestContext}. Handlers read it
 * with `ctx.values.get(requestContextKey)` rather than parsing headers.
 */
export const requestContextKey = createContextKey<RequestContext | undefined>(undefined, {
  description: "caracal request context",
});

// A caller-chosen id is echoed into logs and the audit ledger, so only a
// short, plain token is accepted; anything else is replaced, not trusted.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id to use for a call: the caller's when well-formed, else a new UUID. */
export function requestIdFrom(header: string | null): string {
  return header !== null && REQUEST_ID.test(header) ? header : randomUUID();
}
