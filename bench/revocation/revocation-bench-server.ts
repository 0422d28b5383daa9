/**
 * The Caracal server for bench/revocation, in its own process: as
 * `bench/support/bench-server.ts`, but serving `revocation` as well (so the
 * outbox relay runs), and telling the load generator which JetStream stream
 * and subject prefix its bus uses, so verifiers can follow the same stream.
 *
 * Prints one JSON line when ready:
 * `{"address", "profile", "streamName", "subjectPrefix"}`.
 *
 * Hop timestamps: the store and the bus handed to the server are wrapped
 * (nothing else changes) so that, per revocation id, the process records when
 * the Revoke transaction committed, when the relay round that took the row
 * started (the relay's wake), when its outbox SELECT returned, when the
 * JetStream publish was sent and acknowledged, and when the relay committed.
 * Times are `performance.timeOrigin + performance.now()`: epoch ms with
 * sub-ms resolution, comparable with the load generator's. On SIGTERM the
 * records go to the file named by `argv[2]` (one JSON object per line), then
 * everything is cleaned up (database, streams).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { adminProfilePath, bootstrap } from "../../services/bootstrap.js";
import type { Bus } from "../../services/bus/bus.js";
import { openNatsBus } from "../../services/bus/nats-bus.js";
import { KeyEncryptionKey } from "../../services/keys/key-encryption-key.js";
import { startCaracalServer } from "../../services/server/caracal-server.js";
import { openStore } from "../../services/store/open-store.js";
import type { Queryable, QueryResult, Row, Store } from "../../services/store/store.js";
import { natsTestNamespace, testNatsUrl } from "../../test/support/nats.js";
import { createTestDatabase } from "../../test/support/postgres.js";

/** Per revocation id: what happened to it in this process, epoch ms. */
export interface ServerHops {
  id: string;
  /** The Revoke transaction (advisory lock, INSERTs) committed. */
  committed?: number;
  /** The relay round that published it began: `relay.wake()` runs the round at once. */
  relayStart?: number;
  /** The relay's `SELECT … FOR UPDATE SKIP LOCKED` returned the row. */
  relaySelected?: number;
  /** `bus.publish` called. */
  publishStart?: number;
  /** JetStream's ack came back. */
  publishAck?: number;
  /** The relay's transaction (UPDATE published_at) committed. */
  relayCommitted?: number;
}

const hopsFile = process.argv[2];
const clock = () => performance.timeOrigin + performance.now();
const hops = new Map<string, ServerHops>();
const hop = (id: string) => {
  let h = hops.get(id);
  if (h === undefined) hops.set(id, (h = { id }));
  return h;
};

/** Calls through to `target`, with `overrides` in place of some methods; methods stay bound to the target (private fields). */
function wrap<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(t, property) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof T];
      const value = Reflect.get(t, property, t);
      return typeof value === "function" ? value.bind(t) : value;
    },
  });
}

function timedStore(store: Store): Store {
  return wrap(store, {
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const started = clock();
      const revoked: string[] = [];
      const relayed: string[] = [];
      const result = await store.transaction((tx) =>
        fn({
          async query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
            const out = await tx.query<R>(sql, params);
            if (sql.startsWith("INSERT INTO revocation_outbox")) revoked.push(String(params?.[0]));
            if (sql.includes("FROM revocation_outbox o")) {
              const at = clock();
              for (const row of out.rows) {
                const h = hop(String(row.revocation_id));
                h.relayStart ??= started;
                h.relaySelected ??= at;
                relayed.push(h.id);
              }
            }
            return out;
          },
        }),
      );
      const at = clock();
      for (const id of revoked) hop(id).committed = at;
      for (const id of relayed) hop(id).relayCommitted ??= at;
      return result;
    },
  });
}

function timedBus(bus: Bus): Bus {
  return wrap(bus, {
    async publish(topic, zone, data, msgId) {
      const h = topic === "revocations" ? hop(msgId) : undefined;
      if (h) h.publishStart ??= clock();
      const ack = await bus.publish(topic, zone, data, msgId);
      if (h) h.publishAck ??= clock();
      return ack;
    },
  });
}

const log = pino({ level: "warn" });
const database = await createTestDatabase();
const nats = natsTestNamespace();
const prefix = nats.prefix();
const dataDir = await mkdtemp(join(tmpdir(), "caracal-bench-"));
const store = await openStore({ databaseUrl: database.url, dataDir });
const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
const kek = new KeyEncryptionKey(randomBytes(32));
const server = await startCaracalServer({
  config: { listen: { host: "127.0.0.1", port: 0 }, services: ["sts", "admin", "revocation"], shutdownGraceMs: 1_000 },
  store: timedStore(store),
  bus: timedBus(bus),
  kek,
  log,
});
const target = `http://127.0.0.1:${server.address.port}`;
await bootstrap(store, kek, { dataDir, target, now: Date.now, log });
const profile = JSON.parse(await readFile(adminProfilePath(dataDir), "utf8"));
// openNatsBus names its streams `<streamPrefix>_REVOCATIONS` and subjects `<subjectPrefix>.revocations.<zone>`.
process.stdout.write(
  JSON.stringify({ address: target, profile, streamName: `${prefix.streamPrefix}_REVOCATIONS`, subjectPrefix: prefix.subjectPrefix }) + "\n",
);

process.once("SIGTERM", async () => {
  await server.close();
  if (hopsFile) await writeFile(hopsFile, [...hops.values()].map((h) => JSON.stringify(h) + "\n").join(""));
  await bus.close();
  await store.close();
  await database.drop();
  await nats.cleanup();
  await rm(dataDir, { recursive: true, force: true });
  process.exit(0);
});
