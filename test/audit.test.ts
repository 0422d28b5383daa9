import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AuditDecision, AuditEventSchema, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { AuditService } from "../gen/caracal/audit/v1/audit_service_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { errorDetailOf, reasonOf } from "../interceptors/caracal-error.js";
import { EdgeVerifier } from "../interceptors/edge-verifier.js";
import { httpJwksSource, JwksCache } from "../interceptors/jwks-cache.js";
import { MandateError } from "../interceptors/mandate-error.js";
import { PublishingAuditSink } from "../interceptors/publishing-audit-sink.js";
import { startLedger } from "../services/audit/ledger-consumer.js";
import { openNatsBus } from "../services/bus/nats-bus.js";
import type { Bus } from "../services/bus/bus.js";
import { openStore } from "../services/store/open-store.js";
import type { Store } from "../services/store/store.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { natsTestNamespace, testNatsUrl } from "./support/nats.js";
import { createTestDatabase, testAdminDatabaseUrl } from "./support/postgres.js";
import { pino } from "pino";
import { refusal } from "./support/refusal.js";

describe.each(HARNESS_KINDS)("the audit ledger and AuditService on %s", (kind) => {
  let caracal: CaracalHarness;
  let audit: Client<typeof AuditService>;
  let jwks: JwksCache;
  let edge: EdgeVerifier;
  let edgeAudit: PublishingAuditSink;
  let zones = 0;

  beforeAll(async () => {
    caracal = await startHarness(kind);
    audit = caracal.serviceClient(AuditService);
    // A protected service's edge, as a user would run it: keys from the JWKS, decisions to the audit topic.
    jwks = new JwksCache({ source: httpJwksSource(caracal.baseUrl) });
    edgeAudit = new PublishingAuditSink((zone, event, id) => caracal.bus.publish("audit", zone, event, id));
    edge = new EdgeVerifier({
      keys: jwks.resolve,
      audit: edgeAudit,
      now: caracal.clock.now,
      requirements: { "acme.billing.v1.BillingService/CreateInvoice": { resource: "billing-api", scopes: ["invoices.write"] } },
    });
  }, 120_000);

  afterAll(async () => {
    await edgeAudit?.flushed();
    jwks?.close();
    await caracal?.stop();
  });

  async function zoneWithAgent(): Promise<{ zone: string; secret: string }> {
    const zone = `aud-${kind.startsWith("postgres") ? "pg" : "lite"}-${++zones}`;
    await caracal.admin.createZone({ zone });
    await caracal.admin.createResource({ zone, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
    const { clientSecret } = await caracal.admin.createApplication({ zone, clientId: "agent" });
    await caracal.admin.createGrant({ zone, clientId: "agent", resourceId: "billing-api", scopes: ["invoices.read", "invoices.write"] });
    return { zone, secret: clientSecret };
  }

  async function mandateFor(zone: string, secret: string, scopes: string[]) {
    const session = await caracal.sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: secret } });
    return caracal.sts.exchange({ subjectToken: session.sessionMandate, resources: ["billing-api"], scopes });
  }

  const createInvoice = (mandate: string, requestId: string) =>
    edge.check({
      method: { service: "acme.billing.v1.BillingService", name: "CreateInvoice" },
      authorization: `Bearer ${mandate}`,
      requestId,
    });

  /** Explain, once the ledger has caught up with `steps` records for the id. */
  async function explained(zone: string, id: { case: "requestId" | "decisionId"; value: string }, steps: number) {
    return vi.waitFor(
      async () => {
        const answer = await audit.explain({ zone, id });
        expect(answer.steps).toHaveLength(steps);
        return answer;
      },
      { timeout: 10_000, interval: 100 },
    );
  }

  it("explains an allowed call: the STS issuance with its policy version, then the edge decision", async () => {
    const { zone, secret } = await zoneWithAgent();
    const issued = await mandateFor(zone, secret, ["invoices.write"]);
    const requestId = randomUUID();
    const admitted = await createInvoice(issued.mandate, requestId);
    const answer = await explained(zone, { case: "requestId", value: requestId }, 2);
    expect(answer.decision).toBe(AuditDecision.ALLOW);
    expect(answer.summary).toBe(`allowed: acme.billing.v1.BillingService/CreateInvoice allowed agent with mandate ${issued.info!.mandateId}`);
    expect(answer.steps.map((s) => s.record?.event?.type)).toEqual([EventType.EXCHANGE, EventType.EDGE_CALL]);
    expect(answer.steps[0]!.sentence).toBe(
      `the STS issued agent mandate ${issued.info!.mandateId} for invoices.write on billing-api; no active policy set: grants alone decided`,
    );
    expect(answer.steps[0]!.record?.event?.decisionId).toBe(issued.decisionId);
    expect(answer.steps[1]!.record?.event?.decisionId).toBe(admitted.decisionId);
  });

  it("explains a refused call by its decision id: denied, and why, with the mandate's issuance", async () => {
    const { zone, secret } = await zoneWithAgent();
    const issued = await mandateFor(zone, secret, ["invoices.read"]);
    const error = await createInvoice(issued.mandate, randomUUID()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MandateError);
    const decisionId = (error as MandateError).decisionId!;
    const answer = await explained(zone, { case: "decisionId", value: decisionId }, 2);
    expect(answer.decision).toBe(AuditDecision.DENY);
    expect(answer.summary).toBe("denied: scope invoices.write not in mandate");
    expect(answer.steps[0]!.sentence).toContain(`issued agent mandate ${issued.info!.mandateId} for invoices.read on billing-api`);
    expect(answer.steps[1]!.sentence).toBe("acme.billing.v1.BillingService/CreateInvoice denied agent: scope invoices.write not in mandate");
  });

  it("explains an STS refusal, and answers NOT_FOUND for an id the ledger does not hold", async () => {
    const { zone, secret } = await zoneWithAgent();
    const session = await caracal.sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: secret } });
    const refused = await refusal(caracal.sts.exchange({ subjectToken: session.sessionMandate, resources: ["billing-api"], scopes: ["invoices.void"] }));
    const answer = await explained(zone, { case: "decisionId", value: errorDetailOf(refused)!.decisionId }, 1);
    expect(answer.summary).toBe("denied: scope invoices.void is not granted on billing-api");
    const missing = await refusal(audit.explain({ zone, id: { case: "requestId", value: "never-seen" } }));
    expect(missing.code).toBe(Code.NotFound);
    expect(reasonOf(missing)).toBe(Reason.NOT_FOUND);
  });

  it("stores every decision of a zone once, queryable by filter, with an intact chain", async () => {
    const { zone, secret } = await zoneWithAgent();
    const issued = await mandateFor(zone, secret, ["invoices.read"]);
    await refusal(caracal.sts.exchange({ subjectToken: "not-a-token", resources: ["billing-api"], scopes: ["invoices.read"] }));
    await caracal.audit.settle();
    // Zone creation, resource, application, grant; the session; the exchange.
    const all = await vi.waitFor(
      async () => {
        const page = await audit.query({ filter: { zone }, pageSize: 100 });
        expect(page.records.length).toBeGreaterThanOrEqual(6);
        return page.records;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(new Set(all.map((r) => r.event?.eventId)).size).toBe(all.length);
    const exchanges = await audit.query({ filter: { zone, types: [EventType.EXCHANGE], clientId: "agent" } });
    expect(exchanges.records.map((r) => r.event?.decisionId)).toEqual([issued.decisionId]);
    const chain = await audit.verifyChain({ zone });
    expect(chain).toMatchObject({ intact: true, rowsChecked: BigInt(all.length) });
  });

  it("exports SIEM lines in chain order from a cursor, without gaps or duplicates", async () => {
    const { zone, secret } = await zoneWithAgent();
    await mandateFor(zone, secret, ["invoices.read"]);
    await caracal.audit.settle();
    const lines = await vi.waitFor(
      async () => {
        const got: { line: Record<string, unknown>; cursor: string }[] = [];
        for await (const r of audit.export({ zone })) got.push({ line: JSON.parse(r.jsonLine) as Record<string, unknown>, cursor: r.cursor });
        expect(got.length).toBeGreaterThanOrEqual(6);
        return got;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(lines.map((l) => l.cursor)).toEqual(lines.map((_, i) => String(i + 1)));
    const exchange = lines.find((l) => l.line.class_name === "Authorize Session")!.line;
    expect(exchange).toMatchObject({ status: "Success", actor: { app_uid: "agent" }, metadata: { log_name: zone, product: { name: "Caracal" } } });
    const resumed = [];
    for await (const r of audit.export({ zone, cursor: lines[3]!.cursor })) resumed.push(r.cursor);
    expect(resumed).toEqual(lines.slice(4).map((l) => l.cursor));
  });

  it("tails records as they are stored", async () => {
    const { zone, secret } = await zoneWithAgent();
    const controller = new AbortController();
    const seen: string[] = [];
    const tailing = (async () => {
      try {
        for await (const r of audit.tail({ filter: { zone, types: [EventType.EXCHANGE] } }, { signal: controller.signal })) {
          seen.push(r.record!.event!.decisionId);
        }
      } catch (error) {
        if (ConnectError.from(error).code !== Code.Canceled) throw error;
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const issued = await mandateFor(zone, secret, ["invoices.read"]);
    await vi.waitFor(() => expect(seen).toEqual([issued.decisionId]), { timeout: 10_000, interval: 50 });
    controller.abort();
    await tailing;
  });

  it("refuses a filter without a zone, and a zone that is not a slug", async () => {
    const noZone = await refusal(audit.query({ filter: {} }));
    expect(errorDetailOf(noZone)?.metadata.field).toBe("filter.zone");
    const bad = await refusal(audit.verifyChain({ zone: "Not A Zone" }));
    expect(bad.code).toBe(Code.InvalidArgument);
  });
});

describe("the ledger consumer on NATS and Postgres", () => {
  const ns = natsTestNamespace();
  afterAll(() => ns.cleanup());
  const log = pino({ level: "silent" });
  const key = Buffer.alloc(32, 5);

  function auditEvent(zone: string, i: number) {
    const eventId = randomUUID();
    const event = create(AuditEventSchema, { eventId, zone, time: timestampFromMs(Date.now()), type: EventType.EXCHANGE, requestId: `r${i}` });
    return { eventId, bytes: toBinary(AuditEventSchema, event) };
  }

  async function stored(store: Store, zone: string): Promise<string[]> {
    const { rows } = await store.query<{ request_id: string }>("SELECT request_id FROM audit_events WHERE zone = $1 ORDER BY seq", [zone]);
    return rows.map((r) => r.request_id);
  }

  it("stores every event exactly once when the ledger was stopped while producers went on", async () => {
    const database = await createTestDatabase();
    const store = await openStore({ databaseUrl: database.url, dataDir: "" });
    const bus: Bus = await openNatsBus({ url: testNatsUrl, ...ns.prefix(), onError: () => {} });
    try {
      let ledger = await startLedger(bus, store, key, log);
      for (let i = 0; i < 50; i++) {
        const e = auditEvent("stopped", i);
        await bus.publish("audit", "stopped", e.bytes, e.eventId);
      }
      await ledger.stop();
      for (let i = 50; i < 300; i++) {
        const e = auditEvent("stopped", i);
        await bus.publish("audit", "stopped", e.bytes, e.eventId);
        // A producer that retries with a new message id: the ledger still stores it once.
        if (i % 50 === 0) await bus.publish("audit", "stopped", e.bytes, randomUUID());
      }
      ledger = await startLedger(bus, store, key, log);
      // Up to the ack wait (30 s): a message the stopping consumer handed back
      // can be held that long by NATS 2.9 before it is delivered again (seen
      // in about 1 run in 16, before and after the ledger's wire reading).
      await vi.waitFor(async () => expect(await stored(store, "stopped")).toHaveLength(300), { timeout: 40_000, interval: 100 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Each once; such a held-back message is stored after those that overtook it.
      expect((await stored(store, "stopped")).sort()).toEqual(Array.from({ length: 300 }, (_, i) => `r${i}`).sort());
      await ledger.stop();
    } finally {
      await bus.close();
      await store.close();
      await database.drop();
    }
  }, 90_000);

  it("logs what it set aside and why, and stores the rest", async () => {
    const database = await createTestDatabase();
    const store = await openStore({ databaseUrl: database.url, dataDir: "" });
    const bus: Bus = await openNatsBus({ url: testNatsUrl, ...ns.prefix(), onError: () => {} });
    const lines: Record<string, unknown>[] = [];
    const logged = pino({ level: "error" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const ledger = await startLedger(bus, store, key, logged);
    try {
      const out = create(AuditEventSchema, { eventId: randomUUID(), zone: "aside", type: 70_000 as EventType, requestId: "r-out" });
      await bus.publish("audit", "aside", toBinary(AuditEventSchema, out), out.eventId);
      await bus.publish("audit", "aside", Uint8Array.from([0xff, 0xff]), randomUUID());
      const kept = auditEvent("aside", 1);
      await bus.publish("audit", "aside", kept.bytes, kept.eventId);
      await vi.waitFor(async () => expect(await stored(store, "aside")).toEqual(["r1"]), { timeout: 10_000, interval: 50 });
      await vi.waitFor(() => expect(lines.reduce((n, l) => n + Number(l.undecodable ?? 0), 0)).toBe(2), { timeout: 5_000, interval: 50 });
      const reasons = lines.flatMap((l) => Object.keys(l.reasons as Record<string, number>));
      expect(reasons.sort()).toEqual(["not an AuditEvent", "type or decision out of range"]);
      expect(lines[0]!.msg).toBe("audit messages the ledger cannot store were skipped");
    } finally {
      await ledger.stop();
      await bus.close();
      await store.close();
      await database.drop();
    }
  }, 60_000);

  it("stops acknowledging while Postgres is unreachable, then resumes and loses nothing", async () => {
    const database = await createTestDatabase();
    const name = new URL(database.url).pathname.slice(1);
    const store = await openStore({ databaseUrl: database.url, dataDir: "" });
    const bus: Bus = await openNatsBus({ url: testNatsUrl, ...ns.prefix(), onError: () => {} });
    const admin = new pg.Client({ connectionString: testAdminDatabaseUrl });
    await admin.connect();
    try {
      const ledger = await startLedger(bus, store, key, log);
      for (let i = 0; i < 20; i++) {
        const e = auditEvent("outage", i);
        await bus.publish("audit", "outage", e.bytes, e.eventId);
      }
      await vi.waitFor(async () => expect(await stored(store, "outage")).toHaveLength(20), { timeout: 10_000, interval: 50 });

      // The database goes away under the ledger: connections cut, new ones refused.
      await admin.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} ALLOW_CONNECTIONS false`);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name]);
      for (let i = 20; i < 120; i++) {
        const e = auditEvent("outage", i);
        await bus.publish("audit", "outage", e.bytes, e.eventId);
      }
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await admin.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} ALLOW_CONNECTIONS true`);

      await vi.waitFor(async () => expect(await stored(store, "outage")).toHaveLength(120), { timeout: 40_000, interval: 200 });
      expect(await stored(store, "outage")).toEqual(Array.from({ length: 120 }, (_, i) => `r${i}`));
      await ledger.stop();
    } finally {
      await admin.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} ALLOW_CONNECTIONS true`).catch(() => {});
      await admin.end();
      await bus.close();
      await store.close();
      await database.drop();
    }
  }, 90_000);
});
