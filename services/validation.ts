import { Code } from "@connectrpc/connect";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../interceptors/caracal-error.js";
import { ZONE_PATTERN } from "../interceptors/mandate-claims.js";

/** Client ids and resource ids: lower-case, starting with a letter or digit, at most 63 characters. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Scope names, e.g. `invoices.read`. */
export const SCOPE_PATTERN = /^[a-z0-9][a-z0-9._:-]{0,127}$/;

/** An INVALID_ARGUMENT error naming the field, the one shape every RPC uses for bad input. */
export function invalidArgument(field: string, problem: string) {
  return caracalError(Code.InvalidArgument, Reason.INVALID_ARGUMENT, `${field}: ${problem}`, { metadata: { field } });
}

function matching(value: string, field: string, pattern: RegExp, description: string): string {
  if (value === "") throw invalidArgument(field, "is required");
  if (!pattern.test(value)) throw invalidArgument(field, `must match ${description}`);
  return value;
}

/** A zone slug. */
export function zoneSlug(value: string, field = "zone"): string {
  return matching(value, field, ZONE_PATTERN, "^[a-z0-9-]{1,63}$");
}

/** A client id or resource id. */
export function identifier(value: string, field: string): string {
  return matching(value, field, ID_PATTERN, "^[a-z0-9][a-z0-9._-]{0,62}$");
}

/** A non-empty list of distinct scopes, at most `max`. */
export function scopeList(values: readonly string[], field: string, max = 64): string[] {
  if (values.length === 0) throw invalidArgument(field, "name at least one scope");
  if (values.length > max) throw invalidArgument(field, `at most ${max} scopes`);
  for (const value of values) matching(value, field, SCOPE_PATTERN, "^[a-z0-9][a-z0-9._:-]{0,127}$");
  return [...new Set(values)];
}

/** Free text with an upper bound, e.g. display names and reasons. */
export function boundedText(value: string, field: string, max: number): string {
  if (value.length > max) throw invalidArgument(field, `at most ${max} characters`);
  return value;
}

/** Labels: at most 32 entries, keys like identifiers, values at most 256 characters. */
export function labels(values: Readonly<Record<string, string>>, field = "labels"): Record<string, string> {
  const entries = Object.entries(values);
  if (entries.length > 32) throw invalidArgument(field, "at most 32 labels");
  for (const [key, value] of entries) {
    matching(key, `${field}.key`, ID_PATTERN, "^[a-z0-9][a-z0-9._-]{0,62}$");
    boundedText(value, `${field}.${key}`, 256);
  }
  return Object.fromEntries(entries);
}

/** A protobuf Duration as whole seconds, or undefined when unset; must be positive and at most `maxSeconds`. */
export function durationSeconds(
  value: { seconds: bigint; nanos: number } | undefined,
  field: string,
  maxSeconds: number,
  { allowZero = false } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value.seconds) + value.nanos / 1e9;
  if (!Number.isFinite(seconds) || seconds < 0 || (seconds === 0 && !allowZero)) {
    throw invalidArgument(field, allowZero ? "must not be negative" : "must be positive");
  }
  if (seconds > maxSeconds) throw invalidArgument(field, `at most ${maxSeconds} s`);
  return Math.floor(seconds);
}

/** A page size: default 50, at most 500. */
export function pageSize(value: number, field = "page_size"): number {
  if (value < 0) throw invalidArgument(field, "must not be negative");
  return value === 0 ? 50 : Math.min(value, 500);
}

/** Page tokens are opaque to callers: the last key of the previous page, base64url-encoded. */
export const pageToken = {
  encode(lastKey: string): string {
    return Buffer.from(lastKey, "utf8").toString("base64url");
  },
  decode(token: string, field = "page_token"): string | undefined {
    if (token === "") return undefined;
    if (!/^[A-Za-z0-9_-]{1,512}$/.test(token)) throw invalidArgument(field, "is not a token this server issued");
    return Buffer.from(token, "base64url").toString("utf8");
  },
};

/** Page tokens of lists ordered by (created_at, id) newest first: the last row's time and UUID. */
export const timeIdPageToken = {
  encode(createdAt: Date, id: string): string {
    return pageToken.encode(`${createdAt.toISOString()}|${id}`);
  },
  /** The last row of the previous page, or undefined for the first page. */
  decode(token: string, field = "page_token"): { createdAt: Date; id: string } | undefined {
    const cursor = pageToken.decode(token, field);
    if (cursor === undefined) return undefined;
    const [at, id] = cursor.split("|");
    const createdAt = new Date(at ?? "");
    if (Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id ?? "")) throw invalidArgument(field, "is not a token this server issued");
    return { createdAt, id: id! };
  },
};
