import type { Queryable, Store } from "../store/store.js";

/** Stored states; `expired` is not stored but derived from `expires_at`. */
type StoredState = "pending" | "approved" | "rejected" | "used";

/** Where an approval stands, as callers see it. */
export type ApprovalStateName = StoredState | "expired";

/** An approval row. */
export interface ApprovalRecord {
  readonly approvalId: string;
  readonly zoneId: string;
  readonly clientId: string;
  readonly sessionId: string;
  readonly resources: readonly string[];
  readonly scopes: readonly string[];
  readonly policySetVersion: number;
  readonly determiningPolicies: readonly string[];
  readonly stepUpKind: string;
  readonly storedState: StoredState;
  readonly secretHash: Buffer;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  readonly decidedBy: string | null;
  readonly decidedAt: Date | null;
  readonly decisionReason: string | null;
  readonly failedAttempts: number;
  readonly cooldownUntil: Date | null;
}

/** Failed redemptions before a challenge cools down. */
export const MAX_FAILED_ATTEMPTS = 5;
/** How long a challenge cools down after too many failures. */
export const COOLDOWN_MS = 5 * 60 * 1000;

/** The state as of `now`: undecided or unredeemed approvals lapse at `expiresAt`. */
export function stateOf(record: ApprovalRecord, now: number): ApprovalStateName {
  if ((record.storedState === "pending" || record.storedState === "approved") && now >= record.expiresAt.getTime()) return "expired";
  return record.storedState;
}

interface Row {
  approval_id: string;
  zone_id: string;
  client_id: string;
  session_id: string;
  resources: string[];
  scopes: string[];
  policy_set_version: string;
  determining_policies: string[];
  step_up_kind: string;
  state: StoredState;
  secret_hash: Buffer;
  created_at: Date;
  expires_at: Date;
  decided_by: string | null;
  decided_at: Date | null;
  decision_reason: string | null;
  failed_attempts: number;
  cooldown_until: Date | null;
  [column: string]: unknown;
}

function toRecord(row: Row): ApprovalRecord {
  return {
    approvalId: row.approval_id,
    zoneId: row.zone_id,
    clientId: row.client_id,
    sessionId: row.session_id,
    resources: row.resources,
    scopes: row.scopes,
    policySetVersion: Number(row.policy_set_version),
    determiningPolicies: row.determining_policies,
    stepUpKind: row.step_up_kind,
    storedState: row.state,
    secretHash: Buffer.from(row.secret_hash),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    decidedBy: row.decided_by,
    decidedAt: row.decided_at,
    decisionReason: row.decision_reason,
    failedAttempts: row.failed_attempts,
    cooldownUntil: row.cooldown_until,
  };
}

/** Records a new pending approval. */
export async function insertApproval(
  db: Queryable,
  a: Omit<ApprovalRecord, "storedState" | "decidedBy" | "decidedAt" | "decisionReason" | "failedAttempts" | "cooldownUntil">,
): Promise<void> {
  await db.query(
    `INSERT INTO approvals (approval_id, zone_id, client_id, session_id, resources, scopes, policy_set_version, determining_policies,
                            step_up_kind, state, secret_hash, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)`,
    [a.approvalId, a.zoneId, a.clientId, a.sessionId, a.resources, a.scopes, a.policySetVersion, a.determiningPolicies, a.stepUpKind, a.secretHash, a.createdAt, a.expiresAt],
  );
}

/** One approval of a zone, or undefined. `forUpdate` locks it in a transaction. */
export async function findApproval(db: Queryable, zoneId: string, approvalId: string, forUpdate = false): Promise<ApprovalRecord | undefined> {
  if (!/^[0-9a-f-]{36}$/.test(approvalId)) return undefined;
  const { rows } = await db.query<Row>(`SELECT * FROM approvals WHERE zone_id = $1 AND approval_id = $2${forUpdate ? " FOR UPDATE" : ""}`, [zoneId, approvalId]);
  return rows[0] && toRecord(rows[0]);
}

/** A page of the zone's approvals, newest first, optionally only those in `state` as of `now`. */
export async function listApprovals(
  db: Queryable,
  zoneId: string,
  options: { state?: ApprovalStateName; now: Date; after?: { createdAt: Date; id: string }; limit: number },
): Promise<ApprovalRecord[]> {
  const STATE_SQL: Record<ApprovalStateName, string> = {
    pending: "state = 'pending' AND expires_at > $2",
    approved: "state = 'approved' AND expires_at > $2",
    expired: "state IN ('pending', 'approved') AND expires_at <= $2",
    rejected: "state = 'rejected'",
    used: "state = 'used'",
  };
  const { rows } = await db.query<Row>(
    `SELECT * FROM approvals WHERE zone_id = $1 AND ${options.state ? STATE_SQL[options.state] : "$2::timestamptz IS NOT NULL"}
       AND ($3::timestamptz IS NULL OR (created_at, approval_id) < ($3, $4::uuid))
     ORDER BY created_at DESC, approval_id DESC LIMIT $5`,
    [zoneId, options.now, options.after?.createdAt ?? null, options.after?.id ?? null, options.limit],
  );
  return rows.map(toRecord);
}

/**
 * Decides a pending approval. Returns the updated record, or the current one
 * unchanged when it was no longer pending (decided, or lapsed, meanwhile).
 */
export async function decideApproval(
  store: Store,
  zoneId: string,
  approvalId: string,
  decision: { approve: boolean; by: string; reason: string; at: Date },
): Promise<{ record: ApprovalRecord; decided: boolean } | undefined> {
  return store.transaction(async (tx) => {
    const current = await findApproval(tx, zoneId, approvalId, true);
    if (!current) return undefined;
    if (stateOf(current, decision.at.getTime()) !== "pending") return { record: current, decided: false };
    const { rows } = await tx.query<Row>(
      `UPDATE approvals SET state = $3, decided_by = $4, decided_at = $5, decision_reason = $6
       WHERE zone_id = $1 AND approval_id = $2 RETURNING *`,
      [zoneId, approvalId, decision.approve ? "approved" : "rejected", decision.by, decision.at, decision.reason],
    );
    return { record: toRecord(rows[0]!), decided: true };
  });
}

/** Counts a failed redemption; the fifth puts the challenge in a cooldown. */
export async function recordFailedRedemption(db: Queryable, zoneId: string, approvalId: string, at: Date): Promise<void> {
  await db.query(
    `UPDATE approvals SET failed_attempts = failed_attempts + 1,
            cooldown_until = CASE WHEN failed_attempts + 1 >= $3 THEN $4::timestamptz ELSE cooldown_until END
     WHERE zone_id = $1 AND approval_id = $2`,
    [zoneId, approvalId, MAX_FAILED_ATTEMPTS, new Date(at.getTime() + COOLDOWN_MS)],
  );
}

/**
 * Spends an approved approval: true when this call spent it, false when
 * another redemption got there first (single use under concurrency).
 */
export async function spendApproval(db: Queryable, zoneId: string, approvalId: string, at: Date): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE approvals SET state = 'used', used_at = $3 WHERE zone_id = $1 AND approval_id = $2 AND state = 'approved' AND expires_at > $3`,
    [zoneId, approvalId, at],
  );
  return rowCount === 1;
}
