import { isUtf8 } from "node:buffer";
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";

/*
 * The protobuf wire, read by hand for the ledger's hot path. The ledger
 * needs an event's field boundaries (to take ids out of a payload and put
 * them back), a dozen of its values (the filter columns), and the certainty
 * that `fromBinary` will decode it when it is read. `fromBinary` builds the
 * whole message, which was a fifth of the ledger's time per event; walking
 * the bytes and reading only those values takes half as long (6–10 µs
 * against 13–17 µs for bench/audit's events) and leaves far less garbage,
 * and the walk is shared with the slim payload. Everything here is checked
 * against `fromBinary` by test/audit-wire.test.ts.
 */

/**
 * Where each top-level field of an encoded message lies, as a flat list of
 * quintuples (see {@link FIELD}): field number, wire type, start (its tag),
 * value start (after the length prefix, for length-delimited fields), end.
 * Undefined when the bytes are not well-formed or hold a group (which
 * Caracal's messages never have).
 */
export function topLevelFields(bytes: Uint8Array, start = 0, end = bytes.length): number[] | undefined {
  const fields: number[] = [];
  let at = start;
  while (at < end) {
    const fieldStart = at;
    const tag = varint32(bytes, at, end);
    // Tags and lengths are unsigned 32-bit: at most 5 bytes.
    if (tag < 0 || varintEnd - at > 5) return undefined;
    at = varintEnd;
    const fieldNo = tag >>> 3;
    const wireType = tag & 7;
    if (fieldNo === 0) return undefined;
    let valueStart = at;
    switch (wireType) {
      case WireType.Varint:
        if (varint32(bytes, at, end) < 0 && varintEnd < 0) return undefined;
        at = varintEnd;
        break;
      case WireType.Bit64:
        at += 8;
        break;
      case WireType.LengthDelimited: {
        const length = varint32(bytes, at, end);
        if (length < 0 || varintEnd - at > 5) return undefined;
        valueStart = varintEnd;
        at = valueStart + length;
        break;
      }
      case WireType.Bit32:
        at += 4;
        break;
      default:
        return undefined;
    }
    if (at > end) return undefined;
    fields.push(fieldNo, wireType, fieldStart, valueStart, at);
  }
  return fields;
}

/** The layout of {@link topLevelFields}' list. */
export const FIELD = { stride: 5, number: 0, wireType: 1, start: 2, valueStart: 3, end: 4 } as const;

/** Where the last {@link varint32} ended (-1 when the varint was malformed). Module state keeps the hot path free of allocations. */
let varintEnd = -1;

/**
 * Reads a varint at `at` and returns its low 32 bits as a signed int32, as
 * protobuf reads an int32 or enum (or -1 with `varintEnd` -1 when it is
 * truncated or longer than 10 bytes). A caller that needs an unsigned value
 * (a tag, a length) treats a negative result as malformed.
 */
function varint32(bytes: Uint8Array, at: number, end: number): number {
  let value = 0;
  for (let i = 0; i < 10; i++) {
    if (at >= end) break;
    const byte = bytes[at++]!;
    if (i < 5) value |= (byte & 0x7f) << (7 * i);
    if (byte < 0x80) {
      varintEnd = at;
      return value;
    }
  }
  varintEnd = -1;
  return -1;
}

/** The int32 (or enum) value of a varint field at `at`; undefined when malformed. */
export function int32At(bytes: Uint8Array, at: number, end: number): number | undefined {
  const value = varint32(bytes, at, end);
  return varintEnd < 0 ? undefined : value;
}

/** A varint field at `at` as a signed 64-bit integer (protobuf's int64). */
export function int64At(bytes: Uint8Array, at: number, end: number): bigint | undefined {
  let value = 0n;
  for (let i = 0; i < 10 && at < end; i++) {
    const byte = bytes[at++]!;
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if (byte < 0x80) return BigInt.asIntN(64, value);
  }
  return undefined;
}

/** `bytes` as a Buffer, without copying: what {@link textAt} reads from. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** The text of a length-delimited field whose UTF-8 is known to be valid. */
export function textAt(bytes: Buffer, start: number, end: number): string {
  return bytes.toString("utf8", start, end);
}

const MAX_DEPTH = 32;
/** Each message's fields, indexed by number. */
const byNumber = new WeakMap<DescMessage, (DescField | undefined)[]>();

