/**
 * The one suite every bus passes (the spicedb way: one datastore suite, many
 * datastores). `nats-bus.test.ts` and `memory-bus.test.ts` run it; anything a
 * caller may rely on whichever bus is configured belongs here.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BatchOptions, Bus, BusFailure, BusMessage, Subscription } from "./bus.js";

/** A bus opened for one test. */
export interface BusUnderTest {
  /** A freshly opened bus with empty streams. */
  readonly bus: Bus;
  /**
   * The bus after a simulated restart of its process: same streams and
   * durable consumers, and (for NATS) a new connection, the old one closed.
   * The bus passed earlier must not be used afterwards.
   */
  reopen(): Promise<Bus>;
  /** Closes whatever is open and removes what the test created. */
  cleanup(): Promise<void>;
  /** Failures the bus reported through `onError`, when the harness collects them. */
  readonly failures?: readonly BusFailure[];
}

/** Collects deliveries and lets a test wait for the ones it expects, without sleeping. */
export class Inbox {
  readonly received: BusMessage[] = [];
  readonly #waiters = new Set<() => void>();

  /** The handler to subscribe with. */
  readonly handler = (m: BusMessage): void => {
    this.received.push(m);
    for (const check of this.#waiters) check();
  };

  /** Message ids in arrival order. */
  ids(): string[] {
    return this.received.map((m) => m.msgId);
  }

  /** Resolves as soon as `done` holds for what arrived, or rejects after `timeoutMs` saying what did arrive. */
  until(done: (received: readonly BusMessage[]) => boolean, what: string, timeoutMs = 10_000): Promise<BusMessage[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done(this.received)) return;
        cleanup();
        resolve([...this.received]);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${JSON.stringify(this.ids())}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Resolves once a message with this id arrived. */
  untilId(msgId: string, timeoutMs?: number): Promise<BusMessage[]> {
    return this.until((r) => r.some((m) => m.msgId === msgId), `message ${msgId}`, timeoutMs);
  }
}

/** Records the batches a `consumeBatch` handler gets, and feeds their messages to an {@link Inbox}. */
export class BatchInbox extends Inbox {
  /** Message ids of each batch, in arrival order. */
  readonly batches: string[][] = [];

