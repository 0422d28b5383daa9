/**
 * bench/interceptor: what the edge interceptor costs a service.
 *
 * 1. Throughput of a trivial unary method (`grpc.health.v1.Health/Check`) on
 *    grpc-js and on connect-node (HTTP/2 h2c), each without and with the
 *    server interceptor, 64 concurrent callers, servers in a child process.
 *    Both stacks are driven by a grpc-js client (one channel per server); the
 *    Connect servers are driven a second time by a Connect gRPC transport (one
 *    HTTP/2 session), which on a small machine saturates before the server
 *    does and so understates the interceptor's cost. Every call,
 *    protected or not, carries the same `authorization: Bearer <mandate>`, so
 *    the pair differs only by verification. Unprotected and protected run
 *    alternately (ABBA) over several rounds; figures are medians over rounds.
 *    Besides calls/s, the server process's CPU time per call is reported: the
 *    interceptor's cost even when the client, not the server, is the limit.
 * 2. In-process: µs per `EdgeVerifier.check()` with the verified-mandate cache
 *    hit, with the cache off (cacheSize 0: a signature check every time), and
 *    raw `verifyMandate` — each the median of several batches.
 *
 *   npx tsx bench/interceptor/interceptor.bench.ts [calls per case per round] [rounds]
 *
 * BENCH_SERVER_NODE_OPTIONS passes flags such as `--cpu-prof` to the server process only.
 */
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { EdgeVerifier, type EdgeCall } from "../../interceptors/edge-verifier.js";
import { grpcServiceDefinition } from "../../interceptors/grpc-js/service-definition.js";
import { verifyMandate } from "../../interceptors/verify-mandate.js";
import { AUDIT_SINK_NOTE, BENCH_RESOURCE, BENCH_SCOPE, BENCH_ZONE, createBenchEdgeFixture } from "./bench-edge-fixture.js";
import type { BenchEdgeServersReady } from "./bench-edge-servers.js";

const CONCURRENCY = 64;
const COUNT = Number(process.argv[2] ?? 4_000);
const ROUNDS = Number(process.argv[3] ?? 6);
const WARMUP = 2_000;

type Call = () => Promise<unknown>;

interface Stack {
  readonly name: string;
  readonly unprotected: Call;
  readonly protected: Call;
  close(): void;
}

const request = create(HealthCheckRequestSchema, { service: "" });

