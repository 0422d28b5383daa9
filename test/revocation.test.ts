import { fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../gen/caracal/admin/v1/admin_service_pb.js";
import { EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationEventSchema } from "../gen/caracal/revocation/v1/revocation_pb.js";
import { RevocationService } from "../gen/caracal/revocation/v1/revocation_service_pb.js";
import { reasonOf } from "../interceptors/caracal-error.js";
import { mandateClientInterceptor } from "../interceptors/connect/mandate-client-interceptor.js";
import { OutboxRelay } from "../services/revocation/outbox-relay.js";
import { recordRevocation } from "../services/revocation/revocation-rows.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";

async function refusal(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected a refusal");
}

/** Resolves once `probe` answers true; polls every 10 ms, for at most 2 s. */
async function eventually(probe: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`not within 2 s: ${what}`);
}

describe.each(HARNESS_KINDS)("revocation on %s", (kind) => {
  let caracal: CaracalHarness;
  let revocations: Client<typeof RevocationService>;
  let admin: Client<typeof AdminService>;
  let zones = 0;

  beforeAll(async () => {
    caracal = await startHarness(kind);
    admin = caracal.admin;
    const source = caracal.mandateSource(caracal.profile.zone, caracal.profile.client_id, { clientSecret: caracal.profile.client_secret });
    revocations = createClient(RevocationService, createGrpcTransport({ baseUrl: caracal.baseUrl, interceptors: [mandateClientInterceptor(source)] }));
  }, 120_000);

  afterAll(async () => {
    await caracal?.stop();
  });

  async function zoneWithAgent(): Promise<{ zone: string; secret: string }> {
    const zone = `rev-${kind.startsWith("postgres") ? "pg" : "lite"}-${++zones}`;
    await admin.createZone({ zone });
    await admin.createResource({ zone, resourceId: "billing-api", scopes: [{ name: "invoices.read" }] });
    const { clientSecret } = await admin.createApplication({ zone, clientId: "agent" });
    await admin.createGrant({ zone, clientId: "agent", resourceId: "billing-api", scopes: ["invoices.read"] });
    return { zone, secret: clientSecret };
  }

  const session = (zone: string, secret: string) =>
    caracal.sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: secret } });
  const exchange = (subjectToken: string) => caracal.sts.exchange({ subjectToken, resources: ["billing-api"], scopes: ["invoices.read"] });

  it("refuses exchanges of a revoked session everywhere the STS runs, and only of that session", async () => {
    const { zone, secret } = await zoneWithAgent();
    const revoked = await session(zone, secret);
    const other = await session(zone, secret);
    await exchange(revoked.sessionMandate);
    const { revocation, created } = await revocations.revoke({
      zone,
      reason: "agent misbehaved",
      target: { target: { case: "sessionId", value: revoked.info!.sessionId } },
    });
    expect(created).toBe(true);
    expect(revocation?.revokedBy).toBe(caracal.profile.client_id);
    await eventually(async () => {
      try {
        await exchange(revoked.sessionMandate);
        return false;
      } catch (error) {
        return reasonOf(error) === Reason.MANDATE_REVOKED;
      }
    }, "the revoked session is refused");
    const error = await refusal(exchange(revoked.sessionMandate));
    expect(error.code).toBe(Code.Unauthenticated);
    expect(reasonOf(error)).toBe(Reason.MANDATE_REVOKED);
    await expect(exchange(other.sessionMandate)).resolves.toBeDefined();
  });

  it("is idempotent: the same target twice is one revocation with one id", async () => {
    const { zone } = await zoneWithAgent();
    const target = { target: { case: "mandateId" as const, value: "11111111-2222-4333-8444-555555555555" } };
    const first = await revocations.revoke({ zone, reason: "leaked", target });
    const second = await revocations.revoke({ zone, reason: "leaked again", target });
    expect(second.created).toBe(false);
    expect(second.revocation?.revocationId).toBe(first.revocation?.revocationId);
    const listed = await revocations.listRevocations({ zone });
    expect(listed.revocations.map((r) => r.revocationId)).toEqual([first.revocation!.revocationId]);
  });

  it("refuses new sessions for a revoked application", async () => {
    const { zone, secret } = await zoneWithAgent();
    await session(zone, secret);
    await revocations.revoke({ zone, reason: "compromised", target: { target: { case: "clientId", value: "agent" } } });
    const error = await refusal(session(zone, secret));
    expect(error.code).toBe(Code.Unauthenticated);
    expect(reasonOf(error)).toBe(Reason.MANDATE_REVOKED);
  });

  it.each([
    ["no reason", { reason: "", target: { target: { case: "mandateId" as const, value: "x1" } } }, "reason"],
    ["a reason over 500 characters", { reason: "x".repeat(501), target: { target: { case: "mandateId" as const, value: "x1" } } }, "reason"],
    ["no target", { reason: "why", target: { target: { case: undefined } } }, "target"],
    ["a malformed session id", { reason: "why", target: { target: { case: "sessionId" as const, value: "../../etc" } } }, "target.session_id"],
    ["a cut-off in the future", { reason: "why", target: { target: { case: "issuedBefore" as const, value: timestampFromMs(Date.now() + 3_600_000) } } }, "target.issued_before"],
  ])("refuses %s with INVALID_ARGUMENT naming the field, and records nothing", async (_name, request, field) => {
    const { zone } = await zoneWithAgent();
    const before = await caracal.sql("SELECT count(*)::int AS n FROM revocations");
    const error = await refusal(revocations.revoke({ zone, ...request }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(reasonOf(error)).toBe(Reason.INVALID_ARGUMENT);
    expect(error.rawMessage.startsWith(`${field}:`)).toBe(true);
    expect(await caracal.sql("SELECT count(*)::int AS n FROM revocations")).toEqual(before);
  });

  it("audits who revoked what and why", async () => {
    const { zone } = await zoneWithAgent();
    const { revocation } = await revocations.revoke({ zone, reason: "rotation drill", target: { target: { case: "sessionId", value: "s-123" } } });
    await caracal.server.audit.flushed();
    await caracal.audit.settle();
    const events = caracal.audit.events.filter((tapped) => tapped.event.type === EventType.REVOCATION && tapped.event.zone === zone);
    expect(events).toHaveLength(1);
    expect(events[0]!.event).toMatchObject({
      actor: caracal.profile.client_id,
      action: "revoked session",
      sessionId: "s-123",
      attributes: { revocation_id: revocation!.revocationId, target: "s-123", reason: "rotation drill" },
    });
  });

  it("publishes each outbox row once, even with two relays running at once", async () => {
    const [zoneRow] = await caracal.sql<{ id: string; slug: string }>("SELECT id, slug FROM zones WHERE slug = 'default'");
    const ids: string[] = [];
    const now = Date.now();
    for (let i = 0; i < 30; i++) {
      const { row } = await caracal.store.transaction((tx) =>
        recordRevocation(tx, {
          zoneId: zoneRow!.id,
          kind: "mandate",
          key: `relay-test-${kind}-${i}`,
          issuedBefore: null,
          reason: "relay test",
          revokedBy: "test",
          createdAt: new Date(now),
          expiresAt: new Date(now + 3_600_000),
        }),
      );
      ids.push(row.revocation_id);
    }
    const seen: string[] = [];
    const subscription = await caracal.bus.follow("revocations", (message) => {
      const id = fromBinary(RevocationEventSchema, message.data).revocation?.revocationId ?? "";
      if (ids.includes(id)) seen.push(id);
    });
    const relays = [new OutboxRelay(caracal.store, caracal.bus, { batchSize: 7 }), new OutboxRelay(caracal.store, caracal.bus, { batchSize: 5 })];
    try {
      await Promise.all(relays.map(async (relay) => { while ((await relay.relayOnce()) > 0); }));
      await eventually(async () => seen.length >= ids.length, "every revocation delivered");
      expect([...seen].sort()).toEqual([...ids].sort());
      const pending = await caracal.sql<{ n: number }>("SELECT count(*)::int AS n FROM revocation_outbox WHERE published_at IS NULL AND revocation_id = ANY($1)", [ids]);
      expect(pending[0]!.n).toBe(0);
    } finally {
      await subscription.stop();
    }
  });

  it("watches: a snapshot of what is in force, its end, then new revocations and heartbeats", async () => {
    const { zone } = await zoneWithAgent();
    const before = await revocations.revoke({ zone, reason: "before", target: { target: { case: "sessionId", value: "s-before" } } });
    const abort = new AbortController();
    const seen: string[] = [];
    let revokedLive = false;
    try {
      for await (const response of revocations.watch({ zone }, { signal: abort.signal })) {
        const event = response.event;
        if (event.case === "revocation") seen.push(`revocation ${event.value.reason}`);
        if (event.case === "snapshotComplete") {
          seen.push(`snapshot ${event.value.count}`);
          await revocations.revoke({ zone, reason: "live", target: { target: { case: "sessionId", value: "s-live" } } });
          revokedLive = true;
        }
        if (event.case === "heartbeat" && revokedLive && seen.includes("revocation live")) {
          seen.push("heartbeat");
          abort.abort();
        }
      }
    } catch (error) {
      if (ConnectError.from(error).code !== Code.Canceled) throw error;
    }
    expect(before.created).toBe(true);
    expect(seen).toEqual(["revocation before", "snapshot 1", "revocation live", "heartbeat"]);
  });

  it("publishes once when a relay dies after publishing but before marking its rows, and another relay takes over", async () => {
    const [zoneRow] = await caracal.sql<{ id: string }>("SELECT id FROM zones WHERE slug = 'default'");
    const now = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { row } = await caracal.store.transaction((tx) =>
        recordRevocation(tx, {
          zoneId: zoneRow!.id,
          kind: "mandate",
          key: `crash-test-${kind}-${i}`,
          issuedBefore: null,
          reason: "crash test",
          revokedBy: "test",
          createdAt: new Date(now),
          expiresAt: new Date(now + 3_600_000),
        }),
      );
      ids.push(row.revocation_id);
    }
    const seen: string[] = [];
    const subscription = await caracal.bus.follow("revocations", (message) => {
      seen.push(fromBinary(RevocationEventSchema, message.data).revocation?.revocationId ?? "");
    });
    try {
      // The real bus publishes; the relay "dies" right after every ack, before its transaction commits.
      const dying = new OutboxRelay(caracal.store, {
        ...caracal.bus,
        publish: async (...args: Parameters<typeof caracal.bus.publish>) => {
          await caracal.bus.publish(...args);
          throw new Error("relay process killed");
        },
      } as typeof caracal.bus);
      await expect(dying.relayOnce()).rejects.toThrow("relay process killed");
      await eventually(async () => ids.every((id) => seen.includes(id)), "the dying relay's publishes arrived");
      const pending = () => caracal.sql<{ n: number }>("SELECT count(*)::int AS n FROM revocation_outbox WHERE published_at IS NULL AND revocation_id = ANY($1)", [ids]);
      expect((await pending())[0]!.n).toBe(ids.length);

      const successor = new OutboxRelay(caracal.store, caracal.bus);
      while ((await successor.relayOnce()) > 0);
      expect((await pending())[0]!.n).toBe(0);
      // A later revocation marks the point by which a duplicate would have arrived.
      await revocations.revoke({ zone: "default", reason: "marker", target: { target: { case: "mandateId", value: `marker-${kind.replace(/\W/g, "-")}` } } });
      const markers = await caracal.sql<{ revocation_id: string }>("SELECT revocation_id FROM revocations WHERE target_key = $1", [`marker-${kind.replace(/\W/g, "-")}`]);
      await eventually(async () => seen.includes(markers[0]!.revocation_id), "the marker arrived");
      expect(seen.filter((id) => ids.includes(id)).sort()).toEqual([...ids].sort());
    } finally {
      await subscription.stop();
    }
  });

  it("asks for revocation.write: an admin mandate without it is refused", async () => {
    const { zone } = await zoneWithAgent();
    const { clientSecret } = await admin.createApplication({ zone: caracal.profile.zone, clientId: `reader-${zones}` });
    await admin.createGrant({ zone: caracal.profile.zone, clientId: `reader-${zones}`, resourceId: "caracal-admin", scopes: ["revocation.read"] });
    const reader = caracal.mandateSource(caracal.profile.zone, `reader-${zones}`, { clientSecret });
    const client = createClient(RevocationService, createGrpcTransport({ baseUrl: caracal.baseUrl, interceptors: [mandateClientInterceptor(reader)] }));
    await expect(client.listRevocations({ zone })).resolves.toBeDefined();
    const error = await refusal(client.revoke({ zone, reason: "why", target: { target: { case: "sessionId", value: "s-1" } } }));
    expect(reasonOf(error)).toBe(Reason.SCOPE_NOT_GRANTED);
  });
});
