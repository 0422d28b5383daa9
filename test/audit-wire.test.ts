import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { AuditDecision, AuditEventSchema, EventType, type AuditEvent } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { mulberry32 } from "../bench/support/seeded-random.js";
import { eventKey, filterColumns, type LedgerFields } from "../services/audit/ledger-columns.js";
import { publishedPayload, storedPayload } from "../services/audit/stored-payload.js";
import { readLedgerFields } from "../services/audit/wire-event.js";
import { FIELD, topLevelFields } from "../services/audit/wire-fields.js";

/**
 * The ledger reads events on the wire instead of decoding them
 * (services/audit/wire-fields.ts). These tests hold that reading to
 * `fromBinary`: the same values, and no event accepted that `fromBinary`
 * refuses. And they hold the slim payload rule to restoring: a payload is
 * stored slim only when restoring it gives the published bytes.
 */

type EventInit = MessageInitShape<typeof AuditEventSchema>;

function full(overrides: Partial<Record<keyof AuditEvent, unknown>> = {}): EventInit {
  const session = randomUUID();
  return {
    eventId: randomUUID(),
    zone: "acme",
    time: { seconds: 1_795_000_000n, nanos: 123_456_789 },
    type: EventType.EDGE_CALL,
    decision: AuditDecision.DENY,
    reason: 7,
    requestId: "req-1",
    decisionId: randomUUID(),
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    clientId: "billing-agent",
    subject: "user:ada",
    sessionId: session,
    rootSessionId: session,
    delegationChain: [{ clientId: "planner", subject: "user:ada", sessionId: randomUUID() }],
    resources: ["billing-api", "ledger-api"],
    scopes: ["invoices.read"],
    policySetVersion: 4n,
    determiningPolicies: ["p1"],
    edgeService: "acme.billing.v1.BillingService",
    edgeMethod: "GetInvoice",
    mandateId: randomUUID(),
    actor: "",
    action: "",
    approvalId: randomUUID(),
    attributes: { missing_scope: "invoices.write", "ünïcode": "✓" },
    ...overrides,
  } as EventInit;
}

const encode = (init: EventInit) => toBinary(AuditEventSchema, create(AuditEventSchema, init));

/** The ledger's view of a decoded event, for comparison. */
function fromDecoded(bytes: Uint8Array): LedgerFields {
  const e = fromBinary(AuditEventSchema, bytes);
  return {
    eventId: e.eventId, zone: e.zone, requestId: e.requestId, decisionId: e.decisionId, clientId: e.clientId, sessionId: e.sessionId,
    rootSessionId: e.rootSessionId, mandateId: e.mandateId, approvalId: e.approvalId, resources: e.resources, type: e.type, decision: e.decision,
    time: e.time && { seconds: e.time.seconds, nanos: e.time.nanos },
  };
}

function decodes(bytes: Uint8Array): boolean {
  try {
    fromBinary(AuditEventSchema, bytes);
    return true;
  } catch {
    return false;
  }
}

/** A raw length-delimited field, however the test wants it encoded. */
const raw = (fieldNo: number, value: Uint8Array | string) => new BinaryWriter().tag(fieldNo, WireType.LengthDelimited).bytes(typeof value === "string" ? Buffer.from(value) : value).finish();
const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

describe("reading an AuditEvent on the wire", () => {
  it("gives the values fromBinary gives, for canonical and for odd encodings", () => {
    const cases: Uint8Array[] = [
      encode(full()),
      encode({}),
      encode(full({ type: -1 as EventType, decision: 2_000_000 as AuditDecision, time: { seconds: -62_135_596_800n, nanos: 0 } })),
      encode(full({ requestId: "\uFEFFbom-first", clientId: "ünïcödé-agent", resources: ["", "a"] })),
      // A repeated singular field: the last wins. A repeated timestamp: merged.
      concat(encode(full({ requestId: "first" })), raw(7, "second"), raw(3, encode({}).subarray(0, 0)), new BinaryWriter().tag(3, WireType.LengthDelimited).fork().tag(2, WireType.Varint).int32(5).join().finish()),
      // Unknown fields of every wire type, and fields out of order.
      concat(new BinaryWriter().tag(99, WireType.Varint).uint64(2n ** 63n).tag(98, WireType.Bit64).fixed64(1n).tag(97, WireType.Bit32).fixed32(1).finish(), raw(2, "zone-b"), raw(1, "id-late")),
    ];
    for (const bytes of cases) {
      expect(decodes(bytes)).toBe(true);
      expect(readLedgerFields(bytes)).toEqual(fromDecoded(bytes));
    }
  });

  it("refuses what fromBinary refuses: invalid UTF-8 anywhere, a known field with another wire type, truncation, groups", () => {
    const good = encode(full());
    const badUtf8 = Uint8Array.from([0xc3, 0x28]);
    const cases: Uint8Array[] = [
      concat(good, raw(7, badUtf8)),
      concat(good, raw(14, raw(1, badUtf8))), // in a delegation chain actor
      concat(good, raw(25, concat(raw(1, "k"), raw(2, badUtf8)))), // in an attribute's value
      concat(good, new BinaryWriter().tag(7, WireType.Varint).uint32(1).finish()),
      concat(good, new BinaryWriter().tag(3, WireType.Bit32).fixed32(1).finish()),
      good.subarray(0, good.length - 3),
      concat(good, Uint8Array.from([(50 << 3) | WireType.StartGroup, (50 << 3) | WireType.EndGroup])),
    ];
    for (const [i, bytes] of cases.entries()) {
      expect(readLedgerFields(bytes), `case ${i}`).toBeUndefined();
    }
    // All but the group (which fromBinary skips as an unknown field) are refused by fromBinary too.
    expect(cases.slice(0, -1).filter(decodes)).toEqual([]);
  });

  it("never accepts bytes fromBinary refuses, and agrees with it on what both accept (10,000 mutated events)", () => {
    const random = mulberry32(20261128);
    let accepted = 0;
    for (let i = 0; i < 10_000; i++) {
      const bytes = Uint8Array.from(encode(full()));
      for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      const read = readLedgerFields(bytes);
      if (!read) continue;
      accepted++;
      expect(decodes(bytes)).toBe(true);
      expect(read).toEqual(fromDecoded(bytes));
    }
    // The mutations must leave enough events readable for the comparison to mean something.
    expect(accepted).toBeGreaterThan(1_000);
  });
});

