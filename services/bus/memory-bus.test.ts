import { describe, expect, it } from "vitest";
import type { BusFailure } from "./bus.js";
import { describeBusContract, Inbox } from "./bus.contract.js";
import { createMemoryBus } from "./memory-bus.js";
import { openBus } from "./open-bus.js";

const bytes = (s: string) => new TextEncoder().encode(s);

describeBusContract("in-process", async () => {
  const failures: BusFailure[] = [];
  const bus = createMemoryBus({ onError: (_e, f) => failures.push(f) });
  return {
    bus,
    failures,
    // Durable positions live as long as the bus does; there is no process to restart.
    reopen: async () => bus,
    cleanup: () => bus.close(),
  };
});

describe("in-process bus", () => {
  /** A clock a test moves by hand. */
  function manualClock(start = Date.UTC(2030, 0, 1)) {
    let t = start;
    return { now: () => t, advance: (ms: number) => void (t += ms) };
  }

  it("drops messages older than the topic's max age", async () => {
    const clock = manualClock();
    const bus = createMemoryBus({ now: clock.now, revocationsMaxAgeMs: 60_000 });
    await bus.publish("revocations", "alpha", bytes("old"), "old");
    clock.advance(59_999);
    await bus.publish("revocations", "alpha", bytes("young"), "young");
    clock.advance(1);
    await bus.publish("revocations", "alpha", bytes("new"), "new");

    const inbox = new Inbox();
    const sub = await bus.follow("revocations", inbox.handler);
    await inbox.untilId("new");
    expect(inbox.ids()).toEqual(["young", "new"]);
    expect(inbox.received[0]!.time.getTime()).toBe(clock.now() - 1);
    await sub.stop();
    await bus.close();
  });

  it("reports last sequence 0 once every message has expired, so a new follower is current", async () => {
    const clock = manualClock();
    const bus = createMemoryBus({ now: clock.now, revocationsMaxAgeMs: 1_000 });
    const { seq } = await bus.publish("revocations", "alpha", bytes("r1"), "r1");
    expect(await bus.lastSequence("revocations")).toBe(seq);
    clock.advance(1_000);
    expect(await bus.lastSequence("revocations")).toBe(0);
    await bus.close();
  });

  it("does not hand an expired message to a consumer that starts later", async () => {
    const clock = manualClock();
    const bus = createMemoryBus({ now: clock.now, auditMaxAgeMs: 1_000 });
    await bus.publish("audit", "alpha", bytes("1"), "e1");
    clock.advance(1_000);
    const inbox = new Inbox();
    await bus.consume("audit", "ledger", inbox.handler);
    // The revocations topic keeps its own, longer max age.
    await bus.publish("revocations", "alpha", bytes("r"), "r1");
    await bus.publish("audit", "alpha", bytes("2"), "e2");
    await inbox.untilId("e2");
    expect(inbox.ids()).toEqual(["e2"]);
    await bus.close();
  });

  it("forgets a msgId once the de-duplication window has passed", async () => {
    const clock = manualClock();
    const bus = createMemoryBus({ now: clock.now, duplicateWindowMs: 120_000 });
    const first = await bus.publish("revocations", "alpha", bytes("1"), "rev-1");
    clock.advance(119_999);
    expect(await bus.publish("revocations", "alpha", bytes("1"), "rev-1")).toEqual({ seq: first.seq, duplicate: true });
    clock.advance(1);
    const again = await bus.publish("revocations", "alpha", bytes("1"), "rev-1");
    expect(again).toEqual({ seq: first.seq + 1, duplicate: false });
    await bus.close();
  });

  it("never calls a handler inside publish", async () => {
    const bus = createMemoryBus();
    const inbox = new Inbox();
    await bus.follow("revocations", inbox.handler);
    await bus.consume("revocations", "ledger", inbox.handler);
    const publishing = bus.publish("revocations", "alpha", bytes("1"), "m1");
    expect(inbox.received).toHaveLength(0);
    await publishing;
    await inbox.until((r) => r.length === 2, "both subscriptions");
    await bus.close();
  });

  it("hands a subscription one message at a time, in order, even when the handler is slow", async () => {
    const bus = createMemoryBus();
    let running = 0;
    let overlapped = false;
    const inbox = new Inbox();
    await bus.consume("audit", "ledger", async (m) => {
      overlapped ||= running > 0;
      running++;
      await new Promise((resolve) => setImmediate(resolve));
      running--;
      inbox.handler(m);
    });
    for (let i = 1; i <= 20; i++) await bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
    await inbox.untilId("e20");
    expect(overlapped).toBe(false);
    expect(inbox.ids()).toEqual(Array.from({ length: 20 }, (_, i) => `e${i + 1}`));
    await bus.close();
  });

  it("keeps a durable position per bus: a new bus starts from its own empty streams", async () => {
    const first = createMemoryBus();
    await first.publish("audit", "alpha", bytes("1"), "e1");
    await first.close();
    const second = createMemoryBus();
    const inbox = new Inbox();
    await second.consume("audit", "ledger", inbox.handler);
    await second.publish("audit", "alpha", bytes("2"), "e2");
    await inbox.untilId("e2");
    expect(inbox.ids()).toEqual(["e2"]);
    await second.close();
  });

  it("keeps redelivering with a growing delay until the handler succeeds", async () => {
    const bus = createMemoryBus({ redeliveryDelayMs: 5, onError: () => {} });
    const deliveredAt: number[] = [];
    const done = new Inbox();
    await bus.consume("audit", "ledger", (m) => {
      deliveredAt.push(performance.now());
      if (deliveredAt.length < 4) throw new Error("not yet");
      done.handler(m);
    });
    await bus.publish("audit", "alpha", bytes("1"), "e1");
    await done.untilId("e1");
    const gaps = deliveredAt.slice(1).map((t, i) => t - deliveredAt[i]!);
    // 5, 10, 20 ms; timers may fire late but never early.
    expect(gaps[0]).toBeGreaterThanOrEqual(4);
    expect(gaps[2]).toBeGreaterThanOrEqual(19);
    await bus.close();
  });

  it("is what openBus returns without a NATS URL", async () => {
    const bus = await openBus({});
    expect(bus.kind).toBe("memory");
    await bus.close();
    const blank = await openBus({ natsUrl: "  " });
    expect(blank.kind).toBe("memory");
    await blank.close();
  });
});
