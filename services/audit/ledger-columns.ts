import { createHash } from "node:crypto";
import type { AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";

/** The fields of an `AuditEvent` the ledger keeps in columns (a decoded event has them all). */
export type LedgerFields = Pick<
  AuditEvent,
  "eventId" | "zone" | "requestId" | "decisionId" | "clientId" | "sessionId" | "rootSessionId" | "mandateId" | "approvalId" | "resources"
> & {
  type: number;
  decision: number;
  time?: { seconds: bigint; nanos: number } | undefined;
};

/**
 * The copies of an event's fields the ledger keeps beside its payload, for
 * filtering; `VerifyChain` checks them against the payload.
 */
export function filterColumns(event: LedgerFields) {
  return {
    type: event.type,
    decision: event.decision,
    request_id: event.requestId || null,
    decision_id: event.decisionId ? ledgerUuid(event.decisionId) : null,
    client_id: event.clientId || null,
    session_id: event.sessionId ? ledgerUuid(event.sessionId) : null,
    root_session_id: event.rootSessionId && event.rootSessionId !== event.sessionId ? ledgerUuid(event.rootSessionId) : null,
    resources: event.resources.length > 0 ? [...event.resources] : null,
    mandate_id: event.mandateId ? ledgerUuid(event.mandateId) : null,
    approval_id: event.approvalId ? ledgerUuid(event.approvalId) : null,
  };
}

/** Protobuf's Timestamp range, 0001-01-01 to 9999-12-31: what Postgres' timestamptz holds too. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

/**
 * Why the ledger's columns cannot hold an event faithfully, or undefined
 * when they can. Caracal's producers never publish such an event; anyone
 * else who can publish on the audit subjects might, and a row Postgres
 * refuses would fail its whole batch again on every redelivery, stopping
 * the ledger. So the ledger sets such an event aside (and reports it) instead.
 */
export function unstorable(event: LedgerFields): string | undefined {
  if (!smallint(event.type) || !smallint(event.decision)) return "type or decision out of range";
  if (event.time && (event.time.seconds < MIN_SECONDS || event.time.seconds > MAX_SECONDS || event.time.nanos < 0 || event.time.nanos > 999_999_999)) {
    return "time out of range";
  }
  // Postgres text cannot hold U+0000.
  if ([event.requestId, event.clientId, ...event.resources].some((text) => text.includes("\0"))) return "NUL in a text id";
  return undefined;
}

function smallint(value: number): boolean {
  return value >= -32_768 && value <= 32_767;
}

/** An event's time in microseconds since the epoch (0 when unset). */
export function eventMicros(event: LedgerFields): bigint {
  return event.time ? event.time.seconds * 1_000_000n + BigInt(Math.floor(event.time.nanos / 1_000)) : 0n;
}

/** Microseconds since the epoch as an ISO 8601 time Postgres reads exactly. */
export function isoMicros(micros: bigint): string {
  const seconds = micros / 1_000_000n;
  let fraction = micros % 1_000_000n;
  // Before 1970 the remainder is negative: borrow a second.
  const whole = fraction < 0n ? seconds - 1n : seconds;
  if (fraction < 0n) fraction += 1_000_000n;
  return `${new Date(Number(whole) * 1000).toISOString().slice(0, 19)}.${fraction.toString().padStart(6, "0")}Z`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An id as the ledger's uuid columns hold it: Caracal's ids are UUIDs;
 * anything else is mapped to a stable UUID-shaped digest of itself, so event
 * ids still de-duplicate and filters on other ids still match.
 */
export function ledgerUuid(id: string): string {
  if (UUID.test(id)) return id.toLowerCase();
  const h = createHash("sha256").update(id).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** The key the ledger stores an event under: its id, or for an event without one, its content. */
export function eventKey(eventId: string, payload: Uint8Array): string {
  return ledgerUuid(eventId || createHash("sha256").update(payload).digest("hex"));
}
