import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { RevocationSchema } from "../../gen/caracal/revocation/v1/revocation_pb.js";
import type { Queryable } from "../store/store.js";

/** What a revocation covers, as stored. */
export type TargetKind = "mandate" | "session" | "application" | "zone";

/** A revocation as stored. */
export type RevocationRow = {
  readonly revocation_id: string;
  readonly zone: string;
  readonly target_kind: TargetKind;
  readonly target_key: string;
  readonly issued_before: Date | null;
  readonly reason: string;
  readonly revoked_by: string;
  readonly created_at: Date;
  readonly expires_at: Date;
};

/** A new revocation. */
export interface NewRevocation {
  readonly zoneId: string;
  readonly kind: TargetKind;
  readonly key: string;
  readonly issuedBefore: Date | null;
  readonly reason: string;
  readonly revokedBy: string;
  readonly createdAt: Date;
  readonly expiresAt: Date;
}

const SELECT = `SELECT r.revocation_id, z.slug AS zone, r.target_kind, r.target_key, r.issued_before, r.reason, r.revoked_by,
                       r.created_at, r.expires_at
                  FROM revocations r JOIN zones z ON z.id = r.zone_id`;

/**
 * Records a revocation and its outbox row, or returns the one already in force
 * for the same target: revoking twice is one revocation with one id. Runs in
 * the caller's transaction, serialised per target by an advisory lock so two
 * racing calls cannot both insert.
 */
export async function recordRevocation(tx: Queryable, revocation: NewRevocation): Promise<{ row: RevocationRow; created: boolean }> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
    `revocation|${revocation.zoneId}|${revocation.kind}|${revocation.key}`,
  ]);
  const existing = await tx.query<RevocationRow>(
    `${SELECT} WHERE r.zone_id = $1 AND r.target_kind = $2 AND r.target_key = $3 AND r.expires_at > $4
      ORDER BY r.created_at LIMIT 1`,
    [revocation.zoneId, revocation.kind, revocation.key, revocation.createdAt],
  );
  if (existing.rows[0]) return { row: existing.rows[0], created: false };
  const id = randomUUID();
  await tx.query(
    `INSERT INTO revocations (revocation_id, zone_id, target_kind, target_key, issued_before, reason, revoked_by, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      id,
      revocation.zoneId,
      revocation.kind,
      revocation.key,
      revocation.issuedBefore,
      revocation.reason,
      revocation.revokedBy,
      revocation.createdAt,
      revocation.expiresAt,
    ],
  );
  await tx.query(`INSERT INTO revocation_outbox (revocation_id) VALUES ($1)`, [id]);
  const { rows } = await tx.query<RevocationRow>(`${SELECT} WHERE r.revocation_id = $1`, [id]);
  return { row: rows[0]!, created: true };
}

/** Revocations of a zone still in force at `now`, newest first, after a (created_at, id) cursor. */
export async function listRevocationRows(
  db: Queryable,
  zoneId: string,
  now: Date,
  after: { createdAt: Date; id: string } | undefined,
  limit: number,
): Promise<RevocationRow[]> {
  const { rows } = await db.query<RevocationRow>(
    `${SELECT} WHERE r.zone_id = $1 AND r.expires_at > $2
        AND ($3::timestamptz IS NULL OR (r.created_at, r.revocation_id) < ($3, $4::uuid))
      ORDER BY r.created_at DESC, r.revocation_id DESC LIMIT $5`,
    [zoneId, now, after?.createdAt ?? null, after?.id ?? null, limit],
  );
  return rows;
}

/** A stored revocation as the API and the bus carry it. */
export function revocationMessage(row: RevocationRow): MessageInitShape<typeof RevocationSchema> {
  const target =
    row.target_kind === "mandate"
      ? { case: "mandateId" as const, value: row.target_key }
      : row.target_kind === "session"
        ? { case: "sessionId" as const, value: row.target_key }
        : row.target_kind === "application"
          ? { case: "clientId" as const, value: row.target_key }
          : { case: "issuedBefore" as const, value: timestampFromDate(row.issued_before!) };
  return {
    revocationId: row.revocation_id,
    zone: row.zone,
    target: { target },
    reason: row.reason,
    revokedBy: row.revoked_by,
    createdAt: timestampFromDate(row.created_at),
    expiresAt: timestampFromDate(row.expires_at),
  };
}

/** Whether an application revocation is in force: the STS then issues the application nothing new. */
export async function applicationRevoked(db: Queryable, zoneId: string, clientId: string, now: Date): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM revocations WHERE zone_id = $1 AND target_kind = 'application' AND target_key = $2 AND expires_at > $3 LIMIT 1`,
    [zoneId, clientId, now],
  );
  return rows.length > 0;
}
