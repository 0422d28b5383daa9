import type { HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import type { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import type { DirectoryCache } from "../directory/directory-cache.js";
import type { KeyEncryptionKey } from "../keys/key-encryption-key.js";
import type { ZoneKeyRing } from "../keys/zone-key-ring.js";
import { requestContextKey } from "../server/request-context.js";
import type { Store } from "../store/store.js";

/** What the admin handlers need. */
export interface AdminDeps {
  readonly store: Store;
  readonly kek: KeyEncryptionKey;
  readonly keys: ZoneKeyRing;
  readonly directory: DirectoryCache;
  readonly audit: PublishingAuditSink;
  readonly now: () => number;
}

/**
 * After a committed change: clears this replica's caches and records who did
 * what. The operator is the client id of the verified admin mandate.
 */
export function changed(
  deps: AdminDeps,
  ctx: HandlerContext,
  change: { zone: string; action: string; attributes?: Record<string, string>; clientId?: string; resources?: string[]; scopes?: string[] },
): void {
  deps.directory.clear();
  const operator = ctx.values.get(verifiedMandateKey);
  const accepted = deps.audit.record({
    zone: change.zone,
    type: EventType.ADMIN_CHANGE,
    actor: operator?.client_id ?? "",
    action: change.action,
    attributes: change.attributes ?? {},
    clientId: change.clientId ?? "",
    resources: change.resources ?? [],
    scopes: change.scopes ?? [],
    requestId: ctx.values.get(requestContextKey)?.requestId ?? "",
  });
  // The change is committed either way; a full queue is loud in the logs.
  if (!accepted) ctx.values.get(requestContextKey)?.log.error({ action: change.action }, "admin change not audited: audit queue full");
}
