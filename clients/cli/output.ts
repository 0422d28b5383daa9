import { toJsonString, type DescEnum, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * Prints a message as protobuf JSON (int64 as strings, enums by name,
 * timestamps as RFC 3339). Fields at their default value are printed too, so
 * scripts can rely on every key being present.
 *
 * @example
 * printJson(ListZonesResponseSchema, create(ListZonesResponseSchema, { zones }));
 */
export function printJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void {
  process.stdout.write(`${toJsonString(schema, message, { alwaysEmitImplicit: true, prettySpaces: 2 })}\n`);
}

/** Prints `key: value` lines with the values aligned. */
export function printFields(fields: readonly (readonly [string, string])[]): void {
  const width = Math.max(0, ...fields.map(([key]) => key.length + 1));
  process.stdout.write(fields.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${value}`.trimEnd() + "\n").join(""));
}

/**
 * Prints an aligned table with a header row. An empty table prints `empty`
 * on stderr instead, so stdout stays empty for scripts.
 */
export function printTable(headers: readonly string[], rows: readonly (readonly string[])[], empty: string): void {
  if (rows.length === 0) {
    process.stderr.write(`${empty}\n`);
    return;
  }
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join("  ").trimEnd() + "\n";
  process.stdout.write(line(headers) + rows.map(line).join(""));
}

/** Writes a note for people on stderr, keeping stdout for data. */
export function printNote(note: string): void {
  process.stderr.write(`${note}\n`);
}

/** A timestamp as `2025-01-31T12:00:00Z`, or `-` when unset. */
export function formatTime(timestamp: Timestamp | undefined): string {
  return timestamp ? timestampDate(timestamp).toISOString().replace(/\.\d{3}Z$/, "Z") : "-";
}

/** A duration as whole seconds, e.g. `3600s`, or `-` when unset. */
export function formatDuration(duration: Duration | undefined): string {
  return duration ? `${duration.seconds}s` : "-";
}

/** An enum value by its short name in lower case, e.g. `KeyState.CURRENT` → `current`. */
export function formatEnum(schema: DescEnum, value: number): string {
  const found = schema.values.find((candidate) => candidate.number === value);
  return found ? found.localName.toLowerCase() : String(value);
}

/** A list for a table cell, `-` when empty. */
export function formatList(values: readonly string[]): string {
  return values.length === 0 ? "-" : values.join(",");
}