describe("the slim payload", () => {
  /** What the ledger would store for these bytes, and whether that gives them back. */
  function store(bytes: Uint8Array) {
    const event = readLedgerFields(bytes)!;
    const columns = { event_id: eventKey(event.eventId, bytes), ...filterColumns(event) };
    const stored = storedPayload(bytes, event, columns);
    return { stored, back: publishedPayload({ ...columns, payload: stored.bytes, slim: stored.slim }), columns };
  }

  it("is used for Caracal's own events and gives their bytes back", () => {
    for (const init of [full(), full({ rootSessionId: randomUUID(), resources: [] }), full({ sessionId: "", rootSessionId: "", approvalId: "" })]) {
      const bytes = encode(init);
      const { stored, back } = store(bytes);
      expect(stored.slim).toBe(true);
      expect(stored.bytes.length).toBeLessThan(bytes.length - 100);
      expect(Buffer.from(back).equals(Buffer.from(bytes))).toBe(true);
    }
  });

  it("is not used when restoring would not give the published bytes, and those are stored whole", () => {
    const session = randomUUID();
    const good = encode(full());
    const fields = topLevelFields(good)!;
    // Where the first field, the event id, ends.
    const idEnd = fields[FIELD.end]!;
    const cases: [string, Uint8Array][] = [
      ["upper-case UUID", encode(full({ eventId: randomUUID().toUpperCase() }))],
      ["a decision id that is no UUID (stored as a digest)", encode(full({ decisionId: "d-1" }))],
      ["a root session empty while the session is set", encode(full({ sessionId: session, rootSessionId: "" }))],
      ["an explicitly empty request id", concat(encode({ eventId: session }), raw(7, ""), encode({ decisionId: session }))],
      ["an id field twice", concat(good.subarray(0, idEnd), good.subarray(0, idEnd), good.subarray(idEnd))],
      ["an id field out of order", concat(good.subarray(idEnd), good.subarray(0, idEnd))],
      ["a length not minimally encoded", concat(encode({ eventId: session }), Uint8Array.from([(7 << 3) | 2, 0x85, 0x00]), Buffer.from("req-2"), encode({ decisionId: session }))],
    ];
    // The control for the empty and the non-minimal request id: the same fields with a request id minimally encoded are stored slim.
    expect(store(concat(encode({ eventId: session }), raw(7, "req-2"), encode({ decisionId: session }))).stored.slim).toBe(true);
    for (const [name, bytes] of cases) {
      expect(decodes(bytes), name).toBe(true);
      const { stored, back } = store(bytes);
      expect(stored.slim, name).toBe(false);
      expect(Buffer.from(stored.bytes).equals(Buffer.from(bytes)), name).toBe(true);
      expect(Buffer.from(back).equals(Buffer.from(bytes)), name).toBe(true);
    }
  });

  it("is used exactly when restoring gives the published bytes back (2,000 events with fields shuffled)", () => {
    const random = mulberry32(7);
    let slim = 0;
    for (let i = 0; i < 2_000; i++) {
      const bytes = encode(full(i % 2 ? {} : { rootSessionId: randomUUID() }));
      const fields = topLevelFields(bytes)!;
      const parts: Uint8Array[] = [];
      for (let f = 0; f < fields.length; f += FIELD.stride) parts.push(bytes.subarray(fields[f + FIELD.start], fields[f + FIELD.end]));
      // Swap two neighbouring fields, sometimes: most swaps move an id out of place, some do not.
      if (random() < 0.8) {
        const at = Math.floor(random() * (parts.length - 1));
        [parts[at], parts[at + 1]] = [parts[at + 1]!, parts[at]!];
      }
      const shuffled = concat(...parts);
      const { stored, back, columns } = store(shuffled);
      expect(Buffer.from(back).equals(Buffer.from(shuffled))).toBe(true);
      // The oracle: strip the ids and restore them, whatever the rule says.
      const restorable = Buffer.from(publishedPayload({ ...columns, payload: withoutIds(shuffled), slim: true })).equals(Buffer.from(shuffled));
      expect(stored.slim).toBe(restorable);
      if (stored.slim) slim++;
    }
    expect(slim).toBeGreaterThan(200);
    expect(slim).toBeLessThan(2_000);
  });
});

/** The bytes without the id fields the ledger keeps in columns (numbers from the schema). */
function withoutIds(bytes: Uint8Array): Uint8Array {
  const ids = new Set(["eventId", "requestId", "decisionId", "clientId", "sessionId", "rootSessionId", "resources", "mandateId", "approvalId"].map((n) => AuditEventSchema.fields.find((f) => f.localName === n)!.number));
  const fields = topLevelFields(bytes)!;
  const kept: Uint8Array[] = [];
  for (let f = 0; f < fields.length; f += FIELD.stride) if (!ids.has(fields[f]!)) kept.push(bytes.subarray(fields[f + FIELD.start], fields[f + FIELD.end]));
  return concat(...kept);
}
