/**
 * bench/revocation: how long a revoked session keeps working at the edge.
 *
 * A Caracal server (sts, admin, revocation) runs in its own process on a fresh
 * Postgres database and private JetStream streams. This process holds 20
 * verifiers, each with its own NATS connection, a `FeedRevocationView` on the
 * server's revocation stream and an `EdgeVerifier` (own JWKS cache, own
 * verified-mandate cache). Each round starts a session, exchanges it for a
 * resource mandate, has every verifier admit that mandate once (so it sits in
 * every verified-mandate cache), then calls `RevocationService.Revoke` on the
 * session. t0 is when the RPC returns; a verifier has caught up when its view
 * tells its `onRevocation` listeners about a revocation covering the mandate
 * (the verifier's own listener, registered first, has evicted the cached
 * mandate by then). The round's latency is the last verifier's, clamped at 0
 * (a verifier that had it before the RPC returned refuses at t0). After
 * every round each verifier is asked again and must refuse with
 * REASON_MANDATE_REVOKED. Rounds run one after another: no queueing.
 * That re-check verifies the mandate again and `EdgeVerifier` caches it before
 * it consults the view, so each verifier's cache grows by one revoked mandate
 * a round and every later revocation scans it (`deleteWhere`): the spread
 * between verifiers grows with the number of rounds. Left as is, since a
 * revoked client retrying does the same in production.
 *
 * The verifiers share this process's event loop: they are idle while a round
 * waits, and what sharing costs shows as the spread between the first and the
 * last verifier, which is printed. Per-hop timestamps (server commit, relay
 * wake, publish, JetStream store time, a core-NATS probe, verifier apply) are
 * printed relative to t0 to show where the time goes.
 *
 *   npx tsx bench/revocation/revocation.bench.ts [revocations=200]
 *
 * BENCH_RAW=<file> also writes every round (epoch-ms timestamps, server hops) as JSON lines.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { MandateSource } from "../../clients/mandate-source.js";
import { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationService } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { mandateClientInterceptor } from "../../interceptors/connect/mandate-client-interceptor.js";
import { EdgeVerifier, type EdgeCall } from "../../interceptors/edge-verifier.js";
import { FeedRevocationView } from "../../interceptors/feed-revocation-view.js";
import { jetStreamRevocationFeed } from "../../interceptors/jetstream-revocation-feed.js";
import { httpJwksSource, JwksCache } from "../../interceptors/jwks-cache.js";
import type { MandateClaims } from "../../interceptors/mandate-claims.js";
import { MandateError } from "../../interceptors/mandate-error.js";
import { covers } from "../../interceptors/revocation-view.js";
import { testNatsUrl } from "../../test/support/nats.js";
import type { ServerHops } from "./revocation-bench-server.js";

const COUNT = Number(process.argv[2] ?? 200);
const VERIFIERS = 20;
const WARMUP = 10;
const ZONE = "bench";
const RESOURCE = "billing-api";
const SCOPE = "invoices.read";
/** A round that has not reached every verifier by then is a failure, not a slow sample. */
const ROUND_DEADLINE_MS = 10_000;

/** Epoch ms with sub-ms resolution, comparable across processes on this machine (the server uses the same). */
const clock = () => performance.timeOrigin + performance.now();
const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");

if (!Number.isSafeInteger(COUNT) || COUNT < 1) throw new TypeError(`revocations must be a positive integer, got ${process.argv[2]}`);

interface Verifier {
  readonly nc: NatsConnection;
  readonly view: FeedRevocationView;
  readonly jwks: JwksCache;
  readonly edge: EdgeVerifier;
}

/** One measured round, epoch ms. */
interface Round {
  readonly id: string;
  readonly rpcStart: number;
  readonly t0: number;
  readonly applied: readonly number[];
  probe?: number;
  stored?: number;
}

