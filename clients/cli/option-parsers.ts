import { InvalidArgumentError } from "commander";

/** Parses whole seconds (`3600`); commander reports a bad value as a usage error. */
export function parseSeconds(value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new InvalidArgumentError("expected whole seconds, e.g. 3600");
  return Number(value);
}

/** Parses a page size between 1 and 500. */
export function parsePageSize(value: string): number {
  const size = /^\d{1,3}$/.test(value) ? Number(value) : 0;
  if (size < 1 || size > 500) throw new InvalidArgumentError("expected a number from 1 to 500");
  return size;
}

/** Collects repeated `--label key=value` flags into a record. */
export function collectLabel(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf("=");
  if (at <= 0) throw new InvalidArgumentError("expected key=value");
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}
