import type { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import type { DirectoryCache } from "../directory/directory-cache.js";
import type { RevocationView } from "../../interceptors/revocation-view.js";
import type { VerifiedMandateCache } from "../../interceptors/verified-mandate-cache.js";
import type { KeyEncryptionKey } from "../keys/key-encryption-key.js";
import type { ZoneKeyRing } from "../keys/zone-key-ring.js";
import type { ActivePolicySets } from "../policy/active-policy-sets.js";
import type { DecisionRecorder } from "../policy/decision-recorder.js";
import type { Store } from "../store/store.js";

/** What the STS handlers need; one instance per server. */
export interface StsDeps {
  readonly store: Store;
  readonly directory: DirectoryCache;
  readonly keys: ZoneKeyRing;
  readonly kek: KeyEncryptionKey;
  readonly audit: PublishingAuditSink;
  /** Revocations, fed from the bus: Exchange refuses revoked sessions without asking the store. */
  readonly revocations: RevocationView;
  /** Session mandates already verified, so repeated exchanges skip the signature check. */
  readonly verifiedSessions: VerifiedMandateCache;
  /** Each zone's active policy set, consulted after the grant checks. */
  readonly policies: ActivePolicySets;
  /** Where the questions put to policy are kept for `SimulatePolicySet`. */
  readonly decisions: DecisionRecorder;
  /** How long a step-up challenge stays open to decide and redeem. */
  readonly approvalTtlMs: number;
  /** The clock, ms since the epoch. Injected so tests can freeze it. */
  readonly now: () => number;
}
