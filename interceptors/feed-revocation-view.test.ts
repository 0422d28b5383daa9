import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationEventSchema, type RevocationEvent } from "../gen/caracal/revocation/v1/revocation_pb.js";
import { FeedRevocationView, type FeedRevocationViewOptions, type RevocationFeed } from "./feed-revocation-view.js";
import { jetStreamRevocationFeed } from "./jetstream-revocation-feed.js";
import { MandateError } from "./mandate-error.js";
import { entryFromEvent, eventFromEntry } from "./revocation-entry.js";
import type { RevocationEntry, RevocationTarget } from "./revocation-view.js";
import { CLAIMS_ISSUED_AT_MS, fixtureClaims } from "../test/support/claims.js";

// 2030-01-01T12:00:00Z; claims below are issued at T0.
const T0 = CLAIMS_ISSUED_AT_MS;
const HOUR = 3_600_000;

const claims = fixtureClaims;

let ids = 0;
function entry(target: RevocationTarget, options: { zone?: string; expiresAtMs?: number } = {}): RevocationEntry {
  ids += 1;
  return { id: `rev-${ids}`, zone: options.zone ?? "acme", target, expiresAtMs: options.expiresAtMs ?? T0 + HOUR };
}

const encode = (e: RevocationEntry) => toBinary(RevocationEventSchema, eventFromEntry(e));

/**
 * The interface under test's other side, in memory: a log with sequences that
 * a test appends to, and delivers from, separately, so it can hold messages
 * "in flight" while the view asks for the last sequence.
 */
class FakeFeed implements RevocationFeed {
  readonly log: { seq: number; data: Uint8Array }[] = [];
  reachable = true;
  following = false;
  lastSequenceCalls = 0;
  #handler: ((seq: number, data: Uint8Array) => void) | undefined;
  #delivered = 0;

  async follow(handler: (seq: number, data: Uint8Array) => void) {
    this.#handler = handler;
    this.following = true;
    return {
      stop: async () => {
        this.following = false;
      },
    };
  }

  async lastSequence(): Promise<number> {
    this.lastSequenceCalls++;
    if (!this.reachable) throw new Error("nats: disconnected");
    return this.log.at(-1)?.seq ?? 0;
  }

  /** Stores a message; it is not delivered until `deliver`. Sequences may skip (other zones). */
  append(data: Uint8Array, gap = 0): number {
    const seq = (this.log.at(-1)?.seq ?? 0) + 1 + gap;
    this.log.push({ seq, data });
    return seq;
  }

