/**
 * The verifier's revocation view on real NATS JetStream: replay, live
 * delivery, freshness proofs per zone, and an outage of a private server.
 */
import { toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationEventSchema } from "../gen/caracal/revocation/v1/revocation_pb.js";
import { FeedRevocationView } from "../interceptors/feed-revocation-view.js";
import { jetStreamRevocationFeed } from "../interceptors/jetstream-revocation-feed.js";
import type { MandateClaims } from "../interceptors/mandate-claims.js";
import { MandateError } from "../interceptors/mandate-error.js";
import { eventFromEntry } from "../interceptors/revocation-entry.js";
import type { RevocationEntry, RevocationTarget } from "../interceptors/revocation-view.js";
import type { Bus } from "../services/bus/bus.js";
import { openNatsBus } from "../services/bus/nats-bus.js";
import { natsTestNamespace, testNatsUrl, type NatsTestPrefix } from "./support/nats.js";
import { startInterruptibleNatsServer, type InterruptibleNatsServer } from "./support/nats-outage.js";

const ns = natsTestNamespace();
afterAll(() => ns.cleanup());

/** Everything a test opened, closed in reverse after it. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

const HOUR = 3_600_000;
let ids = 0;
function revocation(target: RevocationTarget, zone = "acme"): RevocationEntry {
  ids += 1;
  return { id: `rev-${ids}-${Math.random().toString(36).slice(2, 8)}`, zone, target, expiresAtMs: Date.now() + HOUR };
}

function claims(overrides: Partial<MandateClaims> = {}): MandateClaims {
  const iat = Math.floor(Date.now() / 1000) - 10;
  return {
    iss: "urn:caracal:zone:acme",
    sub: "agent-billing",
    aud: ["billing-api"],
    exp: iat + 300,
    iat,
    nbf: iat,
    jti: "mandate-unrevoked",
    zone: "acme",
    use: "resource",
    client_id: "agent-billing",
    sid: "sess-unrevoked",
    root_sid: "sess-unrevoked",
    scope: "invoices.read",
    target: ["billing-api"],
    policy_set_version: 1,
    ...overrides,
  };
}

const streamOf = (prefix: NatsTestPrefix) => `${prefix.streamPrefix}_REVOCATIONS`;

async function openBus(url: string, prefix: NatsTestPrefix): Promise<Bus> {
  const bus = await openNatsBus({ url, ...prefix, timeoutMs: 2_000, onError: () => {} });
  cleanups.push(() => bus.close());
  return bus;
}

/** A verifier's own connection, set up as `jetStreamRevocationFeed` asks: reconnect forever. */
async function verifierConnection(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url, name: "caracal-test-verifier", reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  cleanups.push(() => nc.close());
  return nc;
}

async function startView(
  nc: NatsConnection,
  prefix: NatsTestPrefix,
  options: { zone?: string; maxStalenessMs?: number; pollIntervalMs?: number; timeoutMs?: number } = {},
): Promise<FeedRevocationView> {
  const feed = jetStreamRevocationFeed(nc, {
    streamName: streamOf(prefix),
    subjectPrefix: prefix.subjectPrefix,
    zone: options.zone,
    timeoutMs: options.timeoutMs,
    onError: () => {},
  });
  const view = await FeedRevocationView.start(feed, {
    maxStalenessMs: options.maxStalenessMs,
    pollIntervalMs: options.pollIntervalMs ?? 50,
    onError: () => {},
  });
  cleanups.push(() => view.stop());
  return view;
}

function publish(bus: Bus, entry: RevocationEntry) {
  return bus.publish("revocations", entry.zone, toBinary(RevocationEventSchema, eventFromEntry(entry)), entry.id);
}

/** Resolves once `view` has applied every revocation id in `ids`; rejects after `ms`. */
function applied(view: FeedRevocationView, ids: readonly string[], ms = 10_000): Promise<void> {
  const waiting = new Set(ids);
  let unsubscribe = () => {};
  const done = new Promise<void>((resolve) => {
    unsubscribe = view.onRevocation((entry) => {
      waiting.delete(entry.id);
      if (waiting.size === 0) resolve();
    });
  });
  return within(done, ms, () => `revocations not applied: ${[...waiting].join(", ")}`).finally(unsubscribe);
}

