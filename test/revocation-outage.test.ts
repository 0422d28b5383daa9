/**
 * The durable path under a NATS outage, end to end with real Postgres and a
 * private nats-server: a verifier fails closed while NATS is away, a
 * revocation made during the outage waits in the outbox, and once NATS is back
 * it reaches the verifier exactly once, with nobody restarting anything.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationService } from "../gen/caracal/revocation/v1/revocation_service_pb.js";
import { TokenService } from "../gen/caracal/sts/v1/token_service_pb.js";
import { MandateSource } from "../clients/mandate-source.js";
import { mandateClientInterceptor } from "../interceptors/connect/mandate-client-interceptor.js";
import { FeedRevocationView } from "../interceptors/feed-revocation-view.js";
import { jetStreamRevocationFeed } from "../interceptors/jetstream-revocation-feed.js";
import { MandateError } from "../interceptors/mandate-error.js";
import type { RevocationEntry } from "../interceptors/revocation-view.js";
import { adminProfilePath, bootstrap, type AdminProfile } from "../services/bootstrap.js";
import type { Bus } from "../services/bus/bus.js";
import { openNatsBus } from "../services/bus/nats-bus.js";
import { KeyEncryptionKey } from "../services/keys/key-encryption-key.js";
import { startCaracalServer, type CaracalServer } from "../services/server/caracal-server.js";
import { openStore } from "../services/store/open-store.js";
import type { Store } from "../services/store/store.js";
import { startInterruptibleNatsServer, type InterruptibleNatsServer } from "./support/nats-outage.js";
import { createTestDatabase } from "./support/postgres.js";

/** Resolves once `probe` answers true; polls every 25 ms, for at most `withinMs`. */
async function eventually(probe: () => boolean | Promise<boolean>, what: string, withinMs = 15_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`not within ${withinMs} ms: ${what}`);
}

function staleReason(view: FeedRevocationView): Reason | undefined {
  try {
    view.assertFresh(Date.now());
    return undefined;
  } catch (error) {
    return error instanceof MandateError ? error.reason : Reason.UNSPECIFIED;
  }
}

describe("revocations across a NATS outage", () => {
  let nats: InterruptibleNatsServer;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dataDir: string;
  let store: Store;
  let bus: Bus;
  let server: CaracalServer;
  let verifierConnection: NatsConnection;
  let view: FeedRevocationView;
  let profile: AdminProfile;

  beforeAll(async () => {
    nats = await startInterruptibleNatsServer();
    database = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "caracal-outage-"));
    store = await openStore({ databaseUrl: database.url, dataDir });
    bus = await openNatsBus({ url: nats.url, timeoutMs: 1_000 });
    const kek = new KeyEncryptionKey(randomBytes(32));
    const log = pino({ level: "silent" });
    server = await startCaracalServer({
      config: { listen: { host: "127.0.0.1", port: 0 }, services: ["sts", "admin", "revocation"], shutdownGraceMs: 1_000 },
      store,
      bus,
      kek,
      log,
    });
    const target = `http://127.0.0.1:${server.address.port}`;
    await bootstrap(store, kek, { dataDir, target, now: Date.now, log });
    profile = JSON.parse(await readFile(adminProfilePath(dataDir), "utf8")) as AdminProfile;
    verifierConnection = await connect({ servers: nats.url, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    view = await FeedRevocationView.start(jetStreamRevocationFeed(verifierConnection), {
      maxStalenessMs: 500,
      pollIntervalMs: 100,
      onError: () => {},
    });
    await view.ready();
  }, 60_000);

  afterAll(async () => {
    await view?.stop();
    await verifierConnection?.close();
    await server?.close();
    await bus?.close();
    await store?.close();
    await database?.drop();
    await nats?.dispose();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("fails closed while NATS is away, keeps the revocation in the outbox, and delivers it once when NATS returns", async () => {
    const target = `http://127.0.0.1:${server.address.port}`;
    const sts = createClient(TokenService, createGrpcTransport({ baseUrl: target }));
    const source = new MandateSource({ sts, zone: profile.zone, clientId: profile.client_id, credential: { clientSecret: profile.client_secret } });
    const revocations = createClient(RevocationService, createGrpcTransport({ baseUrl: target, interceptors: [mandateClientInterceptor(source)] }));
    await source.mandateFor("caracal-admin", ["revocation.write"]); // signed in before the outage
    expect(staleReason(view)).toBeUndefined();

    await nats.kill();
    await eventually(() => staleReason(view) === Reason.REVOCATION_STALE, "the verifier refuses as stale");

    // Operators can still revoke: the store is the record, the outbox holds the event.
    const { revocation } = await revocations.revoke({
      zone: profile.zone,
      reason: "revoked during the outage",
      target: { target: { case: "sessionId", value: "s-during-outage" } },
    });
    const pending = async () =>
      (await store.query<{ n: number }>("SELECT count(*)::int AS n FROM revocation_outbox WHERE published_at IS NULL AND revocation_id = $1", [
        revocation!.revocationId,
      ])).rows[0]!.n;
    expect(await pending()).toBe(1);

    const delivered: RevocationEntry[] = [];
    view.onRevocation((entry) => delivered.push(entry));
    await nats.start();
    await eventually(() => delivered.some((entry) => entry.id === revocation!.revocationId), "the revocation reaches the verifier");
    await eventually(() => staleReason(view) === undefined, "the verifier is fresh again");
    await eventually(async () => (await pending()) === 0, "the outbox row is marked published");
    expect(delivered.filter((entry) => entry.id === revocation!.revocationId)).toHaveLength(1);
    expect(view.isRevoked({ zone: profile.zone, sid: "s-during-outage", root_sid: "s-during-outage" } as never)).toBe(true);
  }, 60_000);
});
