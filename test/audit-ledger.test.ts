import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditDecision, AuditEventSchema, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { ChainBreakKind, QueryRequestSchema, VerifyChainRequestSchema } from "../gen/caracal/audit/v1/audit_service_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { AuditLedger, type IncomingEvent } from "../services/audit/audit-ledger.js";
import type { AuditDeps } from "../services/audit/audit-deps.js";
import { query } from "../services/audit/query.js";
import { verifyChain } from "../services/audit/verify-chain.js";
import { openStore } from "../services/store/open-store.js";
import type { Store } from "../services/store/store.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";

/**
 * The ledger's storage, on both stores: exactly-once rows from at-least-once
 * delivery, a per-zone chain, and VerifyChain finding every kind of tampering.
 */
describe.each(["postgres", "pglite"] as const)("the audit ledger on %s", (kind) => {
  let store: Store;
  let database: TestDatabase | undefined;
  let dataDir: string | undefined;
  let deps: AuditDeps;
  let ledger: AuditLedger;
  let zones = 0;
  const key = randomBytes(32);
  const T0 = Date.UTC(2026, 10, 28, 12);

  beforeAll(async () => {
    if (kind === "postgres") {
      database = await createTestDatabase();
      store = await openStore({ databaseUrl: database.url, dataDir: "" });
    } else {
      dataDir = await mkdtemp(join(tmpdir(), "caracal-ledger-"));
      store = await openStore({ dataDir });
    }
    deps = { store, auditKey: key, draining: new AbortController().signal };
    ledger = new AuditLedger(store, key);
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const newZone = () => `ledger-${++zones}`;

  function event(zone: string, i: number, overrides: Parameters<typeof create<typeof AuditEventSchema>>[1] = {}): IncomingEvent {
    const message = create(AuditEventSchema, {
      eventId: randomUUID(),
      zone,
      time: timestampFromMs(T0 + i * 1_000),
      type: EventType.EXCHANGE,
      decision: i % 3 === 0 ? AuditDecision.DENY : AuditDecision.ALLOW,
      reason: i % 3 === 0 ? Reason.SCOPE_NOT_GRANTED : Reason.UNSPECIFIED,
      requestId: `req-${zone}-${i}`,
      decisionId: randomUUID(),
      clientId: `app-${i % 2}`,
      sessionId: `ses-${i}`,
      resources: ["billing-api"],
      scopes: ["invoices.read"],
      ...overrides,
    });
    return { zone, data: toBinary(AuditEventSchema, message) };
  }

  const verify = (zone: string, from = 0n, to = 0n) => verifyChain(deps, create(VerifyChainRequestSchema, { zone, fromSequence: from, toSequence: to }));

  it("stores each event once, however often it is delivered, and chains each zone from 1", async () => {
    const a = newZone();
    const b = newZone();
    const batch = [event(a, 1), event(b, 1), event(a, 2), event(a, 3)];
    expect(await ledger.append([...batch, batch[0]!])).toEqual({ stored: 4, duplicates: 1, undecodable: 0 });
    // A redelivery of the whole batch, and one more event: only the new one is stored.
    expect(await ledger.append([...batch, event(b, 2)])).toEqual({ stored: 1, duplicates: 4, undecodable: 0 });
    const rows = await store.query<{ zone: string; seq: string }>("SELECT zone, seq FROM audit_events WHERE zone = ANY($1) ORDER BY zone, seq", [[a, b]]);
    expect(rows.rows.map((r) => `${r.zone}:${r.seq}`)).toEqual([`${a}:1`, `${a}:2`, `${a}:3`, `${b}:1`, `${b}:2`]);
    expect(await verify(a)).toMatchObject({ intact: true, rowsChecked: 3n });
  });

  it("stores the payload without the ids its columns hold, unless that would not restore the published bytes", async () => {
    const zone = newZone();
    const sid = randomUUID();
    const ordinary = event(zone, 1, { sessionId: sid, rootSessionId: sid, mandateId: randomUUID() });
    // An upper-case id comes back lower-case from a uuid column: such an event is stored whole.
    const shouting = event(zone, 2, { eventId: randomUUID().toUpperCase() });
    await ledger.append([ordinary, shouting]);
    const { rows } = await store.query<{ seq: string; slim: boolean; bytes: number }>(
      "SELECT seq, slim, octet_length(payload) AS bytes FROM audit_events WHERE zone = $1 ORDER BY seq",
      [zone],
    );
    expect(rows.map((r) => [r.seq, r.slim])).toEqual([["1", true], ["2", false]]);
    expect(rows[0]!.bytes).toBeLessThan(ordinary.data.length - 100);
    expect(rows[1]!.bytes).toBe(shouting.data.length);
    // Both read back exactly as published, and the chain holds.
    const records = await query(deps, create(QueryRequestSchema, { filter: { zone } }));
    expect(records.records!.map((r) => toBinary(AuditEventSchema, create(AuditEventSchema, r.event!)))).toEqual([shouting.data, ordinary.data]);
    expect(await verify(zone)).toMatchObject({ intact: true, rowsChecked: 2n });
    // An id column edited on a slim row breaks its HMAC.
    await store.query("UPDATE audit_events SET client_id = 'someone-else' WHERE zone = $1 AND seq = 1", [zone]);
    expect(await verify(zone)).toMatchObject({ intact: false, firstBreak: { sequence: 1n, kind: ChainBreakKind.EDITED } });
  });

  it("skips a payload that is not an AuditEvent and stores the rest", async () => {
    const zone = newZone();
    expect(await ledger.append([{ zone, data: Uint8Array.from([0xff, 0xff, 0xff]) }, event(zone, 1)])).toEqual({ stored: 1, duplicates: 0, undecodable: 1 });
  });

  it("sets aside, with a reason, events its columns cannot hold, so they never stop the ledger, and stores the rest", async () => {
    const zone = newZone();
    const reasons: string[] = [];
    const reporting = new AuditLedger(store, key, (reason) => reasons.push(reason));
    const invalidUtf8 = event(zone, 9);
    // The request id r...: its first byte made 0xff, which is never valid UTF-8 (fromBinary refuses it too).
    const at = Buffer.from(invalidUtf8.data).indexOf(Buffer.from(`req-${zone}-9`));
    const broken = Uint8Array.from(invalidUtf8.data);
    broken[at] = 0xff;
    const result = await reporting.append([
      event(zone, 1, { type: 70_000 as EventType }),
      event(zone, 2, { time: { seconds: 253_402_300_800n, nanos: 0 } }),
      event(zone, 3, { requestId: "a\0b" }),
      event(zone, 4, { resources: ["ok", "nul\0"] }),
      { zone, data: broken },
      event(zone, 5),
    ]);
    expect(result).toEqual({ stored: 1, duplicates: 0, undecodable: 5 });
    expect(reasons).toEqual(["type or decision out of range", "time out of range", "NUL in a text id", "NUL in a text id", "not an AuditEvent"]);
    expect(await verify(zone)).toMatchObject({ intact: true, rowsChecked: 1n });
  });

  it("stores resources with quotes, backslashes, commas and braces, and times before 1970, exactly", async () => {
    const zone = newZone();
    const resources = ['say "hi"', "back\\slash", "a,b", "{braces}", "", "NULL"];
    const old = event(zone, 1, { resources, time: { seconds: -1n, nanos: 999_999_000 } });
    expect(await ledger.append([old])).toMatchObject({ stored: 1 });
    const { rows } = await store.query<{ resources: string[]; us: string }>(
      "SELECT resources, (extract(epoch FROM time) * 1000000)::bigint AS us FROM audit_events WHERE zone = $1",
      [zone],
    );
    expect(rows).toEqual([{ resources, us: "-1" }]);
    const records = await query(deps, create(QueryRequestSchema, { filter: { zone } }));
    expect(toBinary(AuditEventSchema, create(AuditEventSchema, records.records![0]!.event!))).toEqual(old.data);
    expect(await verify(zone)).toMatchObject({ intact: true, rowsChecked: 1n });
  });

  it("never forks a chain under concurrent appenders", async () => {
    const zone = newZone();
    const other = new AuditLedger(store, key);
    await Promise.all([
      ledger.append(Array.from({ length: 40 }, (_, i) => event(zone, i))),
      other.append(Array.from({ length: 40 }, (_, i) => event(zone, 100 + i))),
      ledger.append(Array.from({ length: 40 }, (_, i) => event(zone, 200 + i))),
    ]);
    expect(await verify(zone)).toMatchObject({ intact: true, rowsChecked: 120n });
  });

  it("answers Query newest first with a cursor, and by request id", async () => {
    const zone = newZone();
    await ledger.append(Array.from({ length: 7 }, (_, i) => event(zone, i)));
    const first = await query(deps, create(QueryRequestSchema, { filter: { zone }, pageSize: 4 }));
    const second = await query(deps, create(QueryRequestSchema, { filter: { zone }, pageSize: 4, pageToken: first.nextPageToken }));
    const ids = [...first.records!, ...second.records!].map((r) => r.event?.requestId);
    expect(ids).toEqual([6, 5, 4, 3, 2, 1, 0].map((i) => `req-${zone}-${i}`));
    expect(second.nextPageToken).toBe("");
    const one = await query(deps, create(QueryRequestSchema, { filter: { zone, requestId: `req-${zone}-4` } }));
    expect(one.records?.map((r) => r.sequence)).toEqual([5n]);
    const denied = await query(deps, create(QueryRequestSchema, { filter: { zone, decision: AuditDecision.DENY } }));
    expect(denied.records?.map((r) => r.event?.requestId)).toEqual([6, 3, 0].map((i) => `req-${zone}-${i}`));
  });

  describe("VerifyChain", () => {
    async function chainOf(length: number): Promise<string> {
      const zone = newZone();
      await ledger.append(Array.from({ length }, (_, i) => event(zone, i)));
      expect(await verify(zone)).toMatchObject({ intact: true, rowsChecked: BigInt(length) });
      return zone;
    }

    it("reports an edited payload as EDITED at that row", async () => {
      const zone = await chainOf(5);
      const forged = event(zone, 2, { decision: AuditDecision.ALLOW, reason: Reason.UNSPECIFIED });
      await store.query("UPDATE audit_events SET payload = $1 WHERE zone = $2 AND seq = 3", [Buffer.from(forged.data), zone]);
      expect(await verify(zone)).toMatchObject({ intact: false, rowsChecked: 2n, firstBreak: { sequence: 3n, kind: ChainBreakKind.EDITED } });
    });

    it("reports an edited filter column as EDITED, though the payload is untouched", async () => {
      const zone = await chainOf(5);
      await store.query("UPDATE audit_events SET decision = $1 WHERE zone = $2 AND seq = 4", [AuditDecision.ALLOW, zone]);
      const result = await verify(zone);
      expect(result).toMatchObject({ intact: false, firstBreak: { sequence: 4n, kind: ChainBreakKind.EDITED } });
      expect(result.firstBreak?.detail).toContain("column decision");
    });

    it("reports a deleted row as DELETED, in the middle and at the end", async () => {
      const middle = await chainOf(5);
      await store.query("DELETE FROM audit_events WHERE zone = $1 AND seq = 2", [middle]);
      expect(await verify(middle)).toMatchObject({ intact: false, rowsChecked: 1n, firstBreak: { sequence: 2n, kind: ChainBreakKind.DELETED } });
      const end = await chainOf(5);
      await store.query("DELETE FROM audit_events WHERE zone = $1 AND seq = 5", [end]);
      expect(await verify(end)).toMatchObject({ intact: false, rowsChecked: 4n, firstBreak: { sequence: 5n, kind: ChainBreakKind.DELETED } });
    });

    it("reports swapped rows as REORDERED", async () => {
      const zone = await chainOf(5);
      await store.transaction(async (tx) => {
        await tx.query("UPDATE audit_events SET seq = 100 WHERE zone = $1 AND seq = 2", [zone]);
        await tx.query("UPDATE audit_events SET seq = 2 WHERE zone = $1 AND seq = 3", [zone]);
        await tx.query("UPDATE audit_events SET seq = 3 WHERE zone = $1 AND seq = 100", [zone]);
      });
      expect(await verify(zone)).toMatchObject({ intact: false, rowsChecked: 1n, firstBreak: { sequence: 2n, kind: ChainBreakKind.REORDERED } });
    });

    it("checks a range, and finds a row forged with another key", async () => {
      const zone = await chainOf(6);
      expect(await verify(zone, 3n, 5n)).toMatchObject({ intact: true, rowsChecked: 3n });
      // A consistent-looking chain rebuilt without the audit key does not verify.
      const impostor = new AuditLedger(store, randomBytes(32));
      await impostor.append([event(zone, 99)]);
      expect(await verify(zone)).toMatchObject({ intact: false, firstBreak: { sequence: 7n, kind: ChainBreakKind.EDITED } });
    });
  });
});
