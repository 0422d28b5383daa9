/**
 * bench/audit: the audit ledger on Postgres, in-process, on a fresh database
 * (migrated, dropped at the end). Events are bench/audit/realistic-events.ts:
 * STS exchanges and edge calls in four zones, encoded as producers encode them.
 *
 * 1. Ingest. `AuditLedger.append` in batches of 500, one batch after another
 *    as services/audit/ledger-consumer.ts does, until `events` rows are
 *    stored. Events are generated and encoded 100,000 at a time before those
 *    are appended, so the rates are the ledger's alone (reading events on the
 *    wire, chain HMACs, the transactions: up to three per batch, see
 *    `AuditLedger.append`). Prints events/s over the whole run and over the last
 *    100,000 (the steady state at that table size) against the issue's target
 *    (≥ 10,000 events/s), the rate of each 100,000, batch p50/p99, wall and
 *    CPU time per event (this process, and this database's Postgres backends
 *    read from /proc when Postgres runs on this machine), the WAL written per
 *    event (cluster-wide: anything else writing meanwhile counts) and the wall
 *    time of the whole build.
 * 2. Stored bytes. `pg_total_relation_size('audit_events')` (heap, TOAST,
 *    free-space and visibility maps, every index) over the row count, as
 *    ingested, against the target (≤ 800 B/event), split into heap and
 *    indexes, each index, and the columns' average stored size. Then again
 *    after `VACUUM ANALYZE`, which the query step runs on.
 * 3. Query by request id at that size. `query()` (AuditService.Query's
 *    handler: SQL, then decoding each row into an AuditRecord) for 1,000
 *    request ids drawn from everything stored, after 200 others as warm-up;
 *    p50 and p99 against the target (≤ 5 ms). Then the same ids through the same
 *    SQL without decoding (driver and round trip), and server-side execution
 *    (`EXPLAIN ANALYZE`), with the plan.
 * 4. Appenders side by side, each phase adding as many events as the last
 *    100,000 of step 1: one appender again (the reference); two appenders
 *    sharing one stream of batches, each holding every zone (two ledger
 *    replicas on one durable consumer), so they queue on the chain heads; two
 *    appenders with the zones split between them. Both appenders share this
 *    process's event loop and the machine's cores with Postgres.
 *
 * With `time-ordered-ids`, the ids Caracal makes (event, decision, mandate)
 * are UUIDv7 instead of random UUIDs, to measure what index locality would
 * gain (see AuditTraffic); Caracal makes random UUIDs today.
 *
 *   npx tsx bench/audit/audit.bench.ts [events=1000000] [time-ordered-ids]
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { create } from "@bufbuild/protobuf";
import { AuditFilterSchema, QueryRequestSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { AuditLedger, type IncomingEvent } from "../../services/audit/audit-ledger.js";
import { filterSql, RECORD_COLUMNS } from "../../services/audit/audit-rows.js";
import { query } from "../../services/audit/query.js";
import { openStore } from "../../services/store/open-store.js";
import type { Store } from "../../services/store/store.js";
import { createTestDatabase } from "../../test/support/postgres.js";
import { AuditTraffic, ZONES, type TrafficEvent } from "./realistic-events.js";

const EVENTS = Number(process.argv[2] ?? 1_000_000);
const TIME_ORDERED_IDS = process.argv[3] === "time-ordered-ids";
const BATCH = 500;
const CHUNK = 100_000;
const QUERIES = 1_000;
const QUERY_WARMUP = 200;
const SEED = 20_260_301;
/** Event times advance 100 µs per event: the traffic of about 10,000 events/s. */
const GAP_MICROS = 100;
const TARGET_EVENTS_PER_SECOND = 10_000;
const TARGET_BYTES_PER_EVENT = 800;
const TARGET_QUERY_MS = 5;

if (!Number.isSafeInteger(EVENTS) || EVENTS < BATCH) throw new TypeError(`events must be an integer ≥ ${BATCH}, got ${process.argv[2]}`);
if (process.argv[3] !== undefined && !TIME_ORDERED_IDS) throw new TypeError(`the second argument may only be time-ordered-ids, got ${process.argv[3]}`);

