import { fromBinary } from "@bufbuild/protobuf";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { AuditDecision, AuditEventSchema, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { openNatsBus } from "../services/bus/nats-bus.js";
import { natsTestNamespace, testNatsUrl } from "../test/support/nats.js";
import { jetStreamAuditPublish, PublishingAuditSink, type AuditPublish } from "./publishing-audit-sink.js";

const event = (zone = "acme") => ({ zone, type: EventType.EDGE_CALL, decision: AuditDecision.ALLOW });

describe("PublishingAuditSink", () => {
  it("refuses new events once its bound is reached, and takes them again once published", async () => {
    const waiting: (() => void)[] = [];
    const publish: AuditPublish = () => new Promise<void>((resolve) => waiting.push(resolve));
    const sink = new PublishingAuditSink(publish, { maxPending: 2 });
    expect(sink.record(event())).toBe(true);
    expect(sink.record(event())).toBe(true);
    expect(sink.record(event())).toBe(false);
    for (const resolve of waiting.splice(0)) resolve();
    await sink.flushed();
    expect(sink.record(event())).toBe(true);
  });

  it("fills in an event id and time, and retries a failed publish with the same id", async () => {
    const attempts: string[] = [];
    let failures = 1;
    const errors: unknown[] = [];
    const sink = new PublishingAuditSink(
      async (_zone, bytes, id) => {
        attempts.push(id);
        expect(fromBinary(AuditEventSchema, bytes).eventId).toBe(id);
        if (failures-- > 0) throw new Error("stream away");
      },
      { now: () => 1_700_000_000_000, onError: (error) => errors.push(error) },
    );
    sink.record(event());
    await sink.flushed();
    expect(attempts).toHaveLength(2);
    expect(attempts[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(attempts[1]).toBe(attempts[0]);
    expect(errors).toHaveLength(1);
  });

  describe("on real NATS JetStream", () => {
    const namespace = natsTestNamespace();
    afterAll(() => namespace.cleanup());

    it("publishes protobuf events to caracal.audit.<zone>, de-duplicated by event id", async () => {
      const prefix = namespace.prefix();
      const bus = await openNatsBus({ url: testNatsUrl, ...prefix });
      const received: string[] = [];
      const arrived = new Promise<void>((resolve) => {
        void bus.follow("audit", (msg) => {
          received.push(fromBinary(AuditEventSchema, msg.data).eventId);
          if (received.length === 2) resolve();
        });
      });
      const nc = await connect({ servers: testNatsUrl });
      try {
        const publish = jetStreamAuditPublish(jetstream(nc), prefix.subjectPrefix);
        const sink = new PublishingAuditSink(publish);
        sink.record({ ...event("acme"), eventId: "11111111-1111-4111-8111-111111111111" });
        await sink.flushed();
        // A later, different event marks the point by which a duplicate would have arrived.
        sink.record({ ...event("acme"), eventId: "22222222-2222-4222-8222-222222222222" });
        await sink.flushed();
        await arrived;
        expect(received).toEqual(["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]);
      } finally {
        await nc.close();
        await bus.close();
      }
    });
  });
});