  /** Hands over stored messages not delivered yet (up to `count`). */
  deliver(count = Number.POSITIVE_INFINITY): void {
    while (count-- > 0 && this.#delivered < this.log.length) {
      const m = this.log[this.#delivered++]!;
      this.#handler!(m.seq, m.data);
    }
  }

  /** Hands a message over again, as a feed may after a reconnect. */
  redeliver(index: number): void {
    const m = this.log[index]!;
    this.#handler!(m.seq, m.data);
  }
}

/** A settable clock. */
function clock(start = T0) {
  let now = start;
  return {
    now: () => now,
    set: (ms: number) => {
      now = ms;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const views: FeedRevocationView[] = [];
afterEach(async () => {
  await Promise.all(views.splice(0).map((v) => v.stop()));
});

async function startView(feed: RevocationFeed, options: FeedRevocationViewOptions = {}): Promise<FeedRevocationView> {
  // Timers far apart: the tests drive every freshness check themselves.
  const view = await FeedRevocationView.start(feed, { pollIntervalMs: HOUR, pruneIntervalMs: HOUR, onError: () => {}, ...options });
  views.push(view);
  return view;
}

function expectStale(view: FeedRevocationView, nowMs: number, message?: RegExp): MandateError {
  let thrown: unknown;
  try {
    view.assertFresh(nowMs);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(MandateError);
  const error = thrown as MandateError;
  expect(error.reason).toBe(Reason.REVOCATION_STALE);
  expect(error.code).toBe(Code.Unavailable);
  if (message) expect(error.message).toMatch(message);
  return error;
}

describe("FeedRevocationView freshness", () => {
  it("refuses before the initial replay has caught up, even with a fresh clock", async () => {
    const feed = new FakeFeed();
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    feed.append(encode(entry({ kind: "mandate", mandateId: "m-9" })));
    const t = clock();
    const view = await startView(feed, { now: t.now });
    expect(await view.checkFreshness()).toBe(false);
    expectStale(view, t.now(), /not caught up/);
    feed.deliver(1);
    expectStale(view, t.now(), /not caught up/);
    expect(view.freshAt).toBeUndefined();
  });

  it("is fresh once the replay reaches the last sequence seen, as of the moment it asked", async () => {
    const feed = new FakeFeed();
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    feed.append(encode(entry({ kind: "mandate", mandateId: "m-9" })));
    const t = clock();
    const view = await startView(feed, { now: t.now });
    await view.checkFreshness();
    const ready = view.ready();
    t.advance(200);
    feed.deliver();
    await expect(ready).resolves.toBeUndefined();
    expect(view.freshAt).toBe(T0);
    expect(() => view.assertFresh(t.now())).not.toThrow();
    expect(view.isRevoked(claims())).toBe(true);
    expect(view.appliedSequence).toBe(2);
  });

  it("is fresh after the first check when the stream is empty", async () => {
    const t = clock();
    const view = await startView(new FakeFeed(), { now: t.now });
    await view.ready();
    expect(() => view.assertFresh(t.now())).not.toThrow();
    expect(view.isRevoked(claims())).toBe(false);
  });

  it("goes stale once maxStaleness has passed without a successful check", async () => {
    const feed = new FakeFeed();
    const errors: unknown[] = [];
    const t = clock();
    const view = await startView(feed, { now: t.now, onError: (e) => errors.push(e) });
    await view.ready();
    feed.reachable = false;
    t.advance(1_000);
    expect(await view.checkFreshness()).toBe(false);
    t.advance(1_000);
    expect(await view.checkFreshness()).toBe(false);
    expect(() => view.assertFresh(T0 + 5_000)).not.toThrow();
    const error = expectStale(view, T0 + 5_001, /5001 ms old, more than the allowed 5000 ms/);
    expect(error.message).not.toMatch(/disconnected/);
    // One report per outage, not one per check.
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/disconnected/);
  });

  it("honours a configured maxStaleness", async () => {
    const t = clock();
    const view = await startView(new FakeFeed(), { now: t.now, maxStalenessMs: 300 });
    await view.ready();
    expect(() => view.assertFresh(T0 + 300)).not.toThrow();
    expectStale(view, T0 + 301, /allowed 300 ms/);
  });

  it("does not count a check whose last sequence has not been applied yet", async () => {
    const feed = new FakeFeed();
    const t = clock();
    const view = await startView(feed, { now: t.now });
    await view.ready();
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    t.advance(1_000);
    expect(await view.checkFreshness()).toBe(false);
    t.advance(5_000);
    expectStale(view, t.now());
    // Delivery reaches what the check at T0+1000 saw: fresh as of that check, not of now.
    feed.deliver();
    expect(view.freshAt).toBe(T0 + 1_000);
    expectStale(view, T0 + 6_001);
    expect(() => view.assertFresh(T0 + 6_000)).not.toThrow();
  });

  it("counts a check when delivery has already gone past what it saw", async () => {
    const feed = new FakeFeed();
    const t = clock();
    const view = await startView(feed, { now: t.now });
    await view.ready();
    feed.append(encode(entry({ kind: "mandate", mandateId: "a" })));
    t.advance(1_000);
    await view.checkFreshness();
    t.advance(1_000);
    feed.append(encode(entry({ kind: "mandate", mandateId: "b" })));
    await view.checkFreshness();
    feed.append(encode(entry({ kind: "mandate", mandateId: "c" })));
    // All three arrive together: the newest check that delivery passed wins.
    feed.deliver();
    expect(view.freshAt).toBe(T0 + 2_000);
  });

  it("stays fresh under a steady stream of revocations when delivery trails each check a little", async () => {
    const feed = new FakeFeed();
    const t = clock();
    const view = await startView(feed, { now: t.now });
    await view.ready();
    feed.append(encode(entry({ kind: "mandate", mandateId: "m-first" })));
    await view.checkFreshness();
    for (let i = 0; i < 20; i++) {
      feed.append(encode(entry({ kind: "mandate", mandateId: `m-${i}` })));
      t.advance(1_000);
      // Every check sees a message not applied yet; only the one before it arrives
      // in time. That still proves the view current as of the previous check.
      expect(await view.checkFreshness()).toBe(false);
      feed.deliver(1);
      expect(view.freshAt).toBe(t.now() - 1_000);
      expect(() => view.assertFresh(t.now())).not.toThrow();
    }
  });

  it("tracks sequences with gaps (another zone's messages are never delivered)", async () => {
    const feed = new FakeFeed();
    feed.append(encode(entry({ kind: "mandate", mandateId: "a" })), 4);
    feed.append(encode(entry({ kind: "mandate", mandateId: "b" })), 10);
    const t = clock();
    const view = await startView(feed, { now: t.now });
    await view.checkFreshness();
    feed.deliver();
    await view.ready();
    expect(view.appliedSequence).toBe(16);
  });

  it("recovers by itself when checks succeed again after an outage", async () => {
    const feed = new FakeFeed();
    const errors: unknown[] = [];
    const t = clock();
    const view = await startView(feed, { now: t.now, onError: (e) => errors.push(e) });
    await view.ready();
    feed.reachable = false;
    t.advance(10_000);
    await view.checkFreshness();
    expectStale(view, t.now());
    // Revocations made during the outage arrive when the feed is back.
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    feed.reachable = true;
    t.advance(500);
    expect(await view.checkFreshness()).toBe(false);
    expectStale(view, t.now());
    feed.deliver();
    expect(() => view.assertFresh(t.now())).not.toThrow();
    expect(view.isRevoked(claims())).toBe(true);
    // A second outage is reported again.
    feed.reachable = false;
    await view.checkFreshness();
    expect(errors).toHaveLength(2);
  });

  it("shares one question between concurrent checks", async () => {
    const feed = new FakeFeed();
    const view = await startView(feed, { now: clock().now });
    await view.ready();
    const before = feed.lastSequenceCalls;
    await Promise.all([view.checkFreshness(), view.checkFreshness(), view.checkFreshness()]);
    expect(feed.lastSequenceCalls).toBe(before + 1);
  });

  it("checks on its own every pollIntervalMs", async () => {
    const feed = new FakeFeed();
    const view = await startView(feed, { pollIntervalMs: 10 });
    await vi.waitFor(() => expect(feed.lastSequenceCalls).toBeGreaterThanOrEqual(3), { timeout: 2_000, interval: 5 });
    expect(() => view.assertFresh(Date.now())).not.toThrow();
  });

  it("treats a nonsense last sequence as a failed check", async () => {
    const errors: unknown[] = [];
    const feed: RevocationFeed = { follow: async () => ({ stop: async () => {} }), lastSequence: async () => -1 };
    const view = await startView(feed, { now: clock().now, onError: (e) => errors.push(e) });
    expect(await view.checkFreshness()).toBe(false);
    expectStale(view, T0);
    expect(errors).toHaveLength(1);
  });
});

describe("FeedRevocationView fail-open (development only)", () => {
  it("admits when stale and reports through onStale, once per stale spell and again every 10 s", async () => {
    const feed = new FakeFeed();
    const stale: MandateError[] = [];
    const t = clock();
    const view = await startView(feed, { now: t.now, failOpen: true, onStale: (e) => stale.push(e) });
    await view.ready();
    feed.reachable = false;
    expect(() => view.assertFresh(T0 + 6_000)).not.toThrow();
    expect(() => view.assertFresh(T0 + 7_000)).not.toThrow();
    expect(stale).toHaveLength(1);
    expect(stale[0]!.reason).toBe(Reason.REVOCATION_STALE);
    expect(stale[0]!.message).toMatch(/6000 ms old/);
    view.assertFresh(T0 + 16_000);
    expect(stale).toHaveLength(2);
    // Fresh again, then stale again: a new spell is reported at once.
    feed.reachable = true;
    t.set(T0 + 17_000);
    await view.checkFreshness();
    view.assertFresh(T0 + 17_000);
    view.assertFresh(T0 + 22_001);
    expect(stale).toHaveLength(3);
  });

  it("admits before the replay caught up, and still answers isRevoked from what it has", async () => {
    const feed = new FakeFeed();
    const stale: MandateError[] = [];
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    feed.append(encode(entry({ kind: "session", sessionId: "sess-2" })));
    const view = await startView(feed, { now: clock().now, failOpen: true, onStale: (e) => stale.push(e) });
    feed.deliver(1);
    expect(() => view.assertFresh(T0)).not.toThrow();
    expect(stale[0]!.message).toMatch(/not caught up/);
    expect(view.isRevoked(claims())).toBe(true);
  });

  it("survives an onStale that throws", async () => {
    const view = await startView(new FakeFeed(), {
      now: clock().now,
      failOpen: true,
      onStale: () => {
        throw new Error("logger down");
      },
    });
    expect(() => view.assertFresh(T0)).not.toThrow();
  });
});

describe("FeedRevocationView revocations", () => {
  it("applies each target kind and tells onRevocation listeners", async () => {
    const feed = new FakeFeed();
    const view = await startView(feed, { now: clock().now });
    const seen: RevocationEntry[] = [];
    view.onRevocation((e) => seen.push(e));
    const app = entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 1_000 });
    feed.append(encode(app));
    feed.deliver();
    expect(seen).toEqual([app]);
    expect(view.isRevoked(claims())).toBe(true);
    expect(view.isRevoked(claims({ client_id: "agent-other" }))).toBe(false);
    const zone = entry({ kind: "zone", issuedBeforeMs: T0 + 1_000 }, { zone: "beta" });
    feed.append(encode(zone));
    feed.deliver();
    expect(view.isRevoked(claims({ zone: "beta", client_id: "x" }))).toBe(true);
    expect(view.isRevoked(claims({ zone: "beta", iat: T0 / 1000 + 1 }))).toBe(false);
  });

  it("skips and reports a malformed payload, and still counts its sequence as handled", async () => {
    const feed = new FakeFeed();
    const errors: unknown[] = [];
    feed.append(new Uint8Array([0xff, 0xff, 0xff]));
    feed.append(toBinary(RevocationEventSchema, create(RevocationEventSchema, { revocation: { revocationId: "r", zone: "acme" } })));
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    const view = await startView(feed, { now: clock().now, onError: (e) => errors.push(e) });
    await view.checkFreshness();
    feed.deliver();
    await view.ready();
    expect(errors.map(String)).toEqual([
      expect.stringMatching(/sequence 1 cannot be decoded; skipped/),
      expect.stringMatching(/sequence 2 is malformed; skipped/),
    ]);
    expect(view.size).toBe(1);
    expect(view.isRevoked(claims())).toBe(true);
  });

  it("keeps going when a revocation listener throws", async () => {
    const feed = new FakeFeed();
    const errors: unknown[] = [];
    const view = await startView(feed, { now: clock().now, onError: (e) => errors.push(e) });
    view.onRevocation(() => {
      throw new Error("cache broke");
    });
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" })));
    feed.deliver();
    expect(view.isRevoked(claims())).toBe(true);
    expect(view.appliedSequence).toBe(1);
    expect(errors).toHaveLength(1);
  });

  it("ignores a sequence handed over again after a reconnect", async () => {
    const feed = new FakeFeed();
    const view = await startView(feed, { now: clock().now });
    const seen: RevocationEntry[] = [];
    view.onRevocation((e) => seen.push(e));
    feed.append(encode(entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 1 })));
    feed.deliver();
    feed.redeliver(0);
    expect(seen).toHaveLength(1);
    expect(view.size).toBe(1);
  });

  it("does not hold revocations whose mandates have all expired", async () => {
    const feed = new FakeFeed();
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" }, { expiresAtMs: T0 - 1 })));
    const view = await startView(feed, { now: clock().now });
    feed.deliver();
    expect(view.size).toBe(0);
    expect(view.appliedSequence).toBe(1);
  });

  it("prunes entries once every mandate they could cover has expired", async () => {
    const feed = new FakeFeed();
    const t = clock();
    feed.append(encode(entry({ kind: "session", sessionId: "sess-1" }, { expiresAtMs: T0 + 1_000 })));
    feed.append(encode(entry({ kind: "session", sessionId: "sess-2" }, { expiresAtMs: T0 + 2_000 })));
    const view = await startView(feed, { now: t.now });
    feed.deliver();
    expect(view.size).toBe(2);
    t.set(T0 + 1_000);
    expect(view.prune()).toBe(1);
    expect(view.isRevoked(claims())).toBe(false);
    expect(view.isRevoked(claims({ sid: "sess-2" }))).toBe(true);
  });

  it("prunes on its own every pruneIntervalMs", async () => {
    const feed = new FakeFeed();
    const t = clock();
    feed.append(encode(entry({ kind: "application", clientId: "a", issuedBeforeMs: T0 }, { expiresAtMs: T0 + 1_000 })));
    const view = await startView(feed, { now: t.now, pruneIntervalMs: 10 });
    feed.deliver();
    expect(view.size).toBe(1);
    t.set(T0 + 1_000);
    await vi.waitFor(() => expect(view.size).toBe(0), { timeout: 2_000, interval: 5 });
  });
});