const verdict = (met: boolean) => (met ? "met" : "NOT met");
const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
const perSecond = (events: number, ms: number) => Math.round((events * 1000) / ms);

const database = await createTestDatabase();
process.once("SIGINT", () => void database.drop().finally(() => process.exit(130)));
// A Postgres URL: the data directory is never used.
const store = await openStore({ databaseUrl: database.url, dataDir: tmpdir() });
try {
  const { rows: [server] } = await store.query<{ version: string; shared_buffers: string; synchronous_commit: string }>(
    "SELECT current_setting('server_version') AS version, current_setting('shared_buffers') AS shared_buffers, current_setting('synchronous_commit') AS synchronous_commit",
  );
  console.log(
    `node ${process.version}, ${cpus().length} cores, load average ${load()}; ` +
      `Postgres ${server!.version} (shared_buffers ${server!.shared_buffers}, synchronous_commit ${server!.synchronous_commit}); ` +
      `ids Caracal makes: ${TIME_ORDERED_IDS ? "time-ordered (UUIDv7)" : "random (as today)"}`,
  );

  const auditKey = randomBytes(32);
  const ledger = new AuditLedger(store, auditKey);
  const traffic = new AuditTraffic({
    seed: SEED,
    startMicros: Date.now() * 1000 - (EVENTS + 3 * CHUNK) * GAP_MICROS,
    gapMicros: GAP_MICROS,
    timeOrderedIds: TIME_ORDERED_IDS,
  });

  // ── 1. Ingest ──────────────────────────────────────────────────────────
  const sampled = requestIdSample(QUERY_WARMUP + QUERIES, SEED);
  const chunkRates: number[] = [];
  const batchMs: number[] = [];
  let generateMs = 0;
  let appendMs = 0;
  let lastChunk = { events: 0, ms: 0 };
  const walBefore = await walPosition(store);
  const postgresCpuBefore = await postgresCpuMs(store);
  let nodeCpuMicros = 0;
  const buildStarted = performance.now();
  for (let stored = 0; stored < EVENTS; ) {
    const t0 = performance.now();
    const chunk = traffic.take(Math.min(CHUNK, EVENTS - stored));
    for (const event of chunk) if (event.opensFlow) sampled.offer(event);
    const t1 = performance.now();
    const cpuBefore = process.cpuUsage();
    for (let i = 0; i < chunk.length; i += BATCH) {
      const b0 = performance.now();
      await appendAll(ledger, chunk.slice(i, i + BATCH));
      batchMs.push(performance.now() - b0);
    }
    const ms = performance.now() - t1;
    const cpu = process.cpuUsage(cpuBefore);
    nodeCpuMicros += cpu.user + cpu.system;
    generateMs += t1 - t0;
    appendMs += ms;
    stored += chunk.length;
    lastChunk = { events: chunk.length, ms };
    chunkRates.push(perSecond(chunk.length, ms));
  }
  const buildMs = performance.now() - buildStarted;
  const walBytes = (await walPosition(store)) - walBefore;
  const postgresCpu = cpuSpent(postgresCpuBefore, await postgresCpuMs(store));
  const lastRate = perSecond(lastChunk.events, lastChunk.ms);
  console.log(
    `ingest: ${EVENTS} events, batches of ${BATCH}, one appender: ${perSecond(EVENTS, appendMs)} events/s overall, ` +
      `${lastRate} events/s over the last ${lastChunk.events} (target ≥ ${TARGET_EVENTS_PER_SECOND}/s: ${verdict(lastRate >= TARGET_EVENTS_PER_SECOND)}); ` +
      `append p50 ${quantile(batchMs, 0.5).toFixed(1)} ms, p99 ${quantile(batchMs, 0.99).toFixed(1)} ms per batch`,
  );
  console.log(
    `ingest time per event: ${((appendMs * 1000) / EVENTS).toFixed(0)} µs wall; CPU ${(nodeCpuMicros / EVENTS).toFixed(0)} µs in this process, ` +
      (postgresCpu === undefined ? "Postgres not measured (/proc of its backends unreadable)" : `${((postgresCpu * 1000) / EVENTS).toFixed(0)} µs in this database's Postgres backends`),
  );
  console.log(`ingest by ${CHUNK}: ${chunkRates.map((rate) => `${rate}/s`).join(", ")}`);
  console.log(
    `build: ${EVENTS} rows in ${(buildMs / 1000).toFixed(1)} s wall (generating and encoding events ${(generateMs / 1000).toFixed(1)} s, ` +
      `appending ${(appendMs / 1000).toFixed(1)} s); WAL ${Math.round(Number(walBytes) / EVENTS)} B per event; load average ${load()}`,
  );

  // ── 2. Stored bytes ────────────────────────────────────────────────────
  const { rows: [count] } = await store.query<{ n: string }>("SELECT count(*) AS n FROM audit_events");
  if (Number(count!.n) !== EVENTS) throw new Error(`expected ${EVENTS} rows, found ${count!.n}`);
  await printSizes(store, EVENTS, "as ingested, before any VACUUM", true);
  await store.query("VACUUM ANALYZE audit_events");
  await printSizes(store, EVENTS, "after VACUUM ANALYZE", false);

  // ── 3. Query by request id ─────────────────────────────────────────────
  const deps = { store, auditKey, draining: new AbortController().signal };
  const ids = sampled.values();
  const byRequestId = (id: (typeof ids)[number]) => create(QueryRequestSchema, { filter: { zone: id.zone, requestId: id.requestId } });
  for (const id of ids.slice(0, QUERY_WARMUP)) await query(deps, byRequestId(id));
  const timed = ids.slice(QUERY_WARMUP);
  const queryMs: number[] = [];
  let records = 0;
  for (const id of timed) {
    const t0 = performance.now();
    const response = await query(deps, byRequestId(id));
    queryMs.push(performance.now() - t0);
    if (!response.records?.length) throw new Error(`request ${id.requestId} in ${id.zone} was stored but Query found nothing`);
    records += response.records.length;
  }
  const [queryP50, queryP99] = [quantile(queryMs, 0.5), quantile(queryMs, 0.99)];
  console.log(
    `query by request id: ${timed.length} known ids at ${EVENTS} rows, ${(records / timed.length).toFixed(2)} records each: ` +
      `p50 ${queryP50.toFixed(2)} ms, p99 ${queryP99.toFixed(2)} ms ` +
      `(target ≤ ${TARGET_QUERY_MS} ms: p50 ${verdict(queryP50 <= TARGET_QUERY_MS)}, p99 ${verdict(queryP99 <= TARGET_QUERY_MS)})`,
  );

  // The SQL query.ts sends for this filter and the first page, without decoding the rows.
  const rawSql = (id: (typeof ids)[number]) => {
    const { where, params } = filterSql(create(AuditFilterSchema, { zone: id.zone, requestId: id.requestId }));
    params.push(101);
    return {
      sql: `SELECT ${RECORD_COLUMNS}, (extract(epoch FROM time) * 1000000)::bigint AS time_us FROM audit_events
            WHERE ${where} ORDER BY time DESC, seq DESC LIMIT $${params.length}`,
      params,
    };
  };
  const rawMs: number[] = [];
  for (const id of timed) {
    const { sql, params } = rawSql(id);
    const t0 = performance.now();
    await store.query(sql, params);
    rawMs.push(performance.now() - t0);
  }
  const serverMs: number[] = [];
  let plan: PlanNode | undefined;
  for (const id of timed) {
    const { sql, params } = rawSql(id);
    const { rows } = await store.query<{ "QUERY PLAN": [{ Plan: PlanNode; "Execution Time": number }] }>(
      `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`,
      params,
    );
    const [explained] = rows[0]!["QUERY PLAN"];
    serverMs.push(explained["Execution Time"]);
    plan ??= explained.Plan;
  }
  console.log(
    `same SQL, rows not decoded: p50 ${quantile(rawMs, 0.5).toFixed(2)} ms, p99 ${quantile(rawMs, 0.99).toFixed(2)} ms; ` +
      `server-side execution: p50 ${quantile(serverMs, 0.5).toFixed(3)} ms, p99 ${quantile(serverMs, 0.99).toFixed(3)} ms`,
  );
  console.log(`plan: ${describePlan(plan!)}`);

  // ── 4. Appenders side by side ──────────────────────────────────────────
  const phase = lastChunk.events;
  const one = await appendPhase([batchesOf(traffic.take(phase))], ledger);
  const sharedStream = batchesOf(traffic.take(phase));
  const two = await appendPhase([sharedStream, sharedStream], ledger);
  const events = traffic.take(phase);
  const firstZone = ZONES[0]![0];
  const split = await appendPhase(
    [batchesOf(events.filter((e) => e.zone === firstZone)), batchesOf(events.filter((e) => e.zone !== firstZone))],
    ledger,
  );
  console.log(
    `appenders, ${phase} events each from ${EVENTS} rows: one ${one.rate}/s (batch p50 ${one.p50.toFixed(1)} ms); ` +
      `two on one stream, every batch all zones ${two.rate}/s (batch p50 ${two.p50.toFixed(1)} ms); ` +
      `two with zones split (${firstZone} | the rest) ${split.rate}/s (batch p50 ${split.p50.toFixed(1)} ms)`,
  );
} finally {
  await store.close();
  await database.drop();
}

