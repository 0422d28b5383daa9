import { existsSync } from "node:fs";
import { connect, nanos } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { afterAll, describe, expect, it } from "vitest";
import type { Bus, BusFailure } from "./bus.js";
import { BatchInbox, describeBusContract, Inbox } from "./bus.contract.js";
import { BusUnavailableError, openNatsBus, type NatsBusOptions } from "./nats-bus.js";
import { openBus } from "./open-bus.js";
import {
  deleteTestStreams,
  listTestStreams,
  natsServerBinary,
  natsTestNamespace,
  startPrivateNatsServer,
  testNatsUrl,
} from "../../test/support/nats.js";

const ns = natsTestNamespace();
afterAll(async () => {
  await ns.cleanup();
});

const bytes = (s: string) => new TextEncoder().encode(s);

describeBusContract("NATS JetStream", async () => {
  const prefix = ns.prefix();
  const failures: BusFailure[] = [];
  const options: NatsBusOptions = { url: testNatsUrl, ...prefix, onError: (_e, f) => failures.push(f) };
  let bus: Bus = await openNatsBus(options);
  return {
    bus,
    failures,
    async reopen() {
      await bus.close();
      bus = await openNatsBus(options);
      return bus;
    },
    async cleanup() {
      await bus.close();
      await deleteTestStreams(`${prefix.streamPrefix}_`);
    },
  };
});

