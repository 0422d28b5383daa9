import { WireType } from "@bufbuild/protobuf/wire";
import { AuditEventSchema } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { LedgerFields } from "./ledger-columns.js";
import { FIELD, fieldNumber, topLevelFields } from "./wire-fields.js";

/** The id columns a ledger row keeps beside its payload (see `filterColumns`). */
export interface IdColumns {
  event_id: string;
  request_id: string | null;
  decision_id: string | null;
  client_id: string | null;
  session_id: string | null;
  root_session_id: string | null;
  mandate_id: string | null;
  approval_id: string | null;
  resources: string[] | null;
}

/** The field number of each `AuditEvent` id field the columns hold. */
const field = (localName: string) => fieldNumber(AuditEventSchema, localName);
const ID_FIELDS = {
  eventId: field("eventId"),
  requestId: field("requestId"),
  decisionId: field("decisionId"),
  clientId: field("clientId"),
  sessionId: field("sessionId"),
  rootSessionId: field("rootSessionId"),
  resources: field("resources"),
  mandateId: field("mandateId"),
  approvalId: field("approvalId"),
};
const STRIPPED = new Set(Object.values(ID_FIELDS));
// `idFields` lists the ids in this order without sorting them.
if (Object.values(ID_FIELDS).some((n, i, all) => i > 0 && n <= all[i - 1]!)) throw new Error("AuditEvent's id fields are no longer in the order idFields lists them");

/**
 * The payload as the ledger stores it. The ids an event carries as text are
 * about half of its bytes, and the row already holds them in columns (as
 * 16-byte uuids), so the payload is stored without them whenever putting them
 * back gives the very bytes the producer published; otherwise it is stored
 * whole. Either way the row's HMAC covers the published bytes, so an edited id
 * column breaks the chain like an edited payload.
 *
 * Both directions work on the protobuf wire, field by field, without decoding
 * or encoding a message: the ledger does this for every event it stores.
 * The slim form is used only when restoring provably gives the published
 * bytes back (see `restorable`); test/audit-wire.test.ts holds that rule
 * against actually restoring, for canonical and for odd encodings.
 *
 * @param published - an encoded `AuditEvent`, well-formed (`wellFormed`).
 * @param event - its fields, as `readLedgerFields` read them.
 * @param columns - the id columns its row gets.
 * @param fields - `topLevelFields(published)`, when the caller has it already.
 */
export function storedPayload(
  published: Uint8Array,
  event: LedgerFields,
  columns: IdColumns,
  fields = topLevelFields(published),
): { bytes: Uint8Array; slim: boolean } {
  if (!fields || !restorable(event, columns, fields)) return { bytes: published, slim: false };
  const kept: Uint8Array[] = [];
  for (let i = 0; i < fields.length; i += FIELD.stride) {
    if (!STRIPPED.has(fields[i]!)) kept.push(published.subarray(fields[i + FIELD.start], fields[i + FIELD.end]));
  }
  return { bytes: Buffer.concat(kept), slim: true };
}

/**
 * Whether `restoredParts` gives back exactly the published bytes these
 * fields lie in. Restoring writes each id the columns hold once, canonically
 * encoded, in field-number order among the other fields. So it does when:
 *
 * 1. the columns hold the event's ids unchanged (not lower-cased, not
 *    replaced by a digest, the root session stored or implied exactly);
 * 2. the wire holds exactly the id fields restoring writes, in the same
 *    order: each once (resources once per element), no singular one empty;
 * 3. each has a minimal tag and length prefix;
 * 4. no other field before an id has a higher number, none after it a lower.
 *
 * Given 2, each id field's value is the one the event decoded, so 1 makes
 * its bytes the ones restoring writes (valid UTF-8 round-trips exactly).
 */