/** Appends a batch and checks that every event became a row. */
async function appendAll(ledger: AuditLedger, batch: readonly IncomingEvent[]): Promise<void> {
  const result = await ledger.append(batch);
  if (result.stored !== batch.length) throw new Error(`appended ${batch.length} events, stored ${result.stored} (${JSON.stringify(result)})`);
}

function batchesOf(events: readonly TrafficEvent[]): TrafficEvent[][] {
  const batches: TrafficEvent[][] = [];
  for (let i = 0; i < events.length; i += BATCH) batches.push(events.slice(i, i + BATCH));
  return batches;
}

/** Runs one appender per queue (a queue may be shared), until every queue is empty. */
async function appendPhase(queues: TrafficEvent[][][], ledger: AuditLedger): Promise<{ rate: number; p50: number }> {
  const events = [...new Set(queues)].reduce((sum, queue) => sum + queue.reduce((n, batch) => n + batch.length, 0), 0);
  const ms: number[] = [];
  const started = performance.now();
  await Promise.all(
    queues.map(async (queue) => {
      for (let batch = queue.shift(); batch; batch = queue.shift()) {
        const t0 = performance.now();
        await appendAll(ledger, batch);
        ms.push(performance.now() - t0);
      }
    }),
  );
  return { rate: perSecond(events, performance.now() - started), p50: quantile(ms, 0.5) };
}

