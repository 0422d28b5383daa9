import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { AuditEventSchema } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { LedgerFields } from "./ledger-columns.js";
import { asBuffer, FIELD, fieldNumber, int32At, int64At, textAt, topLevelFields, wellFormed } from "./wire-fields.js";

const field = (localName: string) => fieldNumber(AuditEventSchema, localName);
const TEXT = new Map<number, Exclude<keyof LedgerFields, "time" | "type" | "decision" | "resources">>(
  (["eventId", "zone", "requestId", "decisionId", "clientId", "sessionId", "rootSessionId", "mandateId", "approvalId"] as const).map((name) => [field(name), name]),
);
const TIME = field("time");
const TYPE = field("type");
const DECISION = field("decision");
const RESOURCES = field("resources");
const SECONDS = fieldNumber(TimestampSchema, "seconds");
const NANOS = fieldNumber(TimestampSchema, "nanos");

/**
 * The fields the ledger keeps in columns, read straight off an encoded
 * `AuditEvent` (see services/audit/wire-fields.ts for why), with the same
 * values `fromBinary` gives them: the last occurrence of a field wins,
 * repeated timestamps merge. Undefined when the event is not well-formed
 * (`wellFormed`): when `fromBinary` would not decode it, or might misread it.
 *
 * @param fields - `topLevelFields(bytes)`, when the caller has it already.
 */
export function readLedgerFields(payload: Uint8Array, fields = topLevelFields(payload)): LedgerFields | undefined {
  if (!fields || !wellFormed(AuditEventSchema, payload, 0, payload.length, fields)) return undefined;
  const bytes = asBuffer(payload);
  const event: LedgerFields = {
    eventId: "", zone: "", requestId: "", decisionId: "", clientId: "", sessionId: "", rootSessionId: "", mandateId: "", approvalId: "",
    type: 0, decision: 0, resources: [],
  };
  for (let i = 0; i < fields.length; i += FIELD.stride) {
    const no = fields[i]!;
    const start = fields[i + FIELD.valueStart]!;
    const end = fields[i + FIELD.end]!;
    const text = TEXT.get(no);
    if (text) event[text] = textAt(bytes, start, end);
    else if (no === RESOURCES) event.resources.push(textAt(bytes, start, end));
    else if (no === TYPE) event.type = int32At(bytes, start, end)!;
    else if (no === DECISION) event.decision = int32At(bytes, start, end)!;
    else if (no === TIME) event.time = mergeTimestamp(event.time, bytes, start, end);
  }
  return event;
}

/** A `google.protobuf.Timestamp` merged over an earlier occurrence, as decoding merges a repeated message field. */
function mergeTimestamp(earlier: LedgerFields["time"], bytes: Uint8Array, start: number, end: number): NonNullable<LedgerFields["time"]> {
  const time = { seconds: earlier?.seconds ?? 0n, nanos: earlier?.nanos ?? 0 };
  // Well-formed already: every field of it reads.
  const fields = topLevelFields(bytes, start, end)!;
  for (let i = 0; i < fields.length; i += FIELD.stride) {
    if (fields[i] === SECONDS) time.seconds = int64At(bytes, fields[i + FIELD.valueStart]!, fields[i + FIELD.end]!)!;
    else if (fields[i] === NANOS) time.nanos = int32At(bytes, fields[i + FIELD.valueStart]!, fields[i + FIELD.end]!)!;
  }
  return time;
}