describe("FeedRevocationView lifecycle", () => {
  it("stops the feed and its timers, then refuses", async () => {
    const feed = new FakeFeed();
    const view = await startView(feed, { now: clock().now, pollIntervalMs: 10 });
    await view.ready();
    await view.stop();
    await view.stop();
    expect(feed.following).toBe(false);
    const calls = feed.lastSequenceCalls;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(feed.lastSequenceCalls).toBe(calls);
    expectStale(view, T0, /stopped/);
  });

  it("rejects ready() when stopped before catching up", async () => {
    const feed = new FakeFeed();
    feed.append(encode(entry({ kind: "mandate", mandateId: "x" })));
    const view = await startView(feed, { now: clock().now });
    const ready = view.ready();
    await view.stop();
    await expect(ready).rejects.toThrow(/stopped before it caught up/);
    await expect(view.ready()).rejects.toThrow(/stopped/);
  });

  it("fails to start when the feed cannot be followed", async () => {
    const feed: RevocationFeed = {
      follow: async () => {
        throw new Error("stream not found");
      },
      lastSequence: async () => 0,
    };
    await expect(FeedRevocationView.start(feed)).rejects.toThrow("stream not found");
  });

  it("refuses malformed options as TypeError", async () => {
    await expect(FeedRevocationView.start(new FakeFeed(), { maxStalenessMs: 0 })).rejects.toThrow(TypeError);
    await expect(FeedRevocationView.start(new FakeFeed(), { pollIntervalMs: 1.5 })).rejects.toThrow(TypeError);
    const nc = {} as Parameters<typeof jetStreamRevocationFeed>[0];
    expect(() => jetStreamRevocationFeed(nc, { zone: "acme.>" })).toThrow(TypeError);
    expect(() => jetStreamRevocationFeed(nc, { subjectPrefix: "a.*" })).toThrow(TypeError);
    expect(() => jetStreamRevocationFeed(nc, { streamName: "A.B" })).toThrow(TypeError);
  });
});