const method = { service: "bench.billing.v1.BillingService", name: "ListInvoices" };
console.log(`node ${process.version}, load average ${load()}`);
const server = await spawnRevocationBenchServer();
const verifiers: Verifier[] = [];
const sessions: Http2SessionManager[] = [];
let probe: NatsConnection | undefined;
try {
  const { profile } = server;
  const transport = (interceptors: Parameters<typeof createGrpcTransport>[0]["interceptors"] = []) => {
    const sessionManager = new Http2SessionManager(server.address);
    sessions.push(sessionManager);
    return createGrpcTransport({ baseUrl: server.address, sessionManager, interceptors });
  };
  const sts = createClient(TokenService, transport());
  const source = new MandateSource({ sts, zone: profile.zone, clientId: profile.client_id, credential: { clientSecret: profile.client_secret } });
  const adminTransport = transport([mandateClientInterceptor(source)]);
  const admin = createClient(AdminService, adminTransport);
  const revocation = createClient(RevocationService, adminTransport);
  await admin.createZone({ zone: ZONE });
  await admin.createResource({ zone: ZONE, resourceId: RESOURCE, scopes: [{ name: SCOPE }] });
  const { clientSecret } = await admin.createApplication({ zone: ZONE, clientId: "bench-agent" });
  await admin.createGrant({ zone: ZONE, clientId: "bench-agent", resourceId: RESOURCE, scopes: [SCOPE] });

  const onError = (error: unknown) => console.error("verifier:", error);
  for (let i = 0; i < VERIFIERS; i++) {
    const nc = await connect({ servers: testNatsUrl, name: `bench-verifier-${i}`, maxReconnectAttempts: -1 });
    const view = await FeedRevocationView.start(
      jetStreamRevocationFeed(nc, { streamName: server.streamName, subjectPrefix: server.subjectPrefix, zone: ZONE, onError }),
      { onError },
    );
    const jwks = new JwksCache({ source: httpJwksSource(server.address) });
    const edge = new EdgeVerifier({
      keys: jwks.resolve,
      revocations: view,
      allowedZones: [ZONE],
      requirements: { [`${method.service}/${method.name}`]: { resource: RESOURCE, scopes: [SCOPE] } },
    });
    verifiers.push({ nc, view, jwks, edge });
  }
  await Promise.all(verifiers.map((v) => v.view.ready()));

  // A core-NATS subscriber on the revocation subject: when the published message passed through the server.
  probe = await connect({ servers: testNatsUrl, name: "bench-probe" });
  const probed = new Map<string, number>();
  probe.subscribe(`${server.subjectPrefix}.revocations.${ZONE}`, {
    callback: (_error, msg) => {
      const id = msg.headers?.get("Nats-Msg-Id");
      if (id) probed.set(id, clock());
    },
  });
  await probe.flush();

  async function round(): Promise<Round> {
    const session = await sts.startSession({ zone: ZONE, clientId: "bench-agent", credential: { case: "clientSecret", value: clientSecret } });
    const sid = session.info!.sessionId;
    const { mandate } = await sts.exchange({ subjectToken: session.sessionMandate, resources: [RESOURCE], scopes: [SCOPE] });
    const call: EdgeCall = { method, authorization: `Bearer ${mandate}` };
    // Warm: every verifier admits the mandate once, so it sits in every verified-mandate cache.
    const admitted = await Promise.all(verifiers.map((v) => v.edge.check(call)));
    const claims = admitted[0]!.claims!;
    // Listen before revoking: the relay is woken before the RPC returns, so a revocation can arrive first.
    const waits = verifiers.map((v) => revocationCovering(v.view, claims));
    const rpcStart = clock();
    const { revocation: revoked, created } = await revocation.revoke({
      zone: ZONE,
      target: { target: { case: "sessionId", value: sid } },
      reason: "bench/revocation",
    });
    const t0 = clock();
    if (!created || !revoked) throw new Error(`Revoke of session ${sid} created nothing`);
    let deadline: NodeJS.Timeout | undefined;
    const applied = await Promise.race([
      Promise.all(waits.map((w) => w.seen)),
      new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error(`revocation ${revoked.revocationId} did not reach every verifier within ${ROUND_DEADLINE_MS} ms`)), ROUND_DEADLINE_MS);
      }),
    ]).finally(() => {
      clearTimeout(deadline);
      for (const w of waits) w.cancel();
    });
    await Promise.all(verifiers.map((v, i) => assertRefused(v, i, call, claims)));
    return { id: revoked.revocationId, rpcStart, t0, applied };
  }

  for (let i = 0; i < WARMUP; i++) await round();
  console.log(`${VERIFIERS} verifiers ready (own NATS connection, FeedRevocationView, EdgeVerifier each); ${WARMUP} warm-up rounds done; load average ${load()}`);
  const rounds: Round[] = [];
  const started = clock();
  for (let i = 0; i < COUNT; i++) rounds.push(await round());
  const seconds = (clock() - started) / 1000;

  // JetStream's own store time of every message, read back before the server deletes its streams.
  const jsm = await jetstreamManager(verifiers[0]!.nc);
  const stored = new Map<string, number>();
  const last = (await jsm.streams.info(server.streamName)).state.last_seq;
  for (let seq = 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage(server.streamName, { seq });
    const id = m?.header.get("Nats-Msg-Id");
    if (m && id) stored.set(id, rfc3339Ms(m.timestamp));
  }
  for (const r of rounds) {
    r.probe = probed.get(r.id);
    r.stored = stored.get(r.id);
  }

  const latencies = rounds.map((r) => Math.max(0, Math.max(...r.applied) - r.t0));
  const s = summary(latencies);
  console.log(
    `revocation: ${COUNT} revocations, ${VERIFIERS} verifiers: p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(2)} ms, ` +
      `mean ${s.mean.toFixed(2)} ms (${rounds.filter((r) => Math.max(...r.applied) <= r.t0).length} of ${COUNT} already refused everywhere when Revoke returned; ` +
      `${(COUNT / seconds).toFixed(1)} rounds/s); load average ${load()}`,
  );

  await closeVerifiers();
  const serverHops = await server.stop();
  printHops(rounds, serverHops);
  if (process.env.BENCH_RAW) {
    await writeFile(process.env.BENCH_RAW, rounds.map((r) => JSON.stringify({ ...r, server: serverHops.get(r.id) }) + "\n").join(""));
  }
} finally {
  await closeVerifiers();
  await server.stop();
}