/**
 * Whether `fromBinary(schema, bytes)` decodes the message: every known field
 * has the wire type its kind is encoded with (packed or not for repeated
 * numbers), every string is valid UTF-8 (proto3 requires it, and
 * `fromBinary` checks it; Caracal's protos are all proto3), every nested
 * message and map entry is itself well formed, nesting stays under 32
 * levels. Stricter than `fromBinary` in two ways, neither of which Caracal
 * publishes: a known field with another wire type (which `fromBinary` might
 * misread rather than refuse), and a group anywhere (which it would skip).
 */
export function wellFormed(schema: DescMessage, bytes: Uint8Array, start = 0, end = bytes.length, fields = topLevelFields(bytes, start, end), depth = 0): boolean {
  if (!fields || depth > MAX_DEPTH) return false;
  let known = byNumber.get(schema);
  if (!known) {
    known = [];
    for (const f of schema.fields) known[f.number] = f;
    byNumber.set(schema, known);
  }
  for (let i = 0; i < fields.length; i += FIELD.stride) {
    const field = known[fields[i]!];
    if (field && !validValue(field, fields[i + FIELD.wireType]!, bytes, fields[i + FIELD.valueStart]!, fields[i + FIELD.end]!, depth)) return false;
  }
  return true;
}

function validValue(field: DescField, wireType: number, bytes: Uint8Array, start: number, end: number, depth: number): boolean {
  switch (field.fieldKind) {
    case "scalar":
      return validScalar(field.scalar, wireType, bytes, start, end);
    case "enum":
      return wireType === WireType.Varint;
    case "message":
      return wireType === WireType.LengthDelimited && wellFormed(field.message, bytes, start, end, undefined, depth + 1);
    case "list":
      switch (field.listKind) {
        case "message":
          return wireType === WireType.LengthDelimited && wellFormed(field.message, bytes, start, end, undefined, depth + 1);
        case "enum":
          return wireType === WireType.Varint || (wireType === WireType.LengthDelimited && packedWellFormed(WireType.Varint, bytes, start, end));
        case "scalar": {
          if (wireType === scalarWireType(field.scalar)) return validScalar(field.scalar, wireType, bytes, start, end);
          return wireType === WireType.LengthDelimited && scalarWireType(field.scalar) !== WireType.LengthDelimited && packedWellFormed(scalarWireType(field.scalar), bytes, start, end);
        }
      }
      return false;
    case "map": {
      if (wireType !== WireType.LengthDelimited) return false;
      const entry = topLevelFields(bytes, start, end);
      if (!entry || depth + 1 > MAX_DEPTH) return false;
      for (let i = 0; i < entry.length; i += FIELD.stride) {
        const [no, type, from, to] = [entry[i]!, entry[i + FIELD.wireType]!, entry[i + FIELD.valueStart]!, entry[i + FIELD.end]!];
        if (no === 1 && !validScalar(field.mapKey, type, bytes, from, to)) return false;
        if (no !== 2) continue;
        const valid =
          field.mapKind === "scalar" ? validScalar(field.scalar, type, bytes, from, to)
          : field.mapKind === "enum" ? type === WireType.Varint
          : type === WireType.LengthDelimited && wellFormed(field.message, bytes, from, to, undefined, depth + 2);
        if (!valid) return false;
      }
      return true;
    }
  }
}

function validScalar(scalar: ScalarType, wireType: number, bytes: Uint8Array, start: number, end: number): boolean {
  if (wireType !== scalarWireType(scalar)) return false;
  return scalar !== ScalarType.STRING || validUtf8(bytes, start, end);
}

/** Most of Caracal's text is ASCII: checked in place, and only other text handed to `isUtf8`. */
function validUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  for (let at = start; at < end; at++) if (bytes[at]! >= 0x80) return isUtf8(bytes.subarray(start, end));
  return true;
}

/** A packed run: whole varints or whole fixed-width values, nothing left over. */
function packedWellFormed(elementWireType: number, bytes: Uint8Array, start: number, end: number): boolean {
  if (elementWireType === WireType.Bit64) return (end - start) % 8 === 0;
  if (elementWireType === WireType.Bit32) return (end - start) % 4 === 0;
  for (let at = start; at < end; at = varintEnd) {
    varint32(bytes, at, end);
    if (varintEnd < 0) return false;
  }
  return true;
}

function scalarWireType(scalar: ScalarType): number {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}

/** A field's number, looked up in the schema by its TypeScript name, so code that works on the wire follows a renumbering. */
export function fieldNumber(schema: DescMessage, localName: string): number {
  const found = schema.fields.find((f) => f.localName === localName);
  if (!found) throw new Error(`${schema.typeName} has no field ${localName}`);
  return found.number;
}