const at = (ms: number) => timestampFromMs(ms);
function event(revocation: NonNullable<Parameters<typeof create<typeof RevocationEventSchema>>[1]>["revocation"]): RevocationEvent {
  return create(RevocationEventSchema, { revocation });
}

describe("entryFromEvent", () => {
  const base = { revocationId: "rev-1", zone: "acme", reason: "leaked", revokedBy: "ops", createdAt: at(T0), expiresAt: at(T0 + HOUR) };
  const cases: { name: string; event: RevocationEvent; entry: RevocationEntry | undefined }[] = [
    {
      name: "a mandate target becomes a mandate entry",
      event: event({ ...base, target: { target: { case: "mandateId", value: "jti-1" } } }),
      entry: { id: "rev-1", zone: "acme", target: { kind: "mandate", mandateId: "jti-1" }, expiresAtMs: T0 + HOUR },
    },
    {
      name: "a session target becomes a session entry",
      event: event({ ...base, target: { target: { case: "sessionId", value: "sess-1" } } }),
      entry: { id: "rev-1", zone: "acme", target: { kind: "session", sessionId: "sess-1" }, expiresAtMs: T0 + HOUR },
    },
    {
      name: "an application target is cut off at the revocation's created_at",
      event: event({ ...base, target: { target: { case: "clientId", value: "agent-1" } } }),
      entry: { id: "rev-1", zone: "acme", target: { kind: "application", clientId: "agent-1", issuedBeforeMs: T0 }, expiresAtMs: T0 + HOUR },
    },
    {
      name: "a zone target is cut off at issued_before",
      event: event({ ...base, target: { target: { case: "issuedBefore", value: at(T0 - 5_000) } } }),
      entry: { id: "rev-1", zone: "acme", target: { kind: "zone", issuedBeforeMs: T0 - 5_000 }, expiresAtMs: T0 + HOUR },
    },
    {
      name: "an event without expires_at is still honoured, with no expiry",
      event: event({ ...base, expiresAt: undefined, target: { target: { case: "sessionId", value: "sess-1" } } }),
      entry: { id: "rev-1", zone: "acme", target: { kind: "session", sessionId: "sess-1" }, expiresAtMs: Number.POSITIVE_INFINITY },
    },
    { name: "an event without a revocation is malformed", event: create(RevocationEventSchema), entry: undefined },
    { name: "an event without a target is malformed", event: event({ ...base }), entry: undefined },
    { name: "an event without an id is malformed", event: event({ ...base, revocationId: "", target: { target: { case: "sessionId", value: "s" } } }), entry: undefined },
    { name: "an event whose zone is not a slug is malformed", event: event({ ...base, zone: "a.>", target: { target: { case: "sessionId", value: "s" } } }), entry: undefined },
    { name: "an empty mandate id is malformed", event: event({ ...base, target: { target: { case: "mandateId", value: "" } } }), entry: undefined },
    { name: "an empty session id is malformed", event: event({ ...base, target: { target: { case: "sessionId", value: "" } } }), entry: undefined },
    { name: "an empty client id is malformed", event: event({ ...base, target: { target: { case: "clientId", value: "" } } }), entry: undefined },
    {
      name: "an application target without created_at is malformed (no cut-off)",
      event: event({ ...base, createdAt: undefined, target: { target: { case: "clientId", value: "agent-1" } } }),
      entry: undefined,
    },
    {
      name: "a timestamp with out-of-range nanos is malformed",
      event: event({ ...base, expiresAt: { seconds: 1n, nanos: 2_000_000_000 }, target: { target: { case: "sessionId", value: "s" } } }),
      entry: undefined,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(entryFromEvent(c.event)).toEqual(c.entry);
    });
  }

  for (const e of [
    entry({ kind: "mandate", mandateId: "jti-1" }),
    entry({ kind: "session", sessionId: "sess-1" }),
    entry({ kind: "application", clientId: "agent-1", issuedBeforeMs: T0 }),
    entry({ kind: "zone", issuedBeforeMs: T0 }, { zone: "beta" }),
    entry({ kind: "session", sessionId: "sess-1" }, { expiresAtMs: Number.POSITIVE_INFINITY }),
  ]) {
    it(`round-trips a ${e.target.kind} entry through eventFromEntry (expires ${e.expiresAtMs})`, () => {
      expect(entryFromEvent(eventFromEntry(e))).toEqual(e);
    });
  }
});
