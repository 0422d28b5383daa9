import { createHash } from "node:crypto";
import type { Queryable, Store } from "../store/store.js";
import type { PolicySourceInput } from "./policy-engine.js";

/** One stored version. `source` is absent when listed. */
export interface PolicySetVersionRecord {
  readonly version: number;
  readonly contentHash: string;
  readonly author: string;
  readonly message: string;
  readonly createdAt: Date;
  readonly source?: PolicySourceInput;
}

/** The zone's latest activation: the active version, who switched to it, and why. */
export interface ActivationRecord {
  readonly version: number;
  readonly previousVersion: number;
  readonly activatedBy: string;
  readonly reason: string;
  readonly activatedAt: Date;
}

/** The active version did not match what the caller expected. */
export class VersionConflictError extends Error {
  readonly code = "VERSION_CONFLICT" as const;
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`the active version is ${actual || "none"}, not ${expected || "none"}`);
    this.name = "VersionConflictError";
  }
}

/**
 * SHA-256 (hex) of a source in canonical form: documents in order, then the
 * schema. Two sources with the same hash run identically.
 */
export function contentHash(source: PolicySourceInput): string {
  const canonical = JSON.stringify({
    documents: source.documents.map((d) => [d.name, d.text]),
    schema: source.schema ?? "",
  });
  return createHash("sha256").update(canonical).digest("hex");
}

/**
 * Stores a new version, numbered one past the zone's newest. The zone row is
 * locked, so concurrent creators get consecutive numbers instead of a clash.
 */
export async function createPolicySetVersion(
  store: Store,
  zoneId: string,
  input: { source: PolicySourceInput; author: string; message: string; createdAt: Date },
): Promise<PolicySetVersionRecord> {
  const source = { documents: input.source.documents.map((d) => ({ name: d.name, text: d.text })), schema: input.source.schema ?? "" };
  const hash = contentHash(source);
  return store.transaction(async (tx) => {
    await tx.query("SELECT id FROM zones WHERE id = $1 FOR UPDATE", [zoneId]);
    const { rows } = await tx.query<{ version: string }>(
      `INSERT INTO policy_set_versions (zone_id, version, content_hash, source, author, message, created_at)
       SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 FROM policy_set_versions WHERE zone_id = $1
       RETURNING version`,
      [zoneId, hash, JSON.stringify(source), input.author, input.message, input.createdAt],
    );
    return { version: Number(rows[0]!.version), contentHash: hash, author: input.author, message: input.message, createdAt: input.createdAt, source };
  });
}

interface VersionRow {
  version: string;
  content_hash: string;
  author: string;
  message: string;
  created_at: Date;
  source?: { documents: { name: string; text: string }[]; schema: string };
  [key: string]: unknown;
}

function toRecord(row: VersionRow): PolicySetVersionRecord {
  return {
    version: Number(row.version),
    contentHash: row.content_hash,
    author: row.author,
    message: row.message,
    createdAt: row.created_at,
    ...(row.source ? { source: { documents: row.source.documents, ...(row.source.schema ? { schema: row.source.schema } : {}) } } : {}),
  };
}

/** One version with its source, or undefined. */
export async function findPolicySetVersion(db: Queryable, zoneId: string, version: number): Promise<PolicySetVersionRecord | undefined> {
  const { rows } = await db.query<VersionRow>(
    "SELECT version, content_hash, author, message, created_at, source FROM policy_set_versions WHERE zone_id = $1 AND version = $2",
    [zoneId, version],
  );
  return rows[0] && toRecord(rows[0]);
}

/** Versions below `before` (all when unset), newest first, without their source. */
export async function listPolicySetVersions(
  db: Queryable,
  zoneId: string,
  options: { before?: number; limit: number },
): Promise<PolicySetVersionRecord[]> {
  const { rows } = await db.query<VersionRow>(
    `SELECT version, content_hash, author, message, created_at FROM policy_set_versions
     WHERE zone_id = $1 AND ($2::bigint IS NULL OR version < $2) ORDER BY version DESC LIMIT $3`,
    [zoneId, options.before ?? null, options.limit],
  );
  return rows.map(toRecord);
}

/** The zone's active version, or undefined when none was ever activated. */
export async function findActivation(db: Queryable, zoneId: string): Promise<ActivationRecord | undefined> {
  const { rows } = await db.query<{ version: string; previous_version: string; activated_by: string; reason: string; activated_at: Date }>(
    `SELECT version, previous_version, activated_by, reason, activated_at FROM policy_activations
     WHERE zone_id = $1 ORDER BY seq DESC LIMIT 1`,
    [zoneId],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    version: Number(row.version),
    previousVersion: Number(row.previous_version),
    activatedBy: row.activated_by,
    reason: row.reason,
    activatedAt: row.activated_at,
  };
}

/**
 * Makes `version` the zone's active version, provided the active version is
 * still `expected` (0 for none). Checked and written under a lock of the zone
 * row, so of two operators racing from the same state exactly one wins.
 *
 * @throws {VersionConflictError} when the active version is not `expected`.
 * @returns the previous version, or undefined when `version` does not exist.
 */
export async function activatePolicySetVersion(
  store: Store,
  zoneId: string,
  input: { version: number; expected: number; activatedBy: string; reason: string; activatedAt: Date },
): Promise<{ previousVersion: number } | undefined> {
  return store.transaction(async (tx) => {
    await tx.query("SELECT id FROM zones WHERE id = $1 FOR UPDATE", [zoneId]);
    const exists = await tx.query("SELECT 1 FROM policy_set_versions WHERE zone_id = $1 AND version = $2", [zoneId, input.version]);
    if (exists.rowCount === 0) return undefined;
    const { rows } = await tx.query<{ version: string; seq: string }>(
      "SELECT version, seq FROM policy_activations WHERE zone_id = $1 ORDER BY seq DESC LIMIT 1",
      [zoneId],
    );
    const current = rows[0] ? Number(rows[0].version) : 0;
    if (current !== input.expected) throw new VersionConflictError(input.expected, current);
    await tx.query(
      `INSERT INTO policy_activations (zone_id, seq, version, previous_version, activated_by, reason, activated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [zoneId, Number(rows[0]?.seq ?? 0) + 1, input.version, current, input.activatedBy, input.reason, input.activatedAt],
    );
    return { previousVersion: current };
  });
}
