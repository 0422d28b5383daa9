import { createHash, createHmac } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { AuditEventSchema, type AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { ZONE_PATTERN } from "../../interceptors/mandate-claims.js";
import type { Store } from "../store/store.js";
import { storedPayload } from "./stored-payload.js";

/** One event as it arrived: the protobuf bytes and the zone its subject named. */
export interface IncomingEvent {
  readonly zone: string;
  readonly data: Uint8Array;
}

/** What one append did. */
export interface AppendResult {
  /** New rows. */
  readonly stored: number;
  /** Events already in the ledger (redeliveries), skipped. */
  readonly duplicates: number;
  /** Payloads that are not an AuditEvent, skipped (and reported by the caller). */
  readonly undecodable: number;
}

/**
 * The copies of an event's fields the ledger keeps beside its payload, for
 * filtering; `VerifyChain` checks them against the payload.
 */
export function filterColumns(event: AuditEvent) {
  return {
    type: event.type as number,
    decision: event.decision as number,
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

/** An event's time in microseconds since the epoch (0 when unset). */
export function eventMicros(event: AuditEvent): bigint {
  return event.time ? event.time.seconds * 1_000_000n + BigInt(Math.floor(event.time.nanos / 1_000)) : 0n;
}

/** Microseconds since the epoch as an ISO 8601 time Postgres reads exactly. */
function isoMicros(micros: bigint): string {
  const seconds = micros / 1_000_000n;
  const fraction = (micros % 1_000_000n).toString().padStart(6, "0");
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}

/** The chain's starting point: the "previous hash" of each zone's first row. */
export const GENESIS = Buffer.alloc(32);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The HMAC a row carries: over the previous row's HMAC, the zone, the
 * sequence and the payload, so an edited, deleted, inserted or reordered row
 * breaks the chain from that row on, and nobody without the audit key can
 * forge a consistent replacement.
 */
export function rowHmac(key: Buffer, prev: Buffer, zone: string, seq: number, payload: Uint8Array): Buffer {
  const position = Buffer.alloc(8);
  position.writeBigUInt64BE(BigInt(seq));
  return createHmac("sha256", key).update(prev).update(zone).update("\0").update(position).update(payload).digest();
}

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
export function eventKey(event: AuditEvent, payload: Uint8Array): string {
  return ledgerUuid(event.eventId || createHash("sha256").update(payload).digest("hex"));
}

/**
 * Appends audit events to the ledger, in one transaction per batch: events
 * already stored are skipped (at-least-once delivery becomes exactly-once
 * rows), each new event takes the next place in its zone's chain, and the
 * chain heads move, all or nothing. Concurrent appenders (several ledger
 * replicas) queue on the zones' chain heads, so a chain never forks.
 */
export class AuditLedger {
  readonly #store: Store;
  readonly #key: Buffer;

  /** @param key - the audit key (32 bytes) the row HMACs are made with. */
  constructor(store: Store, key: Buffer) {
    if (key.length < 32) throw new TypeError("the audit key must be at least 32 bytes");
    this.#store = store;
    this.#key = key;
  }

  /** Stores a batch. Rejects (storing nothing) when the store fails: the caller redelivers. */
  async append(batch: readonly IncomingEvent[]): Promise<AppendResult> {
    const events = new Map<string, { zone: string; event: AuditEvent; payload: Uint8Array }>();
    let undecodable = 0;
    let duplicates = 0;
    for (const incoming of batch) {
      let event: AuditEvent;
      try {
        event = fromBinary(AuditEventSchema, incoming.data);
      } catch {
        undecodable++;
        continue;
      }
      const zone = ZONE_PATTERN.test(event.zone) ? event.zone : incoming.zone;
      const id = eventKey(event, incoming.data);
      if (events.has(id)) duplicates++;
      else events.set(id, { zone, event, payload: incoming.data });
    }
    if (events.size === 0) return { stored: 0, duplicates, undecodable };

    const stored = await this.#store.transaction(async (tx) => {
      const { rows: known } = await tx.query<{ event_id: string }>("SELECT event_id FROM audit_events WHERE event_id = ANY($1::uuid[])", [[...events.keys()]]);
      for (const { event_id } of known) events.delete(event_id);
      duplicates += known.length;
      if (events.size === 0) return 0;

      const zones = [...new Set([...events.values()].map((e) => e.zone))].sort();
      await tx.query(
        `INSERT INTO audit_chain_heads (zone, seq, hmac) SELECT z, 0, $2 FROM unnest($1::text[]) AS z ON CONFLICT (zone) DO NOTHING`,
        [zones, GENESIS],
      );
      // Sorted, so two appenders lock shared zones in the same order and never deadlock.
      const { rows: heads } = await tx.query<{ zone: string; seq: string; hmac: Buffer }>(
        "SELECT zone, seq, hmac FROM audit_chain_heads WHERE zone = ANY($1::text[]) ORDER BY zone FOR UPDATE",
        [zones],
      );
      const chain = new Map<string, { seq: number; hmac: Buffer }>(heads.map((h) => [h.zone, { seq: Number(h.seq), hmac: Buffer.from(h.hmac) }]));
      const rows = [];
      for (const [id, { zone, event, payload }] of events) {
        const head = chain.get(zone)!;
        const seq = head.seq + 1;
        const hmac = rowHmac(this.#key, head.hmac, zone, seq, payload);
        const columns = filterColumns(event);
        const stored = storedPayload(payload, event, { event_id: id, ...columns });
        rows.push({
          zone,
          seq,
          event_id: id,
          time: isoMicros(eventMicros(event)),
          ...columns,
          payload: Buffer.from(stored.bytes).toString("hex"),
          slim: stored.slim,
          prev_hash: head.hmac.toString("hex"),
          hmac: hmac.toString("hex"),
        });
        chain.set(zone, { seq, hmac });
      }
      await tx.query(
        `INSERT INTO audit_events (zone, seq, event_id, time, type, decision, request_id, decision_id, client_id, session_id,
                                   root_session_id, resources, mandate_id, approval_id, payload, slim, prev_hash, hmac)
         SELECT zone, seq, event_id, time, type, decision, request_id, decision_id, client_id, session_id, root_session_id,
                resources, mandate_id, approval_id, decode(payload, 'hex'), slim, decode(prev_hash, 'hex'), decode(hmac, 'hex')
         FROM jsonb_to_recordset($1::jsonb) AS r(zone text, seq bigint, event_id uuid, time timestamptz, type smallint,
              decision smallint, request_id text, decision_id uuid, client_id text, session_id uuid, root_session_id uuid,
              resources text[], mandate_id uuid, approval_id uuid, payload text, slim boolean, prev_hash text, hmac text)`,
        [JSON.stringify(rows)],
      );
      await tx.query(
        `UPDATE audit_chain_heads h SET seq = n.seq, hmac = decode(n.hmac, 'hex')
         FROM jsonb_to_recordset($1::jsonb) AS n(zone text, seq bigint, hmac text) WHERE h.zone = n.zone`,
        [JSON.stringify([...chain].map(([zone, head]) => ({ zone, seq: head.seq, hmac: head.hmac.toString("hex") })))],
      );
      return rows.length;
    });
    return { stored, duplicates, undecodable };
  }
}