async function closeVerifiers(): Promise<void> {
  for (const v of verifiers.splice(0)) {
    v.edge.close();
    v.jwks.close();
    await v.view.stop();
    await v.nc.close();
  }
  await probe?.close();
  for (const s of sessions.splice(0)) s.abort();
}

/** Resolves with the time this view first told its listeners about a revocation covering `claims`. */
function revocationCovering(view: FeedRevocationView, claims: MandateClaims): { seen: Promise<number>; cancel: () => void } {
  let cancel = () => {};
  const seen = new Promise<number>((resolve) => {
    const off = view.onRevocation((entry) => {
      if (!covers(entry, claims)) return;
      const at = clock();
      off();
      resolve(at);
    });
    cancel = () => void off();
  });
  return { seen, cancel };
}

async function assertRefused(v: Verifier, index: number, call: EdgeCall, claims: MandateClaims): Promise<void> {
  if (!v.view.isRevoked(claims)) throw new Error(`verifier ${index}: view does not hold the revocation of session ${claims.sid}`);
  try {
    await v.edge.check(call);
  } catch (error) {
    if (error instanceof MandateError && error.reason === Reason.MANDATE_REVOKED) return;
    throw new Error(`verifier ${index} refused the revoked mandate for another reason`, { cause: error });
  }
  throw new Error(`verifier ${index} still admits the mandate of revoked session ${claims.sid}`);
}

interface Summary {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

function summary(values: readonly number[]): Summary {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]!, mean: values.reduce((a, b) => a + b, 0) / values.length };
}

/** `2024-05-01T12:00:00.123456789Z` as epoch ms keeping the sub-ms digits `Date.parse` drops. */
function rfc3339Ms(timestamp: string): number {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(timestamp);
  if (!match) return Date.parse(timestamp);
  return Date.parse(match[1]! + match[3]!) + Number(`0.${match[2] ?? "0"}`) * 1000;
}

