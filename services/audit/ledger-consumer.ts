import type { Logger } from "pino";
import type { Bus, Subscription } from "../bus/bus.js";
import type { Store } from "../store/store.js";
import { AuditLedger } from "./audit-ledger.js";

/** The durable consumer the ledger reads `CARACAL_AUDIT` with; replicas share it. */
export const LEDGER_DURABLE = "ledger";

/**
 * Runs the ledger: a durable consumer of the audit topic that appends each
 * batch in one transaction and acknowledges it only after the commit. When
 * the store fails, nothing is acknowledged and the batch comes back (after a
 * growing delay), so a database outage delays the ledger and loses nothing.
 * Producers never wait for any of this: they publish and go on.
 */
export function startLedger(bus: Bus, store: Store, auditKey: Buffer, log: Logger): Promise<Subscription> {
  const reasons = new Map<string, number>();
  const ledger = new AuditLedger(store, auditKey, (reason) => reasons.set(reason, (reasons.get(reason) ?? 0) + 1));
  return bus.consumeBatch(
    "audit",
    LEDGER_DURABLE,
    async (messages) => {
      reasons.clear();
      const result = await ledger.append(messages);
      // Not an AuditEvent the ledger can store: keeping it would block the ledger, so it is reported and skipped.
      if (result.undecodable > 0) log.error({ undecodable: result.undecodable, reasons: Object.fromEntries(reasons) }, "audit messages the ledger cannot store were skipped");
    },
    { maxMessages: 500, maxWaitMs: 20 },
  );
}
