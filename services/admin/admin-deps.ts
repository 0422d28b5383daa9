import { Code, type HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import type { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import type { DirectoryCache } from "../directory/directory-cache.js";
import { findZone, type ZoneRecord } from "../directory/zones.js";
import type { KeyEncryptionKey } from "../keys/key-encryption-key.js";
import type { ZoneKeyRing } from "../keys/zone-key-ring.js";
import { requestContextKey } from "../server/request-context.js";
import type { Queryable, Store } from "../store/store.js";
import { zoneSlug } from "../validation.js";

/** What the admin handlers need. */
export interface AdminDeps {
  readonly store: Store;
  readonly kek: KeyEncryptionKey;
  readonly keys: ZoneKeyRing;
  readonly directory: DirectoryCache;
  readonly audit: PublishingAuditSink;
  readonly now: () => number;
}

/** The zone named by a request, or NOT_FOUND. Every admin lookup starts here, so nothing crosses zones. */
export async function requireZone(db: Queryable, slug: string): Promise<ZoneRecord> {
  const zone = await findZone(db, zoneSlug(slug));
  if (!zone) throw caracalError(Code.NotFound, Reason.ZONE_NOT_FOUND, `zone ${slug} does not exist`);
  return zone;
}

/** NOT_FOUND for a named object of a zone. */
export function notFound(what: string, reason: Reason = Reason.NOT_FOUND) {
  return caracalError(Code.NotFound, reason, `${what} does not exist`);
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