/** CPU time (ms) so far of each backend connected to this database, from /proc: only when Postgres runs on this machine. */
async function postgresCpuMs(store: Store): Promise<Map<number, number> | undefined> {
  const { rows } = await store.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database()");
  const cpu = new Map<number, number>();
  try {
    for (const { pid } of rows) {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      // Fields after the command name: state is the first, utime the 12th, stime the 13th (clock ticks, 100 a second).
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      cpu.set(pid, (Number(fields[11]) + Number(fields[12])) * 10);
    }
  } catch {
    return undefined;
  }
  return cpu;
}

function cpuSpent(before: Map<number, number> | undefined, after: Map<number, number> | undefined): number | undefined {
  if (!before || !after) return undefined;
  let ms = 0;
  for (const [pid, total] of after) ms += total - (before.get(pid) ?? 0);
  return ms;
}

async function walPosition(store: Store): Promise<bigint> {
  const { rows } = await store.query<{ lsn: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS lsn");
  return BigInt(rows[0]!.lsn);
}

async function printSizes(store: Store, rowCount: number, when: string, detail: boolean): Promise<void> {
  const { rows: [size] } = await store.query<{ total: string; heap: string; table: string; indexes: string }>(
    `SELECT pg_total_relation_size('audit_events') AS total, pg_relation_size('audit_events') AS heap,
            pg_table_size('audit_events') AS table, pg_indexes_size('audit_events') AS indexes`,
  );
  const per = (bytes: string | number) => Math.round(Number(bytes) / rowCount);
  const total = per(size!.total);
  console.log(
    `stored bytes, ${when}: ${total} B/event (${(Number(size!.total) / 2 ** 20).toFixed(0)} MiB over ${rowCount} rows; ` +
      `target ≤ ${TARGET_BYTES_PER_EVENT} B: ${verdict(total <= TARGET_BYTES_PER_EVENT)}): ` +
      `heap ${per(size!.heap)} B, TOAST and maps ${per(Number(size!.table) - Number(size!.heap))} B, indexes ${per(size!.indexes)} B`,
  );
  if (!detail) return;
  const { rows: indexes } = await store.query<{ name: string; bytes: string }>(
    `SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS bytes FROM pg_index
     WHERE indrelid = 'audit_events'::regclass ORDER BY 2 DESC`,
  );
  console.log(`  indexes: ${indexes.map((i) => `${i.name} ${per(i.bytes)} B`).join(", ")}`);
  const columns = ["payload", "zone", "seq", "event_id", "time", "type", "decision", "request_id", "decision_id", "client_id",
    "session_id", "root_session_id", "resources", "mandate_id", "prev_hash", "hmac"];
  const { rows: [avg] } = await store.query<Record<string, string>>(
    `SELECT avg(pg_column_size(audit_events.*)) AS row, ${columns.map((c) => `avg(coalesce(pg_column_size(${c}), 0)) AS ${c}`).join(", ")},
            avg(octet_length(payload)) AS payload_length, avg((mandate_id IS NULL)::int) AS no_mandate
     FROM audit_events`,
  );
  const rounded = (value: string | undefined) => Math.round(Number(value));
  console.log(
    `  row as stored ${rounded(avg!["row"])} B on average (tuple header included; heap adds line pointers, alignment, page space left): ` +
      columns.map((c) => `${c} ${rounded(avg![c])}`).join(", ") +
      `; payload is ${rounded(avg!["payload_length"])} B of protobuf; ${(Number(avg!["no_mandate"]) * 100).toFixed(0)} % of rows have no mandate_id`,
  );
}

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Actual Rows": number;
  "Shared Hit Blocks": number;
  "Shared Read Blocks": number;
  Plans?: PlanNode[];
}

