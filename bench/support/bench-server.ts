/**
 * A Caracal server for benchmarks, in its own process so that the load
 * generator and the server do not share an event loop: Postgres (a fresh
 * database), NATS JetStream with private stream names, a random KEK.
 * Prints one JSON line `{"address": "...", "profile": {...}}` when ready, and
 * cleans up (database, streams) on SIGTERM.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { adminProfilePath, bootstrap } from "../../services/bootstrap.js";
import { openNatsBus } from "../../services/bus/nats-bus.js";
import { KeyEncryptionKey } from "../../services/keys/key-encryption-key.js";
import { startCaracalServer } from "../../services/server/caracal-server.js";
import { openStore } from "../../services/store/open-store.js";
import { natsTestNamespace, testNatsUrl } from "../../test/support/nats.js";
import { createTestDatabase } from "../../test/support/postgres.js";

const log = pino({ level: "warn" });
const database = await createTestDatabase();
const nats = natsTestNamespace();
const dataDir = await mkdtemp(join(tmpdir(), "caracal-bench-"));
const store = await openStore({ databaseUrl: database.url, dataDir });
const bus = await openNatsBus({ url: testNatsUrl, ...nats.prefix() });
const kek = new KeyEncryptionKey(randomBytes(32));
const server = await startCaracalServer({
  config: { listen: { host: "127.0.0.1", port: 0 }, services: ["sts", "admin"], shutdownGraceMs: 1_000 },
  store,
  bus,
  kek,
  log,
});
const target = `http://127.0.0.1:${server.address.port}`;
await bootstrap(store, kek, { dataDir, target, now: Date.now, log });
const profile = JSON.parse(await readFile(adminProfilePath(dataDir), "utf8"));
process.stdout.write(JSON.stringify({ address: target, profile }) + "\n");

if (process.env.BENCH_ELU) {
  const { performance } = await import("node:perf_hooks");
  let last = performance.eventLoopUtilization();
  setInterval(() => {
    const now = performance.eventLoopUtilization();
    process.stderr.write(`elu ${performance.eventLoopUtilization(now, last).utilization.toFixed(2)}\n`);
    last = now;
  }, 2000).unref();
}

process.once("SIGTERM", async () => {
  await server.close();
  await bus.close();
  await store.close();
  await database.drop();
  await nats.cleanup();
  await rm(dataDir, { recursive: true, force: true });
  process.exit(0);
});
