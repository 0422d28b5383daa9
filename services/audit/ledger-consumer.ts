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
  const ledger = new AuditLedger(store, auditKey);
  return bus.consumeBatch(
    "audit",
    LEDGER_DURABLE,
    async (messages) => {
      const result = await ledger.append(messages);
      // Not an AuditEvent at all: storing it would make no record; keeping it would block the ledger.
      if (result.undecodable > 0) log.error({ undecodable: result.undecodable }, "audit messages that are not AuditEvents were skipped");
    },
    { maxMessages: 500, maxWaitMs: 20 },
  );
}