/** `Limit ← Sort ← Index Scan (audit_events_by_request)`, with the top node's rows and buffers. */
function describePlan(plan: PlanNode): string {
  const nodes: string[] = [];
  for (let node: PlanNode | undefined = plan; node; node = node.Plans?.[0]) {
    nodes.push(node["Index Name"] ? `${node["Node Type"]} (${node["Index Name"]})` : node["Node Type"]);
  }
  return `${nodes.join(" ← ")}; ${plan["Actual Rows"]} rows, ${plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]} buffers`;
}

function quantile(values: readonly number[], q: number): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** A uniform sample of `size` request ids (reservoir sampling), handed out in random order. */
function requestIdSample(size: number, seed: number) {
  const kept: { zone: string; requestId: string }[] = [];
  let seen = 0;
  let state = seed >>> 0 || 1;
  // xorshift32: enough for sampling.
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4_294_967_296;
  };
  return {
    offer(event: TrafficEvent): void {
      seen++;
      const entry = { zone: event.zone, requestId: event.requestId };
      if (kept.length < size) kept.push(entry);
      else {
        const slot = Math.floor(random() * seen);
        if (slot < size) kept[slot] = entry;
      }
    },
    values(): readonly { zone: string; requestId: string }[] {
      const shuffled = [...kept];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      return shuffled;
    },
  };
}