  /** The batch handler to subscribe with. */
  readonly batchHandler = async (messages: readonly BusMessage[]): Promise<void> => {
    this.batches.push(messages.map((m) => m.msgId));
    for (const m of messages) this.handler(m);
  };
}

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A promise a handler can wait on, held until the test calls `release`. */
function gate(): { released: Promise<void>; release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  return { released, release };
}
/** Sorted copy, for comparing what arrived when redeliveries may change the order. */
const sorted = (ids: readonly string[]) => [...ids].sort();

/**
 * Registers the bus contract suite for one implementation.
 *
 * @param name - shown in the suite title, e.g. `"NATS JetStream"`.
 * @param open - opens a bus with streams no other test uses.
 */
export function describeBusContract(name: string, open: () => Promise<BusUnderTest>): void {
  describe(`${name} bus contract`, () => {
    let t: BusUnderTest;
    const subscriptions: Subscription[] = [];
    const track = (s: Subscription) => (subscriptions.push(s), s);

    beforeEach(async () => {
      t = await open();
    });

    afterEach(async () => {
      await Promise.all(subscriptions.splice(0).map((s) => s.stop()));
      await t.cleanup();
    });

    it("acknowledges each publish with a sequence that increases in publish order, across zones", async () => {
      const acks = [];
      for (const [zone, id] of [["alpha", "m1"], ["beta", "m2"], ["alpha", "m3"]] as const) {
        acks.push(await t.bus.publish("revocations", zone, bytes(id), id));
      }
      expect(acks.map((a) => a.duplicate)).toEqual([false, false, false]);
      expect(acks[0]!.seq).toBeGreaterThan(0);
      expect(acks[1]!.seq).toBeGreaterThan(acks[0]!.seq);
      expect(acks[2]!.seq).toBeGreaterThan(acks[1]!.seq);
    });

    it("reports the last sequence a topic holds: 0 when empty, then the last publish's seq", async () => {
      expect(await t.bus.lastSequence("audit")).toBe(0);
      await t.bus.publish("audit", "alpha", bytes("a1"), "a1");
      const last = await t.bus.publish("audit", "beta", bytes("a2"), "a2");
      expect(await t.bus.lastSequence("audit")).toBe(last.seq);
      expect(await t.bus.lastSequence("revocations")).toBe(0);
    });

    it("drops a second publish with the same msgId, answers with the first one's seq and delivers it once", async () => {
      const first = await t.bus.publish("revocations", "alpha", bytes("first"), "rev-1");
      const second = await t.bus.publish("revocations", "alpha", bytes("second"), "rev-1");
      expect(second).toEqual({ seq: first.seq, duplicate: true });
      await t.bus.publish("revocations", "alpha", bytes("end"), "end");

      const inbox = new Inbox();
      track(await t.bus.follow("revocations", inbox.handler));
      await inbox.untilId("end");
      expect(inbox.ids()).toEqual(["rev-1", "end"]);
      expect(text(inbox.received[0]!.data)).toBe("first");
    });

    it("replays every message held when follow starts, in order, then delivers live ones", async () => {
      const before = Date.now();
      for (let i = 1; i <= 5; i++) await t.bus.publish("revocations", i % 2 ? "alpha" : "beta", bytes(`payload-${i}`), `m${i}`);

      const inbox = new Inbox();
      track(await t.bus.follow("revocations", inbox.handler));
      await inbox.until((r) => r.length >= 5, "the 5 stored messages");
      expect(inbox.ids()).toEqual(["m1", "m2", "m3", "m4", "m5"]);
      const m2 = inbox.received[1]!;
      expect(m2).toMatchObject({ topic: "revocations", zone: "beta", msgId: "m2" });
      expect(text(m2.data)).toBe("payload-2");
      expect(m2.time).toBeInstanceOf(Date);
      // Generous bounds: the server's clock, not ours, stamps NATS messages.
      expect(Math.abs(m2.time.getTime() - before)).toBeLessThan(60_000);
      const seqs = inbox.received.map((m) => m.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

      await t.bus.publish("revocations", "alpha", bytes("live-1"), "m6");
      await t.bus.publish("revocations", "beta", bytes("live-2"), "m7");
      await inbox.untilId("m7");
      expect(inbox.ids()).toEqual(["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    });

    it("starts every follow from the beginning again, since follow is not durable", async () => {
      await t.bus.publish("revocations", "alpha", bytes("x"), "m1");
      const first = new Inbox();
      const sub = await t.bus.follow("revocations", first.handler);
      await first.untilId("m1");
      await sub.stop();

      const second = new Inbox();
      track(await t.bus.follow("revocations", second.handler));
      await second.untilId("m1");
      expect(second.ids()).toEqual(["m1"]);
    });

    it("delivers only the requested zone when follow has a zone filter", async () => {
      await t.bus.publish("revocations", "alpha", bytes("a"), "a1");
      await t.bus.publish("revocations", "beta", bytes("b"), "b1");
      await t.bus.publish("revocations", "alpha", bytes("a"), "a2");

      const inbox = new Inbox();
      track(await t.bus.follow("revocations", inbox.handler, { zone: "alpha" }));
      await t.bus.publish("revocations", "beta", bytes("b"), "b2");
      await t.bus.publish("revocations", "alpha", bytes("a"), "a3");
      await inbox.untilId("a3");
      expect(inbox.ids()).toEqual(["a1", "a2", "a3"]);
      expect(inbox.received.every((m) => m.zone === "alpha")).toBe(true);
    });

    it("keeps topics apart: each has its own sequence and its own subscribers", async () => {
      const rev = await t.bus.publish("revocations", "alpha", bytes("r"), "same-id");
      const audit = await t.bus.publish("audit", "alpha", bytes("a"), "same-id");
      // The same id on another topic is not a duplicate.
      expect(audit.duplicate).toBe(false);
      expect(audit.seq).toBe(rev.seq);

      const revocations = new Inbox();
      const audits = new Inbox();
      track(await t.bus.follow("revocations", revocations.handler));
      track(await t.bus.follow("audit", audits.handler));
      await t.bus.publish("audit", "alpha", bytes("a"), "audit-end");
      await t.bus.publish("revocations", "alpha", bytes("r"), "rev-end");
      await revocations.untilId("rev-end");
      await audits.untilId("audit-end");
      expect(revocations.ids()).toEqual(["same-id", "rev-end"]);
      expect(revocations.received.every((m) => m.topic === "revocations")).toBe(true);
      expect(audits.ids()).toEqual(["same-id", "audit-end"]);
      expect(audits.received.every((m) => m.topic === "audit")).toBe(true);
    });

    it("keeps a follow running when its handler throws, and reports the failure", async () => {
      const inbox = new Inbox();
      track(
        await t.bus.follow("revocations", (m) => {
          inbox.handler(m);
          if (m.msgId === "bad") throw new Error("cannot decode");
        }),
      );
      await t.bus.publish("revocations", "alpha", bytes("?"), "bad");
      await t.bus.publish("revocations", "alpha", bytes("ok"), "good");
      await inbox.untilId("good");
      // Not redelivered: follow has no acknowledgements.
      expect(inbox.ids()).toEqual(["bad", "good"]);
      if (t.failures) expect(t.failures).toContainEqual(expect.objectContaining({ kind: "handler", topic: "revocations" }));
    });

    it("redelivers to a durable consumer when its handler throws, and acknowledges once it resolves", async () => {
      const attempts: string[] = [];
      const done = new Inbox();
      track(
        await t.bus.consume("audit", "ledger", async (m) => {
          attempts.push(m.msgId);
          if (m.msgId === "e1" && attempts.filter((id) => id === "e1").length === 1) throw new Error("database away");
          done.handler(m);
        }),
      );
      await t.bus.publish("audit", "alpha", bytes("1"), "e1");
      await t.bus.publish("audit", "alpha", bytes("2"), "e2");
      await done.until((r) => r.length >= 2, "e1 and e2 handled");
      expect([...done.ids()].sort()).toEqual(["e1", "e2"]);
      expect(attempts.filter((id) => id === "e1")).toHaveLength(2);
      if (t.failures) {
        expect(t.failures).toContainEqual(expect.objectContaining({ kind: "handler", topic: "audit", durable: "ledger" }));
      }
    });

    it("resumes a durable consumer after a restart without gaps or duplicates", async () => {
      const before = new Inbox();
      const sub = await t.bus.consume("audit", "ledger", before.handler);
      for (const id of ["e1", "e2", "e3"]) await t.bus.publish("audit", "alpha", bytes(id), id);
      await before.untilId("e3");
      await sub.stop();
      // Published while nobody consumes.
      for (const id of ["e4", "e5"]) await t.bus.publish("audit", "beta", bytes(id), id);

      const bus = await t.reopen();
      const after = new Inbox();
      track(await bus.consume("audit", "ledger", after.handler));
      await bus.publish("audit", "alpha", bytes("e6"), "e6");
      await after.untilId("e6");
      expect(before.ids()).toEqual(["e1", "e2", "e3"]);
      expect(after.ids()).toEqual(["e4", "e5", "e6"]);
    });

    it("acknowledges a message whose handler was still running when the consumer stopped", async () => {
      const { released, release } = gate();
      const started = new Inbox();
      const sub = await t.bus.consume("audit", "ledger", async (m) => {
        started.handler(m);
        await released;
      });
      await t.bus.publish("audit", "alpha", bytes("1"), "e1");
      await started.untilId("e1");
      let stopped = false;
      const stopping = sub.stop().then(() => (stopped = true));
      // The handler is still running, so stop cannot have resolved.
      await Promise.resolve();
      expect(stopped).toBe(false);
      release();
      await stopping;

      const bus = await t.reopen();
      const after = new Inbox();
      track(await bus.consume("audit", "ledger", after.handler));
      await bus.publish("audit", "alpha", bytes("2"), "e2");
      await after.untilId("e2");
      expect(after.ids()).toEqual(["e2"]);
    });

    it("hands a backlog a stopped durable consumer had not handled to the next start at once", async () => {
      for (let i = 1; i <= 10; i++) await t.bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
      const { released, release } = gate();
      const before = new Inbox();
      const sub = await t.bus.consume("audit", "ledger", async (m) => {
        before.handler(m);
        await released;
      });
      await before.untilId("e1");
      const stopping = sub.stop();
      release();
      await stopping;
      expect(before.ids()).toEqual(["e1"]);

      const bus = await t.reopen();
      const after = new Inbox();
      track(await bus.consume("audit", "ledger", after.handler));
      // Well inside JetStream's 30 s ack wait: the rest must not wait for it.
      await after.until((r) => r.length >= 9, "e2…e10", 5_000);
      expect(after.ids()).toEqual(["e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10"]);
    });

    it("gives every durable name its own position, so two consumers each see every message", async () => {
      const ledger = new Inbox();
      const siem = new Inbox();
      track(await t.bus.consume("audit", "ledger", ledger.handler));
      for (const id of ["e1", "e2"]) await t.bus.publish("audit", "alpha", bytes(id), id);
      track(await t.bus.consume("audit", "siem-export", siem.handler));
      await t.bus.publish("audit", "beta", bytes("e3"), "e3");
      await ledger.untilId("e3");
      await siem.untilId("e3");
      expect(ledger.ids()).toEqual(["e1", "e2", "e3"]);
      expect(siem.ids()).toEqual(["e1", "e2", "e3"]);
    });

    it("delivers only the requested zone to a durable consumer with a zone filter", async () => {
      const inbox = new Inbox();
      track(await t.bus.consume("audit", "alpha-only", inbox.handler, { zone: "alpha" }));
      await t.bus.publish("audit", "beta", bytes("b"), "b1");
      await t.bus.publish("audit", "alpha", bytes("a"), "a1");
      await t.bus.publish("audit", "beta", bytes("b"), "b2");
      await t.bus.publish("audit", "alpha", bytes("a"), "a2");
      await inbox.untilId("a2");
      expect(inbox.ids()).toEqual(["a1", "a2"]);
    });

    it("hands a batch consumer what is waiting in batches of at most maxMessages, in order, one batch at a time", async () => {
      for (let i = 1; i <= 6; i++) await t.bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
      const inbox = new BatchInbox();
      let running = 0;
      let overlapped = false;
      track(
        await t.bus.consumeBatch(
          "audit",
          "ledger",
          async (messages) => {
            overlapped ||= running > 0;
            running++;
            await new Promise((resolve) => setTimeout(resolve, 10));
            running--;
            await inbox.batchHandler(messages);
          },
          // Full batches go at once: waiting this long for either would time the test out.
          { maxMessages: 3, maxWaitMs: 10_000 },
        ),
      );
      await inbox.until((r) => r.length >= 6, "e1…e6");
      expect(inbox.batches).toEqual([
        ["e1", "e2", "e3"],
        ["e4", "e5", "e6"],
      ]);
      expect(overlapped).toBe(false);
      expect(inbox.received[3]).toMatchObject({ topic: "audit", zone: "alpha", msgId: "e4" });
      expect(text(inbox.received[3]!.data)).toBe("4");
    });

    it("hands over a smaller batch once maxWaitMs has passed with fewer messages waiting", async () => {
      for (const id of ["e1", "e2"]) await t.bus.publish("audit", "alpha", bytes(id), id);
      const inbox = new BatchInbox();
      track(await t.bus.consumeBatch("audit", "ledger", inbox.batchHandler, { maxMessages: 100, maxWaitMs: 500 }));
      await inbox.until((r) => r.length >= 2, "e1 and e2");
      expect(inbox.batches).toEqual([["e1", "e2"]]);
      await t.bus.publish("audit", "beta", bytes("e3"), "e3");
      await inbox.untilId("e3");
      expect(inbox.batches).toEqual([["e1", "e2"], ["e3"]]);
    });

    it("acknowledges a batch once its handler resolved, so a restarted batch consumer does not get it again", async () => {
      for (let i = 1; i <= 4; i++) await t.bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
      const before = new BatchInbox();
      const sub = await t.bus.consumeBatch("audit", "ledger", before.batchHandler, { maxMessages: 10 });
      await before.until((r) => r.length >= 4, "e1…e4");
      await sub.stop();

      const bus = await t.reopen();
      const after = new BatchInbox();
      track(await bus.consumeBatch("audit", "ledger", after.batchHandler, { maxMessages: 10 }));
      await bus.publish("audit", "alpha", bytes("5"), "e5");
      await after.untilId("e5");
      expect(before.ids()).toEqual(["e1", "e2", "e3", "e4"]);
      expect(after.ids()).toEqual(["e5"]);
    });

    it("shares durable names and their positions between consume and consumeBatch", async () => {
      const single = new Inbox();
      const first = await t.bus.consume("audit", "ledger", single.handler);
      for (const id of ["e1", "e2"]) await t.bus.publish("audit", "alpha", bytes(id), id);
      await single.untilId("e2");
      await first.stop();
      for (const id of ["e3", "e4"]) await t.bus.publish("audit", "alpha", bytes(id), id);

      const batched = new BatchInbox();
      const second = await t.bus.consumeBatch("audit", "ledger", batched.batchHandler, { maxMessages: 10 });
      await batched.until((r) => r.length >= 2, "e3 and e4");
      await second.stop();
      await t.bus.publish("audit", "alpha", bytes("e5"), "e5");

      const again = new Inbox();
      track(await t.bus.consume("audit", "ledger", again.handler));
      await again.untilId("e5");
      expect(single.ids()).toEqual(["e1", "e2"]);
      expect(batched.ids()).toEqual(["e3", "e4"]);
      expect(again.ids()).toEqual(["e5"]);
    });

    it("redelivers every message of a batch whose handler threw, and loses none", async () => {
      for (let i = 1; i <= 3; i++) await t.bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
      const attempts = new BatchInbox();
      const done = new Inbox();
      track(
        await t.bus.consumeBatch(
          "audit",
          "ledger",
          async (messages) => {
            await attempts.batchHandler(messages);
            if (attempts.batches.length === 1) throw new Error("database away");
            for (const m of messages) done.handler(m);
          },
          { maxMessages: 10, maxWaitMs: 200 },
        ),
      );
      await attempts.until((r) => r.length >= 3, "the first batch");
      await t.bus.publish("audit", "alpha", bytes("4"), "e4");
      await done.until((r) => r.length >= 4, "e1…e4 handled");
      expect(attempts.batches[0]).toEqual(["e1", "e2", "e3"]);
      // Every message of the failed batch came again, and each was handled once.
      expect(sorted(done.ids())).toEqual(["e1", "e2", "e3", "e4"]);
      const firstSeq = attempts.received[0]!.seq;
      for (const m of done.received.filter((m) => m.msgId !== "e4")) {
        const original = attempts.received.find((a) => a.msgId === m.msgId)!;
        expect(m.seq).toBe(original.seq);
        expect(text(m.data)).toBe(text(original.data));
      }
      if (t.failures) {
        expect(t.failures).toContainEqual(
          expect.objectContaining({ kind: "handler", topic: "audit", durable: "ledger", seq: firstSeq }),
        );
      }
    });

    it("waits for a running batch when stopped, and acknowledges it", async () => {
      const { released, release } = gate();
      for (const id of ["e1", "e2"]) await t.bus.publish("audit", "alpha", bytes(id), id);
      const started = new BatchInbox();
      const sub = await t.bus.consumeBatch(
        "audit",
        "ledger",
        async (messages) => {
          await started.batchHandler(messages);
          await released;
        },
        { maxMessages: 2 },
      );
      await started.until((r) => r.length >= 2, "the batch");
      let stopped = false;
      const stopping = sub.stop().then(() => (stopped = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      // The handler is still running, so stop cannot have resolved.
      expect(stopped).toBe(false);
      release();
      await stopping;

      const bus = await t.reopen();
      const after = new BatchInbox();
      track(await bus.consumeBatch("audit", "ledger", after.batchHandler));
      await bus.publish("audit", "alpha", bytes("3"), "e3");
      await after.untilId("e3");
      expect(started.batches).toEqual([["e1", "e2"]]);
      expect(after.ids()).toEqual(["e3"]);
    });

    it("hands the backlog a stopped batch consumer had not handled to the next start at once", async () => {
      const all = Array.from({ length: 10 }, (_, i) => `e${i + 1}`);
      for (const id of all) await t.bus.publish("audit", "alpha", bytes(id), id);
      const { released, release } = gate();
      const before = new BatchInbox();
      const sub = await t.bus.consumeBatch(
        "audit",
        "ledger",
        async (messages) => {
          await before.batchHandler(messages);
          await released;
        },
        { maxMessages: 3 },
      );
      await before.untilId("e3");
      const stopping = sub.stop();
      release();
      await stopping;
      expect(before.batches).toEqual([["e1", "e2", "e3"]]);

      const bus = await t.reopen();
      const after = new BatchInbox();
      track(await bus.consumeBatch("audit", "ledger", after.batchHandler, { maxMessages: 100 }));
      // Well inside JetStream's 30 s ack wait: messages pulled ahead must not wait for it.
      await after.until((r) => r.length >= 7, "e4…e10", 5_000);
      expect(sorted(after.ids())).toEqual(sorted(all.slice(3)));
    });

    it("resumes in order: what an earlier subscription failed comes again at once, before anything published later", async () => {
      for (let i = 1; i <= 4; i++) await t.bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
      const before = new BatchInbox();
      const failing = await t.bus.consumeBatch(
        "audit",
        "export",
        async (messages) => {
          await before.batchHandler(messages);
          // As the SIEM export does: once a batch failed, every later one fails too.
          if (before.batches.length > 1) throw new Error("disk full");
        },
        { maxMessages: 2, maxWaitMs: 100, resumeInOrder: true },
      );
      await before.until(() => before.batches.length >= 2, "a second batch");
      await failing.stop();
      expect(before.batches.slice(0, 2)).toEqual([["e1", "e2"], ["e3", "e4"]]);
      await t.bus.publish("audit", "alpha", bytes("5"), "e5");

      const bus = await t.reopen();
      const after = new BatchInbox();
      track(await bus.consumeBatch("audit", "export", after.batchHandler, { maxMessages: 10, maxWaitMs: 100, resumeInOrder: true }));
      // Without resumeInOrder, e5 comes first and e3, e4 after their redelivery delay (on NATS 2.9, up to the ack wait).
      await after.until((r) => r.length >= 3, "e3…e5", 5_000);
      expect(after.ids()).toEqual(["e3", "e4", "e5"]);
      expect(after.received.map((m) => text(m.data))).toEqual(["3", "4", "5"]);
    });

    it("gives back a batch still filling when stopped, without handing it over or waiting for it to fill", async () => {
      await t.bus.publish("audit", "alpha", bytes("1"), "e1");
      const before = new BatchInbox();
      const sub = await t.bus.consumeBatch("audit", "ledger", before.batchHandler, { maxMessages: 10_000, maxWaitMs: 10_000 });
      // Not asserted: only gives the message time to arrive, so it is likely taken while the batch fills.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await sub.stop();
      expect(before.batches).toEqual([]);

      const bus = await t.reopen();
      const after = new BatchInbox();
      track(await bus.consumeBatch("audit", "ledger", after.batchHandler, { maxWaitMs: 1 }));
      await after.untilId("e1", 5_000);
      expect(after.ids()).toEqual(["e1"]);
    });

    it("delivers only the requested zone to a batch consumer with a zone filter", async () => {
      const inbox = new BatchInbox();
      track(await t.bus.consumeBatch("audit", "alpha-only", inbox.batchHandler, { zone: "alpha", maxMessages: 10 }));
      await t.bus.publish("audit", "beta", bytes("b"), "b1");
      await t.bus.publish("audit", "alpha", bytes("a"), "a1");
      await t.bus.publish("audit", "beta", bytes("b"), "b2");
      await t.bus.publish("audit", "alpha", bytes("a"), "a2");
      await inbox.untilId("a2");
      expect(inbox.ids()).toEqual(["a1", "a2"]);
      expect(inbox.received.every((m) => m.zone === "alpha")).toBe(true);
    });

    it.each([
      ["maxMessages 0", { maxMessages: 0 }],
      ["a negative maxMessages", { maxMessages: -5 }],
      ["a fractional maxMessages", { maxMessages: 2.5 }],
      ["a maxMessages above 10,000", { maxMessages: 10_001 }],
      ["a NaN maxMessages", { maxMessages: Number.NaN }],
      ["a maxMessages that is a string", { maxMessages: "5" }],
      ["maxWaitMs 0", { maxWaitMs: 0 }],
      ["a fractional maxWaitMs", { maxWaitMs: 0.5 }],
      ["a maxWaitMs above 10 s", { maxWaitMs: 10_001 }],
      ["an infinite maxWaitMs", { maxWaitMs: Number.POSITIVE_INFINITY }],
      ["a wildcard zone", { zone: "*" }],
    ])("rejects a batch consumer with %s with a TypeError", async (_label, options) => {
      const noop = async () => {};
      await expect(t.bus.consumeBatch("audit", "ledger", noop, options as BatchOptions)).rejects.toThrow(TypeError);
    });

    it("rejects a batch consumer with a malformed topic or durable name with a TypeError", async () => {
      const noop = async () => {};
      await expect(t.bus.consumeBatch("other" as "audit", "ledger", noop)).rejects.toThrow(TypeError);
      await expect(t.bus.consumeBatch("audit", "led.ger", noop)).rejects.toThrow(TypeError);
      await expect(t.bus.consumeBatch("audit", "", noop)).rejects.toThrow(TypeError);
    });

    it.each([
      ["an empty zone", ""],
      ["an upper-case zone", "Alpha"],
      ["a zone with a dot", "alpha.beta"],
      ["a wildcard zone", "*"],
      ["a full-wildcard zone", ">"],
      ["a zone with a space", "al pha"],
      ["a 64-character zone", "a".repeat(64)],
      ["a zone that is not a string", 42],
    ])("rejects %s on publish with a TypeError", async (_label, zone) => {
      await expect(t.bus.publish("revocations", zone as string, bytes("x"), "m1")).rejects.toThrow(TypeError);
    });

    it("accepts a 63-character zone, the longest slug", async () => {
      const ack = await t.bus.publish("revocations", "a".repeat(63), bytes("x"), "m1");
      expect(ack.duplicate).toBe(false);
    });

    it("rejects a malformed topic, payload, msgId, durable name or zone filter with a TypeError", async () => {
      const noop = () => {};
      await expect(t.bus.publish("other" as "audit", "alpha", bytes("x"), "m1")).rejects.toThrow(TypeError);
      await expect(t.bus.publish("audit", "alpha", "x" as unknown as Uint8Array, "m1")).rejects.toThrow(TypeError);
      await expect(t.bus.publish("audit", "alpha", bytes("x"), "")).rejects.toThrow(TypeError);
      await expect(t.bus.publish("audit", "alpha", bytes("x"), "a\r\nb")).rejects.toThrow(TypeError);
      await expect(t.bus.consume("audit", "led.ger", noop)).rejects.toThrow(TypeError);
      await expect(t.bus.consume("audit", "", noop)).rejects.toThrow(TypeError);
      await expect(t.bus.follow("audit", noop, { zone: "Alpha" })).rejects.toThrow(TypeError);
      await expect(t.bus.consume("audit", "ledger", noop, { zone: "*" })).rejects.toThrow(TypeError);
    });

    it("closes idempotently, stopping subscriptions, and rejects use afterwards", async () => {
      track(await t.bus.follow("revocations", () => {}));
      track(await t.bus.consume("audit", "ledger", () => {}));
      track(await t.bus.consumeBatch("audit", "ledger-batch", async () => {}));
      await t.bus.close();
      await t.bus.close();
      await expect(t.bus.publish("audit", "alpha", bytes("x"), "m1")).rejects.toThrow();
      await expect(t.bus.follow("audit", () => {})).rejects.toThrow();
      await expect(t.bus.consumeBatch("audit", "ledger", async () => {})).rejects.toThrow();
    });
  });
}