function restorable(event: LedgerFields, c: IdColumns, fields: readonly number[]): boolean {
  const root = c.root_session_id ?? c.session_id;
  const unchanged =
    c.event_id === event.eventId &&
    (c.request_id ?? "") === event.requestId &&
    (c.decision_id ?? "") === event.decisionId &&
    (c.client_id ?? "") === event.clientId &&
    (c.session_id ?? "") === event.sessionId &&
    (root ?? "") === event.rootSessionId &&
    (c.mandate_id ?? "") === event.mandateId &&
    (c.approval_id ?? "") === event.approvalId &&
    sameList(c.resources ?? [], event.resources);
  if (!unchanged) return false;

  const expected: number[] = [];
  if (c.event_id) expected.push(ID_FIELDS.eventId);
  if (c.request_id) expected.push(ID_FIELDS.requestId);
  if (c.decision_id) expected.push(ID_FIELDS.decisionId);
  if (c.client_id) expected.push(ID_FIELDS.clientId);
  if (c.session_id) expected.push(ID_FIELDS.sessionId);
  if (root) expected.push(ID_FIELDS.rootSessionId);
  for (let i = 0; i < (c.resources?.length ?? 0); i++) expected.push(ID_FIELDS.resources);
  if (c.mandate_id) expected.push(ID_FIELDS.mandateId);
  if (c.approval_id) expected.push(ID_FIELDS.approvalId);

  let next = 0;
  let highestOther = 0;
  for (let i = 0; i < fields.length; i += FIELD.stride) {
    const fieldNo = fields[i]!;
    if (!STRIPPED.has(fieldNo)) {
      highestOther = Math.max(highestOther, fieldNo);
      continue;
    }
    if (fieldNo !== expected[next++] || highestOther > fieldNo) return false;
    const length = fields[i + FIELD.end]! - fields[i + FIELD.valueStart]!;
    if (fields[i + FIELD.valueStart]! - fields[i + FIELD.start]! !== varintSize((fieldNo << 3) | WireType.LengthDelimited) + varintSize(length)) return false;
  }
  if (next !== expected.length) return false;
  let lowestOther = Infinity;
  for (let i = fields.length - FIELD.stride; i >= 0; i -= FIELD.stride) {
    const fieldNo = fields[i]!;
    if (!STRIPPED.has(fieldNo)) lowestOther = Math.min(lowestOther, fieldNo);
    else if (lowestOther < fieldNo) return false;
  }
  return true;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The bytes the producer published, from a stored row. Throws when a slim payload is not well-formed (an edited row). */
export function publishedPayload(row: IdColumns & { payload: Uint8Array; slim: boolean }): Uint8Array {
  if (!row.slim) return row.payload;
  const restored = restoredParts(row.payload, row);
  if (!restored) throw new TypeError("a slim audit payload that is not well-formed protobuf");
  return Buffer.concat(restored);
}

/**
 * Puts the ids back where an encoder puts them: each in field-number order
 * among the payload's own fields, as protobuf-es (and every canonical
 * encoder) writes a message. Returns the pieces in order; undefined when the
 * slim payload is not well-formed.
 */
function restoredParts(slim: Uint8Array, c: IdColumns): Uint8Array[] | undefined {
  const fields = topLevelFields(slim);
  if (!fields) return undefined;
  const ids = idFields(c);
  const parts: Uint8Array[] = [];
  let next = 0;
  for (let i = 0; i < fields.length; i += FIELD.stride) {
    while (next < ids.length && ids[next]!.fieldNo < fields[i]!) parts.push(ids[next++]!.bytes);
    parts.push(slim.subarray(fields[i + FIELD.start], fields[i + FIELD.end]));
  }
  while (next < ids.length) parts.push(ids[next++]!.bytes);
  return parts;
}

/** The id fields the columns hold, encoded, in field-number order; unset (empty) ids are not encoded, as proto3 does not. */
function idFields(c: IdColumns): { fieldNo: number; bytes: Uint8Array }[] {
  const ids: { fieldNo: number; bytes: Uint8Array }[] = [];
  // In field-number order (checked where ID_FIELDS is built).
  addId(ids, ID_FIELDS.eventId, c.event_id);
  addId(ids, ID_FIELDS.requestId, c.request_id);
  addId(ids, ID_FIELDS.decisionId, c.decision_id);
  addId(ids, ID_FIELDS.clientId, c.client_id);
  addId(ids, ID_FIELDS.sessionId, c.session_id);
  // Stored only where it differs from the session.
  addId(ids, ID_FIELDS.rootSessionId, c.root_session_id ?? c.session_id);
  // Every element, empty ones too: a repeated field encodes each.
  for (const resource of c.resources ?? []) ids.push({ fieldNo: ID_FIELDS.resources, bytes: stringField(ID_FIELDS.resources, resource) });
  addId(ids, ID_FIELDS.mandateId, c.mandate_id);
  addId(ids, ID_FIELDS.approvalId, c.approval_id);
  return ids;
}

function addId(ids: { fieldNo: number; bytes: Uint8Array }[], fieldNo: number, value: string | null): void {
  if (value) ids.push({ fieldNo, bytes: stringField(fieldNo, value) });
}

/**
 * A string field as protobuf encodes it: tag, length, UTF-8 bytes. By hand
 * rather than with `BinaryWriter`, whose buffer set-up costs more than the
 * few bytes written: this runs for every id of every event stored and read.
 */
function stringField(fieldNo: number, value: string): Buffer {
  const tag = (fieldNo << 3) | WireType.LengthDelimited;
  const length = Buffer.byteLength(value);
  const out = Buffer.allocUnsafe(varintSize(tag) + varintSize(length) + length);
  out.write(value, writeVarint(out, writeVarint(out, 0, tag), length));
  return out;
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value >>>= 7;
    size++;
  }
  return size;
}

/** Writes an unsigned varint (below 2^32) at `at`; returns where it ended. */
function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}