function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what()} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `condition` every 10 ms until it holds; fails after `ms`. */
async function until(condition: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function refusal(view: FeedRevocationView): MandateError | undefined {
  try {
    view.assertFresh(Date.now());
    return undefined;
  } catch (error) {
    if (error instanceof MandateError) return error;
    throw error;
  }
}

const isFresh = (view: FeedRevocationView) => refusal(view) === undefined;

describe("revocation view on NATS JetStream", () => {
  it("knows a revocation published before it started once the replay has caught up", async () => {
    const prefix = ns.prefix();
    const bus = await openBus(testNatsUrl, prefix);
    const session = revocation({ kind: "session", sessionId: "sess-1" });
    await publish(bus, session);
    await publish(bus, revocation({ kind: "session", sessionId: "sess-1" }, "beta"));
    const view = await startView(await verifierConnection(testNatsUrl), prefix, { zone: "acme" });
    await within(view.ready(), 5_000, () => "view not caught up");
    expect(isFresh(view)).toBe(true);
    expect(view.isRevoked(claims({ sid: "sess-1" }))).toBe(true);
    expect(view.isRevoked(claims({ sid: "sess-2" }))).toBe(false);
    // The zone filter holds: beta's revocation never reached an acme verifier.
    expect(view.size).toBe(1);
  });

  it("applies a revocation published after it started within a bounded wait", async () => {
    const prefix = ns.prefix();
    const bus = await openBus(testNatsUrl, prefix);
    const view = await startView(await verifierConnection(testNatsUrl), prefix);
    await within(view.ready(), 5_000, () => "view not caught up");
    const app = revocation({ kind: "application", clientId: "agent-billing", issuedBeforeMs: Date.now() });
    const arrived = applied(view, [app.id], 2_000);
    await publish(bus, app);
    await arrived;
    expect(view.isRevoked(claims())).toBe(true);
    expect(view.isRevoked(claims({ client_id: "agent-other" }))).toBe(false);
  });

  it("proves a zone view fresh while the stream's newest messages belong to other zones", async () => {
    const prefix = ns.prefix();
    const bus = await openBus(testNatsUrl, prefix);
    await publish(bus, revocation({ kind: "mandate", mandateId: "jti-1" }));
    for (let i = 0; i < 3; i++) await publish(bus, revocation({ kind: "mandate", mandateId: `jti-beta-${i}` }, "beta"));
    const nc = await verifierConnection(testNatsUrl);
    const acme = await startView(nc, prefix, { zone: "acme" });
    const all = await startView(nc, prefix);
    await within(Promise.all([acme.ready(), all.ready()]), 5_000, () => "views not caught up");
    // The acme consumer never sees sequences 2..4; its proof is acme's own last message.
    expect(acme.appliedSequence).toBe(1);
    expect(all.appliedSequence).toBe(4);
    await publish(bus, revocation({ kind: "mandate", mandateId: "jti-beta-late" }, "beta"));
    expect(await acme.checkFreshness()).toBe(true);
    // A zone with no revocation at all is fresh too.
    const gamma = await startView(nc, prefix, { zone: "gamma" });
    await within(gamma.ready(), 5_000, () => "gamma view not caught up");
    expect(gamma.appliedSequence).toBe(0);
  });

  it("is fresh on a stream whose messages are all gone although its last sequence stayed", async () => {
    const prefix = ns.prefix();
    const bus = await openBus(testNatsUrl, prefix);
    for (let i = 0; i < 3; i++) await publish(bus, revocation({ kind: "session", sessionId: `s-${i}` }));
    // What max-age expiry leaves behind: no messages, last_seq still 3.
    const nc = await verifierConnection(testNatsUrl);
    await (await jetstreamManager(nc)).streams.purge(streamOf(prefix));
    const all = await startView(nc, prefix);
    const acme = await startView(nc, prefix, { zone: "acme" });
    await within(Promise.all([all.ready(), acme.ready()]), 5_000, () => "views not caught up");
    expect(all.size).toBe(0);
    const late = revocation({ kind: "session", sessionId: "s-late" });
    const arrived = applied(all, [late.id], 2_000);
    await publish(bus, late);
    await arrived;
    expect(all.appliedSequence).toBe(4);
  });

  it("keeps following when its consumer is deleted from under it, and removes its consumer when stopped", async () => {
    const prefix = ns.prefix();
    const bus = await openBus(testNatsUrl, prefix);
    const nc = await verifierConnection(testNatsUrl);
    const jsm = await jetstreamManager(nc);
    const consumers = async () => (await jsm.consumers.list(streamOf(prefix)).next()).map((c) => c.name);
    const view = await startView(nc, prefix, { zone: "acme" });
    await within(view.ready(), 5_000, () => "view not caught up");
    const [name] = await consumers();
    expect(name).toBeDefined();
    await jsm.consumers.delete(streamOf(prefix), name!);
    const after = revocation({ kind: "session", sessionId: "sess-after-delete" });
    const arrived = applied(view, [after.id], 10_000);
    await publish(bus, after);
    await arrived;
    expect(view.isRevoked(claims({ sid: "sess-after-delete" }))).toBe(true);
    expect(await consumers()).not.toContain(name);
    await view.stop();
    // Deletion is best effort and not awaited by stop(): wait for it, bounded.
    await until(async () => (await consumers()).length === 0, 5_000, "consumer not removed after stop");
  });

  it("starts a fresh consumer after a reconnect, without losing or repeating anything", async () => {
    const prefix = ns.prefix();
    const bus = await openBus(testNatsUrl, prefix);
    const nc = await verifierConnection(testNatsUrl);
    const jsm = await jetstreamManager(await verifierConnection(testNatsUrl));
    const consumers = async () => (await jsm.consumers.list(streamOf(prefix)).next()).map((c) => c.name);
    const view = await startView(nc, prefix);
    const seen: string[] = [];
    view.onRevocation((e) => seen.push(e.id));
    const first = revocation({ kind: "session", sessionId: "sess-a" });
    const firstApplied = applied(view, [first.id], 5_000);
    await publish(bus, first);
    await firstApplied;
    const [before] = await consumers();
    const reconnected = (async () => {
      for await (const s of nc.status()) if (s.type === "reconnect") return;
    })();
    await nc.reconnect();
    await within(reconnected, 5_000, () => "no reconnect");
    const second = revocation({ kind: "session", sessionId: "sess-b" });
    const secondApplied = applied(view, [second.id], 5_000);
    await publish(bus, second);
    await secondApplied;
    expect(seen).toEqual([first.id, second.id]);
    await until(async () => {
      const names = await consumers();
      return names.length === 1 && names[0] !== before;
    }, 5_000, "the old consumer was not replaced");
    // A check sent while the connection was being replaced is lost and times out; a later one proves it.
    await until(() => view.checkFreshness(), 5_000, "view not proven fresh after the reconnect");
  });

  describe("through a NATS outage", () => {
    let server: InterruptibleNatsServer | undefined;
    afterAll(async () => {
      await server?.dispose();
    });

    it("fails closed past the staleness bound, then gets every revocation made meanwhile and is fresh again by itself", async () => {
      server = await startInterruptibleNatsServer();
      const prefix = ns.prefix();
      const bus = await openBus(server.url, prefix);
      const options = { maxStalenessMs: 300, pollIntervalMs: 50, timeoutMs: 250 };
      // Two verifiers, each on its own connection: one per zone, one for all zones.
      const views = [
        await startView(await verifierConnection(server.url), prefix, { ...options, zone: "acme" }),
        await startView(await verifierConnection(server.url), prefix, options),
      ];
      await within(Promise.all(views.map((v) => v.ready())), 5_000, () => "views not caught up");
      const before = revocation({ kind: "session", sessionId: "sess-before" });
      const beforeApplied = Promise.all(views.map((v) => applied(v, [before.id], 2_000)));
      await publish(bus, before);
      await beforeApplied;
      await until(() => views.every(isFresh), 5_000, "views not fresh before the outage");

      await server.kill();
      const killedAt = Date.now();
      await until(() => views.every((v) => !isFresh(v)), 5_000, "views did not go stale");
      for (const view of views) {
        const error = refusal(view)!;
        expect(error.reason).toBe(Reason.REVOCATION_STALE);
        expect(error.code).toBe(Code.Unavailable);
        expect(error.message).toMatch(/allowed 300 ms/);
        // No proof while the server was away, and the refusal came only past the bound.
        expect(view.freshAt!).toBeLessThanOrEqual(killedAt);
        expect(Date.now() - view.freshAt!).toBeGreaterThan(300);
      }
      // Revoked sessions stay revoked while stale; the refusal comes first anyway.
      expect(views.every((v) => v.isRevoked(claims({ sid: "sess-before" })))).toBe(true);

      await server.start();
      // Revocations made during the outage sat in Caracal's outbox; its relay
      // publishes them once NATS is back (the same id, so a retry is harmless).
      const during = [
        revocation({ kind: "session", sessionId: "sess-during-1" }),
        revocation({ kind: "mandate", mandateId: "jti-during" }),
        revocation({ kind: "application", clientId: "agent-during", issuedBeforeMs: Date.now() }),
        revocation({ kind: "session", sessionId: "sess-during-2" }),
        revocation({ kind: "session", sessionId: "sess-beta" }, "beta"),
      ];
      const acmeIds = during.filter((e) => e.zone === "acme").map((e) => e.id);
      const arrived = Promise.all([applied(views[0]!, acmeIds, 20_000), applied(views[1]!, during.map((e) => e.id), 20_000)]);
      for (const entry of during) await publishOnceBack(bus, entry);
      await arrived;
      await until(() => views.every(isFresh), 10_000, "views did not become fresh again");

      // None lost: every revocation, from before and during the outage, holds everywhere it applies.
      for (const view of views) {
        expect(view.isRevoked(claims({ sid: "sess-before" }))).toBe(true);
        expect(view.isRevoked(claims({ sid: "sess-during-1" }))).toBe(true);
        expect(view.isRevoked(claims({ sid: "sess-during-2" }))).toBe(true);
        expect(view.isRevoked(claims({ jti: "jti-during" }))).toBe(true);
        expect(view.isRevoked(claims({ client_id: "agent-during" }))).toBe(true);
        expect(view.isRevoked(claims())).toBe(false);
      }
      expect(views[0]!.size).toBe(5);
      expect(views[1]!.size).toBe(6);
      expect(views[1]!.isRevoked(claims({ zone: "beta", sid: "sess-beta" }))).toBe(true);
    }, 60_000);
  });
});

/** Publishes, retrying while the bus is still reconnecting; bounded. */
async function publishOnceBack(bus: Bus, entry: RevocationEntry): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await publish(bus, entry);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
