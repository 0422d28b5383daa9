import type { Queryable, Store } from "../store/store.js";
import type { AuthorizationRequestInput, PolicyDecision } from "./policy-engine.js";

/** One question the STS put to policy, and what policy answered then. */
export interface RecordedQuestion {
  readonly request: AuthorizationRequestInput;
  readonly decision: PolicyDecision;
}

/** One STS decision that reached the policy stage. */
export interface RecordedDecision {
  readonly decisionId: string;
  readonly decidedAt: Date;
  /** The version that decided; 0 for the default (grants only). */
  readonly policySetVersion: number;
  readonly questions: readonly RecordedQuestion[];
}

/** Options of {@link DecisionRecorder}. */
export interface DecisionRecorderOptions {
  /** How often queued decisions are written; default 200 ms. */
  readonly flushMs?: number;
  /** Queued decisions beyond this are dropped (and counted); default 10,000. */
  readonly maxPending?: number;
  /** Rows kept per zone, the most a simulation can replay; default 10,000. */
  readonly keepPerZone?: number;
  /** Where write failures go. */
  readonly onError?: (error: unknown) => void;
}

/** The most a simulation replays, and so the most each zone keeps. */
export const MAX_RECORDED_DECISIONS = 10_000;

// Trimming scans a zone's newest rows; once per this many written rows is plenty.
const TRIM_EVERY = 1_000;

/**
 * The STS's own record of what it asked policy, so `SimulatePolicySet` can
 * replay real traffic until the audit ledger can serve it.
 *
 * Decisions are queued and written in batches off the request path: an
 * `Exchange` never waits for this write. It is a replay sample, not the audit
 * record (that is the audit event): when the queue is full or a write fails,
 * decisions are dropped and counted rather than slowing the STS down.
 */
export class DecisionRecorder {
  readonly #store: Store;
  readonly #flushMs: number;
  readonly #maxPending: number;
  readonly #keepPerZone: number;
  readonly #onError: (error: unknown) => void;
  #pending: { zoneId: string; decision: RecordedDecision }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  readonly #sinceTrim = new Map<string, number>();
  #dropped = 0;

  constructor(store: Store, options: DecisionRecorderOptions = {}) {
    this.#store = store;
    this.#flushMs = options.flushMs ?? 200;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#keepPerZone = options.keepPerZone ?? MAX_RECORDED_DECISIONS;
    this.#onError = options.onError ?? (() => {});
  }

  /** Decisions dropped so far (queue full or write failed). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Queues one decision; never blocks and never throws. */
  record(zoneId: string, decision: RecordedDecision): void {
    if (this.#pending.length >= this.#maxPending) {
      this.#dropped++;
      return;
    }
    this.#pending.push({ zoneId, decision });
    this.#timer ??= setTimeout(() => void this.flush(), this.#flushMs).unref();
  }

  /** Writes everything queued so far; resolves when it is stored (or dropped on failure). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#pending;
    this.#pending = [];
    this.#flushing = this.#flushing.then(() => (batch.length > 0 ? this.#write(batch) : undefined));
    return this.#flushing;
  }

  async #write(batch: { zoneId: string; decision: RecordedDecision }[]): Promise<void> {
    try {
      // One statement per batch, in queue order (seq is the replay order).
      // A zone deleted meanwhile loses its rows, not the batch.
      await this.#store.query(
        `INSERT INTO policy_decisions (zone_id, decision_id, decided_at, policy_set_version, questions)
         SELECT r.zone_id, r.decision_id, r.decided_at, r.policy_set_version, r.questions
         FROM ROWS FROM (jsonb_to_recordset($1::jsonb)
           AS (zone_id uuid, decision_id uuid, decided_at timestamptz, policy_set_version bigint, questions jsonb))
           WITH ORDINALITY AS r(zone_id, decision_id, decided_at, policy_set_version, questions, ord)
         WHERE EXISTS (SELECT 1 FROM zones WHERE zones.id = r.zone_id)
         ORDER BY r.ord`,
        [
          JSON.stringify(
            batch.map(({ zoneId, decision }) => ({
              zone_id: zoneId,
              decision_id: decision.decisionId,
              decided_at: decision.decidedAt.toISOString(),
              policy_set_version: decision.policySetVersion,
              questions: decision.questions,
            })),
          ),
        ],
      );
      for (const { zoneId } of batch) this.#sinceTrim.set(zoneId, (this.#sinceTrim.get(zoneId) ?? 0) + 1);
      for (const [zoneId, count] of this.#sinceTrim) {
        if (count < TRIM_EVERY) continue;
        this.#sinceTrim.delete(zoneId);
        await this.#store.query(
          `DELETE FROM policy_decisions WHERE zone_id = $1 AND seq <= (
             SELECT seq FROM policy_decisions WHERE zone_id = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)`,
          [zoneId, this.#keepPerZone],
        );
      }
    } catch (error) {
      this.#dropped += batch.length;
      this.#onError(error);
    }
  }
}

/** The zone's newest `limit` recorded decisions, newest first. */
export async function recentDecisions(db: Queryable, zoneId: string, limit: number): Promise<RecordedDecision[]> {
  const { rows } = await db.query<{ decision_id: string; decided_at: Date; policy_set_version: string; questions: RecordedQuestion[] }>(
    `SELECT decision_id, decided_at, policy_set_version, questions FROM policy_decisions
     WHERE zone_id = $1 ORDER BY seq DESC LIMIT $2`,
    [zoneId, limit],
  );
  return rows.map((row) => ({
    decisionId: row.decision_id,
    decidedAt: row.decided_at,
    policySetVersion: Number(row.policy_set_version),
    questions: row.questions,
  }));
}
