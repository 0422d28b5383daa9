import { createHmac, createSecretKey, type KeyObject } from "node:crypto";
import { ZONE_PATTERN } from "../../interceptors/mandate-claims.js";
import type { Queryable, Store } from "../store/store.js";
import { eventKey, eventMicros, filterColumns, isoMicros, unstorable } from "./ledger-columns.js";
import { storedPayload } from "./stored-payload.js";
import { readLedgerFields } from "./wire-event.js";
import { topLevelFields } from "./wire-fields.js";

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
  /** Payloads that are not an AuditEvent the ledger can store, skipped (and reported by the caller). */
  readonly undecodable: number;
}

/** The chain's starting point: the "previous hash" of each zone's first row. */
export const GENESIS = Buffer.alloc(32);

/**
 * The HMAC a row carries: over the previous row's HMAC, the zone, the
 * sequence and the payload, so an edited, deleted, inserted or reordered row
 * breaks the chain from that row on, and nobody without the audit key can
 * forge a consistent replacement.
 */
export function rowHmac(key: Buffer | KeyObject, prev: Buffer, zone: string, seq: number, payload: Uint8Array): Buffer {
  const position = Buffer.alloc(8);
  position.writeBigUInt64BE(BigInt(seq));
  return createHmac("sha256", key).update(prev).update(zone).update("\0").update(position).update(payload).digest();
}

/** How many rows one INSERT carries (see `AuditLedger.append`). */
const INSERT_SLICE = 100;

/**
 * One statement for a slice of rows, as one array per column: far less work
 * for Postgres than a row per statement or a JSON document to take apart.
 * `resources` comes as array literals (`unnest` would flatten a 2-D array).
 * The bytes (payloads, then the previous and own HMACs, 32 bytes a row) come
 * each as one parameter, which goes over the wire as it is, where an array
 * of bytea would be hex text to encode here and decode there.
 */
const INSERT_ROWS = `INSERT INTO audit_events (zone, seq, event_id, time, type, decision, request_id, decision_id, client_id, session_id,
                                 root_session_id, resources, mandate_id, approval_id, slim, payload, prev_hash, hmac)
  SELECT zone, seq, event_id, time, type, decision, request_id, decision_id, client_id, session_id,
         root_session_id, resources::text[], mandate_id, approval_id, slim,
         substring($18::bytea FROM payload_at FOR payload_length),
         substring($19::bytea FROM n::int * 32 - 31 FOR 32),
         substring($20::bytea FROM n::int * 32 - 31 FOR 32)
  FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::timestamptz[], $5::smallint[], $6::smallint[], $7::text[], $8::uuid[],
              $9::text[], $10::uuid[], $11::uuid[], $12::text[], $13::uuid[], $14::uuid[], $15::boolean[], $16::int[], $17::int[])
         WITH ORDINALITY
    AS r(zone, seq, event_id, time, type, decision, request_id, decision_id, client_id, session_id,
         root_session_id, resources, mandate_id, approval_id, slim, payload_at, payload_length, n)`;
/** How many of `INSERT_ROWS`' parameters are arrays with an element per row ($1 to $17); three byte strings follow. */
const INSERT_ARRAYS = 17;

/** An event read and checked, waiting for its place in the chain. */
interface Prepared {
  /** The ledger's key for it (`eventKey`). */
  readonly id: string;
  /** The chain it joins: its own zone, or the one its subject named. */
  readonly zone: string;
  /** The bytes its HMAC covers: as published. */
  readonly payload: Uint8Array;
  /** Its row's columns from `time` to `slim`, in `INSERT_ROWS` order. */
  readonly columns: readonly unknown[];
  /** What its `payload` column holds. */
  readonly stored: Uint8Array;
}

/**
 * Appends audit events to the ledger: events already stored are skipped
 * (at-least-once delivery becomes exactly-once rows), each new event takes
 * the next place in its zone's chain, and the chain heads move; for each
 * zone of a batch, all or nothing. Concurrent appenders (several ledger
 * replicas) queue on the zones' chain heads, so a chain never forks.
 */
export class AuditLedger {
  readonly #store: Store;
  /** A KeyObject: HMACs made with it skip importing the key each time. */
  readonly #key: KeyObject;
  readonly #unstorable: (reason: string) => void;

