import type { Store } from "../store/store.js";

/** What the audit handlers need. */
export interface AuditDeps {
  readonly store: Store;
  /** The audit key the chain's HMACs are made with. */
  readonly auditKey: Buffer;
  /** Aborted when the server drains: long-lived `Tail` and `Export` streams end. */
  readonly draining: AbortSignal;
  /** How often `Tail` and a following `Export` look for new rows; default 200 ms. */
  readonly pollMs?: number;
}