console.log(`node ${process.version}, load average ${loadavg().map((load) => load.toFixed(2)).join(" ")}`);
const servers = await spawnServers();
try {
  const { ready } = servers;
  console.log(`servers: ${ready.auditSink}; revocations: InMemoryRevocationView (empty); verified-mandate cache: default size`);
  const stacks = [
    grpcJsStack("grpc-js server, grpc-js client", ready.addresses.grpcJs, ready.token),
    grpcJsStack("connect-node h2c server, grpc-js client", withoutScheme(ready.addresses.connect), ready.token),
    connectStack("connect-node h2c server, Connect gRPC transport", ready.addresses.connect, ready.token),
  ];
  for (const stack of stacks) {
    await drive(stack.unprotected, WARMUP);
    await drive(stack.protected, WARMUP);
  }
  const runs = new Map(stacks.map((stack) => [stack, { unprotected: [] as Run[], protected: [] as Run[] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const stack of stacks) {
      const order = round % 2 === 0 ? (["unprotected", "protected"] as const) : (["protected", "unprotected"] as const);
      for (const kind of order) runs.get(stack)![kind].push(await measure(stack[kind], COUNT));
    }
  }
  console.log(`throughput: ${CONCURRENCY} concurrent callers, ${COUNT} calls per case per round, ${ROUNDS} rounds (ABBA), medians over rounds`);
  for (const stack of stacks) {
    const { unprotected, protected: guarded } = runs.get(stack)!;
    const ratios = guarded.map((run, i) => run.callsPerSecond / unprotected[i]!.callsPerSecond);
    const cpu = (list: Run[]) => median(list.map((run) => run.serverMicrosPerCall));
    console.log(
      `${stack.name}: unprotected ${median(unprotected.map((run) => run.callsPerSecond)).toFixed(0)} calls/s, ` +
        `protected ${median(guarded.map((run) => run.callsPerSecond)).toFixed(0)} calls/s, ` +
        `ratio ${median(ratios).toFixed(2)} (rounds ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
    );
    console.log(
      `${stack.name}: server CPU unprotected ${cpu(unprotected).toFixed(1)} µs/call, protected ${cpu(guarded).toFixed(1)} µs/call, ` +
        `+${(cpu(guarded) - cpu(unprotected)).toFixed(1)} µs, CPU ratio ${(cpu(unprotected) / cpu(guarded)).toFixed(2)}`,
    );
  }
  for (const stack of stacks) stack.close();
} finally {
  await servers.stop();
}

await verificationCost();
console.log(`load average ${loadavg().map((load) => load.toFixed(2)).join(" ")}`);

interface Run {
  readonly callsPerSecond: number;
  /** Server process CPU (user + system) per call: what the interceptor adds whether or not the client saturates. */
  readonly serverMicrosPerCall: number;
}

async function measure(call: Call, count: number): Promise<Run> {
  const before = await servers.cpuUsage();
  const callsPerSecond = await drive(call, count);
  const after = await servers.cpuUsage();
  return { callsPerSecond, serverMicrosPerCall: (after.user - before.user + after.system - before.system) / count };
}

async function verificationCost(): Promise<void> {
  const fixture = await createBenchEdgeFixture();
  const call: EdgeCall = { method: Health.method.check, authorization: `Bearer ${fixture.token}`, traceparent: null };
  const cached = new EdgeVerifier(fixture.verifierOptions());
  const uncached = new EdgeVerifier(fixture.verifierOptions(0));
  const options = fixture.verifierOptions();
  const verifyOptions = { keys: options.keys, use: "resource" as const, resource: BENCH_RESOURCE, scopes: [BENCH_SCOPE], allowedZones: [BENCH_ZONE] };

  console.log(`verification, in process (${AUDIT_SINK_NOTE}), median of 9 batches:`);
  const hit = await microsPerCall(() => cached.check(call), 20_000);
  console.log(`EdgeVerifier.check, cached (same token): ${hit.toFixed(2)} µs per verification`);
  const miss = await microsPerCall(() => uncached.check(call), 400);
  console.log(`EdgeVerifier.check, uncached (cacheSize 0, ES256 verify each time): ${miss.toFixed(1)} µs per verification`);
  const raw = await microsPerCall(() => verifyMandate(fixture.token, verifyOptions), 400);
  console.log(`verifyMandate, raw: ${raw.toFixed(1)} µs per verification`);
}

/** Runs `count` calls over {@link CONCURRENCY} callers; returns calls per second. */
async function drive(call: Call, count: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < count) await call();
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

/** Median µs per sequential call over 9 batches of `batch` calls, after one discarded batch. */
async function microsPerCall(call: Call, batch: number): Promise<number> {
  const samples: number[] = [];
  for (let b = 0; b < 10; b++) {
    const started = performance.now();
    for (let i = 0; i < batch; i++) await call();
    if (b > 0) samples.push(((performance.now() - started) * 1000) / batch);
  }
  return median(samples);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

interface Addresses {
  readonly unprotected: string;
  readonly protected: string;
}

function withoutScheme(addresses: Addresses): Addresses {
  return { unprotected: new URL(addresses.unprotected).host, protected: new URL(addresses.protected).host };
}

function grpcJsStack(name: string, addresses: Addresses, token: string): Stack {
  const HealthClient = grpc.makeGenericClientConstructor(grpcServiceDefinition(Health), "Health");
  const authorization = `Bearer ${token}`;
  const caller = (address: string) => {
    const client = new HealthClient(address, grpc.credentials.createInsecure()) as unknown as {
      check(request: unknown, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null) => void): void;
      close(): void;
    };
    const call = () =>
      new Promise<void>((resolve, reject) => {
        const metadata = new grpc.Metadata();
        metadata.set("authorization", authorization);
        client.check(request, metadata, (error) => (error ? reject(error) : resolve()));
      });
    return { call, close: () => client.close() };
  };
  const unprotected = caller(addresses.unprotected);
  const guarded = caller(addresses.protected);
  return { name, unprotected: unprotected.call, protected: guarded.call, close: () => (unprotected.close(), guarded.close()) };
}

function connectStack(name: string, addresses: Addresses, token: string): Stack {
  const headers = { authorization: `Bearer ${token}` };
  const caller = (baseUrl: string) => {
    const sessionManager = new Http2SessionManager(baseUrl);
    const client = createClient(Health, createGrpcTransport({ baseUrl, sessionManager }));
    return { call: () => client.check(request, { headers }), close: () => sessionManager.abort() };
  };
  const unprotected = caller(addresses.unprotected);
  const guarded = caller(addresses.protected);
  return { name, unprotected: unprotected.call, protected: guarded.call, close: () => (unprotected.close(), guarded.close()) };
}

async function spawnServers(): Promise<{ ready: BenchEdgeServersReady; cpuUsage(): Promise<NodeJS.CpuUsage>; stop(): Promise<void> }> {
  const script = fileURLToPath(new URL("./bench-edge-servers.ts", import.meta.url));
  const extra = process.env.BENCH_SERVER_NODE_OPTIONS?.split(" ").filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...extra, "--import", "tsx", script], { stdio: ["ignore", "pipe", "inherit", "ipc"] });
  for await (const line of createInterface({ input: child.stdout! })) {
    return {
      ready: JSON.parse(line) as BenchEdgeServersReady,
      cpuUsage: () =>
        new Promise((resolve) => {
          child.once("message", (usage) => resolve(usage as NodeJS.CpuUsage));
          child.send("cpu");
        }),
      stop: () =>
        new Promise<void>((resolve) => {
          child.disconnect();
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
        }),
    };
  }
  throw new Error("bench servers exited before they were ready");
}
