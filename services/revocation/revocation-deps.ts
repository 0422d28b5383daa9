import type { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import type { Store } from "../store/store.js";
import type { OutboxRelay } from "./outbox-relay.js";

/** What the revocation handlers need. */
export interface RevocationDeps {
  readonly store: Store;
  readonly relay: OutboxRelay;
  readonly audit: PublishingAuditSink;
  readonly now: () => number;
}
