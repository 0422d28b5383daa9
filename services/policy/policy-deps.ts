import type { HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import type { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import type { Bus } from "../bus/bus.js";
import { requestContextKey } from "../server/request-context.js";
import type { Store } from "../store/store.js";
import type { ActivePolicySets } from "./active-policy-sets.js";
import type { PolicyEngine } from "./policy-engine.js";

/** What the policy handlers need. */
export interface PolicyDeps {
  readonly store: Store;
  readonly engine: PolicyEngine;
  /** Compiled active and stored versions, shared with the STS. */
  readonly policies: ActivePolicySets;
  /** Activations are announced on it so every replica switches at once. */
  readonly bus: Bus;
  readonly audit: PublishingAuditSink;
  /** The clock, ms since the epoch; injected by tests. */
  readonly now: () => number;
}

/** The operator behind a call: the client id of its verified admin mandate. */
export function operatorOf(ctx: HandlerContext): string {
  return ctx.values.get(verifiedMandateKey)?.client_id ?? "";
}

/** Audits a committed policy change; a full audit queue is loud in the logs, the change stands. */
export function policyChanged(
  deps: PolicyDeps,
  ctx: HandlerContext,
  change: { zone: string; action: string; version: number; attributes: Record<string, string> },
): void {
  const accepted = deps.audit.record({
    zone: change.zone,
    type: EventType.POLICY_CHANGE,
    actor: operatorOf(ctx),
    action: change.action,
    policySetVersion: BigInt(change.version),
    attributes: change.attributes,
    requestId: ctx.values.get(requestContextKey)?.requestId ?? "",
  });
  if (!accepted) ctx.values.get(requestContextKey)?.log.error({ action: change.action }, "policy change not audited: audit queue full");
}