describe("NATS bus", () => {
  async function streamConfig(name: string) {
    const nc = await connect({ servers: testNatsUrl });
    try {
      return (await (await jetstreamManager(nc)).streams.info(name)).config;
    } finally {
      await nc.close();
    }
  }

  it("creates both streams with file storage, the subjects of its prefix and the default limits", async () => {
    const prefix = ns.prefix();
    const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
    await bus.close();
    const revocations = await streamConfig(`${prefix.streamPrefix}_REVOCATIONS`);
    expect(revocations).toMatchObject({
      subjects: [`${prefix.subjectPrefix}.revocations.*`],
      storage: StorageType.File,
      max_age: nanos(25 * 60 * 60 * 1000),
      duplicate_window: nanos(2 * 60 * 1000),
    });
    const audit = await streamConfig(`${prefix.streamPrefix}_AUDIT`);
    expect(audit).toMatchObject({ subjects: [`${prefix.subjectPrefix}.audit.*`], max_age: nanos(7 * 24 * 60 * 60 * 1000) });
  });

  it("opens twice with the same prefix and both buses share the streams", async () => {
    const prefix = ns.prefix();
    const first = await openNatsBus({ url: testNatsUrl, ...prefix });
    const second = await openNatsBus({ url: testNatsUrl, ...prefix });
    try {
      const a = await first.publish("revocations", "alpha", bytes("1"), "m1");
      const b = await second.publish("revocations", "alpha", bytes("2"), "m2");
      expect(b.seq).toBe(a.seq + 1);
      const inbox = new Inbox();
      const sub = await second.follow("revocations", inbox.handler);
      await inbox.untilId("m2");
      await sub.stop();
      expect(inbox.ids()).toEqual(["m1", "m2"]);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it("applies a changed max age and de-duplication window when opened again, keeping the messages", async () => {
    const prefix = ns.prefix();
    const first = await openNatsBus({ url: testNatsUrl, ...prefix, revocationsMaxAgeMs: 60 * 60 * 1000 });
    await first.publish("revocations", "alpha", bytes("1"), "m1");
    await first.close();
    expect((await streamConfig(`${prefix.streamPrefix}_REVOCATIONS`)).max_age).toBe(nanos(60 * 60 * 1000));

    const second = await openNatsBus({
      url: testNatsUrl,
      ...prefix,
      revocationsMaxAgeMs: 3 * 60 * 60 * 1000,
      duplicateWindowMs: 5 * 60 * 1000,
    });
    try {
      const config = await streamConfig(`${prefix.streamPrefix}_REVOCATIONS`);
      expect(config.max_age).toBe(nanos(3 * 60 * 60 * 1000));
      expect(config.duplicate_window).toBe(nanos(5 * 60 * 1000));
      const inbox = new Inbox();
      const sub = await second.follow("revocations", inbox.handler);
      await inbox.untilId("m1");
      await sub.stop();
    } finally {
      await second.close();
    }
  });

  it("clamps a de-duplication window longer than the max age instead of failing", async () => {
    const prefix = ns.prefix();
    const bus = await openNatsBus({ url: testNatsUrl, ...prefix, revocationsMaxAgeMs: 60_000, duplicateWindowMs: 120_000 });
    await bus.close();
    expect((await streamConfig(`${prefix.streamPrefix}_REVOCATIONS`)).duplicate_window).toBe(nanos(60_000));
  });

  it("refuses a stream of the same name that uses memory storage, saying what to do", async () => {
    const prefix = ns.prefix();
    const nc = await connect({ servers: testNatsUrl });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({
        name: `${prefix.streamPrefix}_REVOCATIONS`,
        subjects: [`${prefix.subjectPrefix}.revocations.*`],
        storage: StorageType.Memory,
      });
    } finally {
      await nc.close();
    }
    const opening = openNatsBus({ url: testNatsUrl, ...prefix });
    await expect(opening).rejects.toThrow(BusUnavailableError);
    await expect(opening).rejects.toThrow(/memory storage.*delete the stream or pick another streamPrefix/);
  });

  it("fails quickly with an error naming the URL when the server is unreachable", async () => {
    const started = Date.now();
    const error = await openNatsBus({ url: "nats://127.0.0.1:1" }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(error).toBeInstanceOf(BusUnavailableError);
    expect(error).toMatchObject({ code: "ERR_BUS_UNAVAILABLE", message: expect.stringContaining("nats://127.0.0.1:1") });
  });

  it("keeps a password in the URL out of the error message", async () => {
    const error = await openNatsBus({ url: "nats://caracal:s3cret@127.0.0.1:1" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BusUnavailableError);
    expect((error as Error).message).toContain("127.0.0.1:1");
    expect((error as Error).message).not.toContain("s3cret");
  });

  it("rejects malformed options with a TypeError before connecting", async () => {
    await expect(openNatsBus({ url: "" })).rejects.toThrow(TypeError);
    await expect(openNatsBus({ url: testNatsUrl, streamPrefix: "BAD.PREFIX" })).rejects.toThrow(TypeError);
    await expect(openNatsBus({ url: testNatsUrl, subjectPrefix: "bad.*" })).rejects.toThrow(TypeError);
    await expect(openNatsBus({ url: testNatsUrl, auditMaxAgeMs: 0 })).rejects.toThrow(TypeError);
  });

  it("hands over a batch larger than the server's default ack-pending limit of 1,000", async () => {
    const prefix = ns.prefix();
    const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
    try {
      const ids = Array.from({ length: 1_500 }, (_, i) => `e${i + 1}`);
      await Promise.all(ids.map((id) => bus.publish("audit", "alpha", bytes(id), id)));
      const inbox = new BatchInbox();
      // A full batch goes at once; capped at 1,000 it would wait out maxWaitMs and fail the wait below.
      const sub = await bus.consumeBatch("audit", "ledger", inbox.batchHandler, { maxMessages: 1_500, maxWaitMs: 10_000 });
      await inbox.until((r) => r.length >= 1_500, "1,500 messages", 8_000);
      await sub.stop();
      expect(inbox.batches.map((b) => b.length)).toEqual([1_500]);
    } finally {
      await bus.close();
    }
  });

  it("raises the ack-pending limit of a durable created with the server's defaults", async () => {
    const prefix = ns.prefix();
    const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
    const stream = `${prefix.streamPrefix}_AUDIT`;
    const nc = await connect({ servers: testNatsUrl });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.consumers.add(stream, {
        durable_name: "ledger",
        ack_policy: AckPolicy.Explicit,
        filter_subject: `${prefix.subjectPrefix}.audit.*`,
      });
      expect((await jsm.consumers.info(stream, "ledger")).config.max_ack_pending).toBe(1_000);
      const sub = await bus.consumeBatch("audit", "ledger", async () => {});
      await sub.stop();
      expect((await jsm.consumers.info(stream, "ledger")).config).toMatchObject({
        max_ack_pending: 20_000,
        ack_wait: nanos(30_000),
      });
    } finally {
      await nc.close();
      await bus.close();
    }
  });

  it("resumes in order after a consumer died holding messages, without waiting out their ack wait", async () => {
    const prefix = ns.prefix();
    const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
    const nc = await connect({ servers: testNatsUrl });
    try {
      for (let i = 1; i <= 6; i++) await bus.publish("audit", "alpha", bytes(String(i)), `e${i}`);
      const first = new BatchInbox();
      const sub = await bus.consumeBatch("audit", "export", first.batchHandler, { maxMessages: 2, maxWaitMs: 100, resumeInOrder: true });
      await first.untilId("e2");
      await sub.stop();
      expect(first.batches[0]).toEqual(["e1", "e2"]);
      // Not what stop() leaves: a consumer that took e3 and e4 and died before acknowledging them.
      const dead = await (await jetstream(nc).consumers.get(`${prefix.streamPrefix}_AUDIT`, "export")).fetch({ max_messages: 2, expires: 2_000 });
      const taken: string[] = [];
      for await (const m of dead) taken.push(new TextDecoder().decode(m.data));
      expect(taken.slice(0, 2)).toEqual(["3", "4"]);
      await nc.close();

      const after = new BatchInbox();
      const resumed = await bus.consumeBatch("audit", "export", after.batchHandler, { maxMessages: 10, maxWaitMs: 100, resumeInOrder: true });
      // Well inside the 30 s ack wait the dead consumer's messages would otherwise wait out.
      await after.until((r) => r.length >= 4, "e3…e6", 5_000);
      await resumed.stop();
      expect(after.ids()).toEqual(["e3", "e4", "e5", "e6"]);
    } finally {
      await nc.close();
      await bus.close();
    }
  });

  it("is what openBus returns when a NATS URL is configured", async () => {
    const prefix = ns.prefix();
    const bus = await openBus({ natsUrl: testNatsUrl, ...prefix });
    await bus.close();
    expect(bus.kind).toBe("nats");
  });

  it("leaves no streams behind once a test cleaned up", async () => {
    const prefix = ns.prefix();
    const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
    await bus.close();
    expect(await listTestStreams(`${prefix.streamPrefix}_`)).toHaveLength(3);
    await deleteTestStreams(`${prefix.streamPrefix}_`);
    expect(await listTestStreams(`${prefix.streamPrefix}_`)).toEqual([]);
  });

  describe.skipIf(!existsSync(natsServerBinary))("on a server that restarts", () => {
    it("resumes follow and durable consumers by itself once the server is back", async () => {
      const server = await startPrivateNatsServer();
      const bus = await openNatsBus({ url: server.url, onError: () => {} });
      try {
        const followed = new Inbox();
        const consumed = new Inbox();
        await bus.follow("revocations", followed.handler);
        await bus.consume("revocations", "ledger", consumed.handler);
        await bus.publish("revocations", "alpha", bytes("1"), "before");
        await followed.untilId("before");
        await consumed.untilId("before");

        await server.restart();
        // Publishing fails until the client has reconnected and JetStream has
        // recovered its streams; that is the caller's retry, not the bus's.
        await retry(() => bus.publish("revocations", "alpha", bytes("2"), "after"), 20_000);
        await followed.untilId("after", 30_000);
        await consumed.untilId("after", 30_000);
        expect(followed.ids()).toEqual(["before", "after"]);
        expect(consumed.ids()).toEqual(["before", "after"]);
      } finally {
        await bus.close();
        await server.stop();
      }
    }, 60_000);
  });
});

/**
 * Calls `fn` until it resolves, for at most `withinMs`. Polls because there is
 * nothing to wait on: the client reconnects on its own schedule.
 */
async function retry<T>(fn: () => Promise<T>, withinMs: number): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
