import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  RevocationEventSchema,
  type RevocationEvent,
  type RevocationTarget as RevocationTargetMessage,
} from "../gen/caracal/revocation/v1/revocation_pb.js";
import { ZONE_PATTERN } from "./mandate-claims.js";
import type { RevocationEntry, RevocationTarget } from "./revocation-view.js";

/**
 * The entry a verifier holds for one `RevocationEvent` (the payload on
 * `caracal.revocations.<zone>`), or undefined when the event cannot be
 * honoured as it stands: no revocation, no id, a zone that is not a slug, no
 * target or an empty one, or an application target without `created_at` (its
 * cut-off).
 *
 * An event without `expires_at` is still honoured, and kept for as long as the
 * view runs: forgetting a revocation because a field is missing would admit
 * what an operator revoked, while keeping one too long only costs memory.
 *
 * @example
 * const entry = entryFromEvent(fromBinary(RevocationEventSchema, data));
 * if (entry) view.add(entry);
 */
export function entryFromEvent(event: RevocationEvent): RevocationEntry | undefined {
  const revocation = event.revocation;
  if (revocation === undefined || revocation.revocationId === "" || !ZONE_PATTERN.test(revocation.zone)) return undefined;
  const expiresAtMs = revocation.expiresAt === undefined ? Number.POSITIVE_INFINITY : msOf(revocation.expiresAt);
  if (Number.isNaN(expiresAtMs)) return undefined;
  const target = targetOf(revocation.target?.target, revocation.createdAt);
  if (target === undefined) return undefined;
  return { id: revocation.revocationId, zone: revocation.zone, target, expiresAtMs };
}

/**
 * The `RevocationEvent` that {@link entryFromEvent} turns back into `entry`:
 * what a test or an in-process publisher puts on the stream. Reason and
 * author are not part of an entry; pass them if the event should carry them.
 */
export function eventFromEntry(entry: RevocationEntry, extra: { reason?: string; revokedBy?: string; createdAtMs?: number } = {}): RevocationEvent {
  const target = entry.target;
  // An application cut-off travels as the revocation's creation time (see the proto).
  const createdAtMs = target.kind === "application" ? target.issuedBeforeMs : extra.createdAtMs;
  return create(RevocationEventSchema, {
    revocation: {
      revocationId: entry.id,
      zone: entry.zone,
      reason: extra.reason ?? "",
      revokedBy: extra.revokedBy ?? "",
      target: { target: protoTargetOf(target) },
      createdAt: createdAtMs === undefined ? undefined : timestampFromMs(createdAtMs),
      expiresAt: Number.isFinite(entry.expiresAtMs) ? timestampFromMs(entry.expiresAtMs) : undefined,
    },
  });
}

type ProtoTarget = RevocationTargetMessage["target"];

function targetOf(target: ProtoTarget | undefined, createdAt: Timestamp | undefined): RevocationTarget | undefined {
  switch (target?.case) {
    case "mandateId":
      return target.value === "" ? undefined : { kind: "mandate", mandateId: target.value };
    case "sessionId":
      return target.value === "" ? undefined : { kind: "session", sessionId: target.value };
    case "clientId": {
      const issuedBeforeMs = createdAt === undefined ? Number.NaN : msOf(createdAt);
      return target.value === "" || !Number.isFinite(issuedBeforeMs) ? undefined : { kind: "application", clientId: target.value, issuedBeforeMs };
    }
    case "issuedBefore": {
      const issuedBeforeMs = msOf(target.value);
      return Number.isFinite(issuedBeforeMs) ? { kind: "zone", issuedBeforeMs } : undefined;
    }
    default:
      return undefined;
  }
}

function protoTargetOf(target: RevocationTarget): ProtoTarget {
  switch (target.kind) {
    case "mandate":
      return { case: "mandateId", value: target.mandateId };
    case "session":
      return { case: "sessionId", value: target.sessionId };
    case "application":
      return { case: "clientId", value: target.clientId };
    case "zone":
      return { case: "issuedBefore", value: timestampFromMs(target.issuedBeforeMs) };
  }
}

/** Milliseconds of a timestamp; NaN for one outside what protobuf allows (nanos must be 0..999,999,999). */
function msOf(timestamp: Timestamp): number {
  if (timestamp.nanos < 0 || timestamp.nanos > 999_999_999) return Number.NaN;
  const ms = timestampMs(timestamp);
  return Number.isSafeInteger(ms) ? ms : Number.NaN;
}
