import type { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import type { Bus } from "../bus/bus.js";
import type { Store } from "../store/store.js";
import type { OutboxRelay } from "./outbox-relay.js";

/** What the revocation handlers need. */
export interface RevocationDeps {
  readonly store: Store;
  readonly relay: OutboxRelay;
  readonly audit: PublishingAuditSink;
  readonly now: () => number;
  /** For `Watch`: live revocations as the relay publishes them. */
  readonly bus: Bus;
  /** Aborted when the server drains: long-lived `Watch` streams end. */
  readonly draining: AbortSignal;
}
