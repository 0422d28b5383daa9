import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { RevokeRequest, RevokeResponseSchema } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import { requestContextKey } from "../server/request-context.js";
import { requireZone } from "../directory/require-zone.js";
import { boundedText, identifier, invalidArgument } from "../validation.js";
import type { RevocationDeps } from "./revocation-deps.js";
import { recordRevocation, revocationMessage, type TargetKind } from "./revocation-rows.js";

// Mandate and session ids are UUIDs today; accept what a mandate's claims may hold.
const CLAIM_ID = /^[A-Za-z0-9._:-]{1,128}$/;
// Clocks differ a little between replicas; a cut-off this far ahead is still "now".
const FUTURE_LEEWAY_MS = 60_000;
// A revocation outlives every mandate it could cover by this margin (clock skew).
const EXPIRY_MARGIN_SECONDS = 60;

/**
 * `RevocationService.Revoke`: records the revocation and its outbox row in
 * one transaction, wakes the relay, and audits who revoked what and why.
 * Revoking a target already revoked (and still in force) returns that
 * revocation with `created: false`.
 */
export async function revoke(
  deps: RevocationDeps,
  request: RevokeRequest,
  ctx: HandlerContext,
): Promise<MessageInitShape<typeof RevokeResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  if (request.reason.trim() === "") throw invalidArgument("reason", "is required");
  const reason = boundedText(request.reason, "reason", 500);
  const now = deps.now();
  const target = request.target?.target;
  let kind: TargetKind;
  let key: string;
  let issuedBefore: Date | null = null;
  switch (target?.case) {
    case "mandateId":
    case "sessionId":
      if (!CLAIM_ID.test(target.value)) throw invalidArgument(`target.${target.case === "mandateId" ? "mandate_id" : "session_id"}`, "is not a mandate or session id");
      kind = target.case === "mandateId" ? "mandate" : "session";
      key = target.value;
      break;
    case "clientId":
      kind = "application";
      key = identifier(target.value, "target.client_id");
      issuedBefore = new Date(now);
      break;
    case "issuedBefore":
      kind = "zone";
      issuedBefore = timestampDate(target.value);
      if (issuedBefore.getTime() > now + FUTURE_LEEWAY_MS) throw invalidArgument("target.issued_before", "must not lie in the future");
      key = issuedBefore.toISOString();
      break;
    default:
      throw invalidArgument("target", "name a mandate_id, session_id, client_id or issued_before");
  }
  const lifetimeMs = (Math.max(zone.maxSessionTtlSeconds, zone.maxResourceTtlSeconds) + EXPIRY_MARGIN_SECONDS) * 1000;
  const revokedBy = ctx.values.get(verifiedMandateKey)?.client_id ?? "";
  const { row, created } = await deps.store.transaction((tx) =>
    recordRevocation(tx, {
      zoneId: zone.id,
      kind,
      key,
      issuedBefore,
      reason,
      revokedBy,
      createdAt: new Date(now),
      expiresAt: new Date(Math.min(now, issuedBefore?.getTime() ?? now) + lifetimeMs),
    }),
  );
  if (created) {
    deps.relay.wake();
    const accepted = deps.audit.record({
      zone: zone.slug,
      type: EventType.REVOCATION,
      actor: revokedBy,
      action: `revoked ${kind}`,
      attributes: { revocation_id: row.revocation_id, target: key, reason },
      requestId: ctx.values.get(requestContextKey)?.requestId ?? "",
      ...(kind === "application" ? { clientId: key } : {}),
      ...(kind === "session" ? { sessionId: key } : {}),
      ...(kind === "mandate" ? { mandateId: key } : {}),
    });
    if (!accepted) ctx.values.get(requestContextKey)?.log.error({ revocation_id: row.revocation_id }, "revocation not audited: audit queue full");
  }
  return { revocation: revocationMessage(row), created };
}