  /**
   * @param key - the audit key (32 bytes) the row HMACs are made with.
   * @param unstorable - told why each event set aside as undecodable was; default: nobody.
   */
  constructor(store: Store, key: Buffer, unstorable: (reason: string) => void = () => {}) {
    if (key.length < 32) throw new TypeError("the audit key must be at least 32 bytes");
    this.#store = store;
    this.#key = createSecretKey(key);
    this.#unstorable = unstorable;
  }

  /**
   * Stores a batch. Rejects when the store fails, and the caller redelivers:
   * what was stored meanwhile is then skipped as already there.
   *
   * The batch's zones are split between up to three transactions that run
   * side by side: while Postgres runs one's statements, this process chains
   * another's rows, where one transaction would have the two take turns.
   * Each zone's events stay in one transaction, in order.
   */
  async append(batch: readonly IncomingEvent[]): Promise<AppendResult> {
    const { events, undecodable, duplicates } = this.#prepare(batch);
    // Settled, not raced: the caller must not redeliver while a transaction still runs.
    const written = await Promise.allSettled(byZoneGroups(events, WRITERS).map((group) => this.#write(group)));
    const results: { stored: number; duplicates: number }[] = [];
    for (const w of written) {
      if (w.status === "rejected") throw w.reason;
      results.push(w.value);
    }
    return {
      stored: results.reduce((n, r) => n + r.stored, 0),
      duplicates: results.reduce((n, r) => n + r.duplicates, duplicates),
      undecodable,
    };
  }

  /** Reads and checks each event, and drops repeats within the batch: everything that needs no database. */
  #prepare(batch: readonly IncomingEvent[]): { events: Prepared[]; undecodable: number; duplicates: number } {
    const events = new Map<string, Prepared>();
    let undecodable = 0;
    let duplicates = 0;
    for (const incoming of batch) {
      const fields = topLevelFields(incoming.data);
      const event = fields && readLedgerFields(incoming.data, fields);
      const refused = event ? unstorable(event) : "not an AuditEvent";
      if (!fields || !event || refused) {
        undecodable++;
        this.#unstorable(refused ?? "not an AuditEvent");
        continue;
      }
      const id = eventKey(event.eventId, incoming.data);
      if (events.has(id)) {
        duplicates++;
        continue;
      }
      const c = filterColumns(event);
      const stored = storedPayload(incoming.data, event, { event_id: id, ...c }, fields);
      events.set(id, {
        id,
        zone: ZONE_PATTERN.test(event.zone) ? event.zone : incoming.zone,
        payload: incoming.data,
        columns: [
          isoMicros(eventMicros(event)), c.type, c.decision, c.request_id, c.decision_id, c.client_id, c.session_id,
          c.root_session_id, c.resources && arrayLiteral(c.resources), c.mandate_id, c.approval_id, stored.slim,
        ],
        stored: stored.bytes,
      });
    }
    return { events: [...events.values()], undecodable, duplicates };
  }

  /** Skips what the ledger holds already and chains and inserts the rest, in one transaction. */
  async #write(group: readonly Prepared[]): Promise<{ stored: number; duplicates: number }> {
    const events = new Map(group.map((e) => [e.id, e]));
    let duplicates = 0;
    const stored = await this.#store.transaction(async (tx) => {
      // Locked first, so no other appender stores one of these events between the check and the insert.
      const chain = await lockChains(tx, [...new Set([...events.values()].map((e) => e.zone))]);
      const { rows: known } = await tx.query<{ event_id: string }>("SELECT event_id FROM audit_events WHERE event_id = ANY($1::uuid[])", [[...events.keys()]]);
      for (const { event_id } of known) events.delete(event_id);
      duplicates += known.length;
      if (events.size === 0) return 0;

      // In slices: while Postgres inserts one, this process chains the next.
      const rows = [...events.values()];
      let inserting: Promise<unknown> | undefined;
      for (let i = 0; i < rows.length; i += INSERT_SLICE) {
        const columns = this.#chained(rows.slice(i, i + INSERT_SLICE), chain);
        await inserting;
        inserting = tx.query(INSERT_ROWS, columns);
        // Awaited on the next turn or after the loop; until then a failure must not count as unhandled.
        inserting.catch(() => {});
      }
      await inserting;
      const moved = [...chain].filter(([, head]) => head.moved);
      await tx.query(
        "UPDATE audit_chain_heads h SET seq = n.seq, hmac = n.hmac FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS n(zone, seq, hmac) WHERE h.zone = n.zone",
        [moved.map(([zone]) => zone), moved.map(([, head]) => head.seq), moved.map(([, head]) => head.hmac)],
      );
      return rows.length;
    });
    return { stored, duplicates };
  }

  /** Gives each row the next place in its zone's chain (moving `chain` on); returns the rows as the parameters of `INSERT_ROWS`. */
  #chained(rows: readonly Prepared[], chain: ChainHeads): unknown[] {
    const columns: unknown[][] = Array.from({ length: INSERT_ARRAYS }, () => []);
    const payloads: Uint8Array[] = [];
    const hmacs: Buffer[] = [];
    const previous: Buffer[] = [];
    let at = 1;
    for (const { id, zone, payload, columns: rest, stored } of rows) {
      const head = chain.get(zone)!;
      const seq = head.seq + 1;
      const hmac = rowHmac(this.#key, head.hmac, zone, seq, payload);
      const row = [zone, seq, id, ...rest, at, stored.length];
      for (let i = 0; i < row.length; i++) columns[i]!.push(row[i]);
      payloads.push(stored);
      previous.push(head.hmac);
      hmacs.push(hmac);
      at += stored.length;
      chain.set(zone, { seq, hmac, moved: true });
    }
    return [...columns, Buffer.concat(payloads), Buffer.concat(previous), Buffer.concat(hmacs)];
  }
}