function printHops(rounds: readonly Round[], hops: ReadonlyMap<string, ServerHops>): void {
  const rows: [string, (r: Round, h: ServerHops | undefined) => number | undefined][] = [
    ["Revoke RPC sent", (r) => r.rpcStart],
    ["server: Revoke transaction committed", (_, h) => h?.committed],
    ["server: relay round started (wake)", (_, h) => h?.relayStart],
    ["server: relay SELECT returned the row", (_, h) => h?.relaySelected],
    ["server: JetStream publish sent", (_, h) => h?.publishStart],
    ["nats: stored in the stream (stream time)", (r) => r.stored],
    ["nats: core probe received it", (r) => r.probe],
    ["server: publish ack received", (_, h) => h?.publishAck],
    ["server: relay transaction committed", (_, h) => h?.relayCommitted],
    ["first verifier applied", (r) => Math.min(...r.applied)],
    ["median verifier applied", (r) => [...r.applied].sort((a, b) => a - b)[Math.floor(r.applied.length / 2)]],
    ["last verifier applied", (r) => Math.max(...r.applied)],
  ];
  console.log(`where the time goes, ms relative to t0 = Revoke RPC returned (negative: before it returned), over ${rounds.length} revocations:`);
  console.log(`  ${"hop".padEnd(42)} ${"p50".padStart(8)} ${"p99".padStart(8)} ${"max".padStart(8)}   n`);
  for (const [name, pick] of rows) {
    const values = rounds.flatMap((r) => {
      const at = pick(r, hops.get(r.id));
      return at === undefined ? [] : [at - r.t0];
    });
    if (values.length === 0) continue;
    const s = summary(values);
    console.log(`  ${name.padEnd(42)} ${fmt(s.p50)} ${fmt(s.p99)} ${fmt(s.max)}   ${values.length}`);
  }
  const spans: [string, (r: Round, h: ServerHops | undefined) => number | undefined][] = [
    ["relay wake -> publish sent", (_, h) => diff(h?.publishStart, h?.relayStart)],
    ["publish sent -> stored in stream", (r, h) => diff(r.stored, h?.publishStart)],
    ["stored in stream -> first verifier applied", (r) => diff(Math.min(...r.applied), r.stored)],
    ["first -> last verifier applied (spread)", (r) => Math.max(...r.applied) - Math.min(...r.applied)],
    ["Revoke committed -> RPC returned", (r, h) => diff(r.t0, h?.committed)],
  ];
  console.log("  spans:");
  for (const [name, pick] of spans) {
    const values = rounds.flatMap((r) => {
      const v = pick(r, hops.get(r.id));
      return v === undefined ? [] : [v];
    });
    if (values.length === 0) continue;
    const s = summary(values);
    console.log(`  ${name.padEnd(42)} ${fmt(s.p50)} ${fmt(s.p99)} ${fmt(s.max)}   ${values.length}`);
  }
}

function diff(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a - b;
}

function fmt(ms: number): string {
  return ms.toFixed(2).padStart(8);
}

interface RevocationBenchServer {
  readonly address: string;
  readonly profile: { target: string; zone: string; client_id: string; client_secret: string };
  readonly streamName: string;
  readonly subjectPrefix: string;
  /** Stops the server (idempotent) and returns its hop records by revocation id. */
  stop(): Promise<Map<string, ServerHops>>;
}

/** Starts `revocation-bench-server.ts` in its own Node process and waits until it is ready. */
async function spawnRevocationBenchServer(): Promise<RevocationBenchServer> {
  const script = fileURLToPath(new URL("./revocation-bench-server.ts", import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), "caracal-bench-revocation-"));
  const hopsFile = join(dir, "hops.jsonl");
  // BENCH_SERVER_NODE_OPTIONS passes flags such as --cpu-prof to the server process only.
  const extra = process.env.BENCH_SERVER_NODE_OPTIONS?.split(" ").filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...extra, "--import", "tsx", script, hopsFile], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stopping: Promise<Map<string, ServerHops>> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      child.kill("SIGTERM");
      await exited;
      const hops = new Map<string, ServerHops>();
      const text = await readFile(hopsFile, "utf8").catch(() => "");
      for (const line of text.split("\n").filter(Boolean)) {
        const h = JSON.parse(line) as ServerHops;
        hops.set(h.id, h);
      }
      await rm(dir, { recursive: true, force: true });
      return hops;
    })());
  for await (const line of createInterface({ input: child.stdout! })) {
    return { ...(JSON.parse(line) as Omit<RevocationBenchServer, "stop">), stop };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error("revocation bench server exited before it was ready");
}