/**
 * How many transactions a batch is split into (see `AuditLedger.append`).
 * Measured with bench/audit's traffic (four zones) on two cores shared with
 * Postgres: one transaction 7,400 events/s, two 8,500/s, three 9,300/s,
 * four 8,100/s (the smallest zone's transaction costs about as much as the
 * others while carrying a tenth of the events).
 */
const WRITERS = 3;

/**
 * Events in at most `count` groups with no zone in two of them, as even in
 * size as whole zones allow (the largest zone first, each into the smallest
 * group so far). Empty groups are left out.
 */
function byZoneGroups(events: readonly Prepared[], count: number): Prepared[][] {
  const zones = new Map<string, Prepared[]>();
  for (const e of events) {
    const zone = zones.get(e.zone);
    if (zone) zone.push(e);
    else zones.set(e.zone, [e]);
  }
  const groups: Prepared[][] = Array.from({ length: count }, () => []);
  for (const zone of [...zones.values()].sort((a, b) => b.length - a.length)) {
    groups.reduce((smallest, g) => (g.length < smallest.length ? g : smallest)).push(...zone);
  }
  return groups.filter((g) => g.length > 0);
}

/** Where each locked zone's chain ends, and whether this batch moved it. */
type ChainHeads = Map<string, { seq: number; hmac: Buffer; moved: boolean }>;

/**
 * Creates the chain heads of zones seen for the first time and locks the
 * heads of `zones` for this transaction. Sorted, so two appenders lock
 * shared zones in the same order and never deadlock.
 */
async function lockChains(tx: Queryable, zones: string[]): Promise<ChainHeads> {
  zones.sort();
  await tx.query("INSERT INTO audit_chain_heads (zone, seq, hmac) SELECT z, 0, $2 FROM unnest($1::text[]) AS z ON CONFLICT (zone) DO NOTHING", [zones, GENESIS]);
  const { rows } = await tx.query<{ zone: string; seq: string; hmac: Buffer }>(
    "SELECT zone, seq, hmac FROM audit_chain_heads WHERE zone = ANY($1::text[]) ORDER BY zone FOR UPDATE",
    [zones],
  );
  return new Map(rows.map((h) => [h.zone, { seq: Number(h.seq), hmac: Buffer.from(h.hmac), moved: false }]));
}

/** A text array as a Postgres array literal: every element quoted, with its quotes and backslashes escaped. */
function arrayLiteral(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, "\\$&")}"`).join(",")}}`;
}
