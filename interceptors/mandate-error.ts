import { Code } from "@connectrpc/connect";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import type { MandateClaims } from "./mandate-claims.js";

/**
 * Why a mandate was refused. The reason is stable and goes on the wire; the
 * code is the gRPC status it maps to; the message is for logs and people.
 */
export class MandateError extends Error {
  override readonly name = "MandateError";
  /** The stable reason. */
  readonly reason: Reason;
  /** Extra non-secret facts, e.g. the missing `scope`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The audit decision id, once the refusal was recorded. */
  readonly decisionId: string | undefined;
  /**
   * The mandate's claims when its signature verified and it was refused for
   * its authority (audience, scope, zone, use): who was refused, for the record.
   */
  readonly verifiedClaims: MandateClaims | undefined;

  constructor(
    reason: Reason,
    message: string,
    metadata: Record<string, string> = {},
    options?: ErrorOptions & { decisionId?: string; verifiedClaims?: MandateClaims },
  ) {
    super(message, options);
    this.reason = reason;
    this.metadata = metadata;
    this.decisionId = options?.decisionId;
    this.verifiedClaims = options?.verifiedClaims;
  }

  /** The same refusal, carrying the decision id it was recorded under. */
  withDecision(decisionId: string): MandateError {
    return new MandateError(this.reason, this.message, { ...this.metadata }, { cause: this.cause, decisionId, verifiedClaims: this.verifiedClaims });
  }

  /** The same refusal of a mandate whose signature verified, with its claims. */
  withClaims(verifiedClaims: MandateClaims): MandateError {
    return new MandateError(this.reason, this.message, { ...this.metadata }, { cause: this.cause, decisionId: this.decisionId, verifiedClaims });
  }

  /** The gRPC status code this refusal is answered with. */
  get code(): Code {
    return codeForReason(this.reason);
  }
}

/**
 * The gRPC code for each refusal reason: problems with the credential itself
 * are UNAUTHENTICATED, a good credential without the right authority is
 * PERMISSION_DENIED, a verifier that cannot decide is UNAVAILABLE.
 */
export function codeForReason(reason: Reason): Code {
  switch (reason) {
    case Reason.WRONG_AUDIENCE:
    case Reason.WRONG_ZONE:
    case Reason.SCOPE_MISSING:
    case Reason.SCOPE_NOT_GRANTED:
    case Reason.METHOD_NOT_DECLARED:
    case Reason.POLICY_DENIED:
    case Reason.POLICY_EVAL_FAILED:
    case Reason.DELEGATION_TOO_DEEP:
      return Code.PermissionDenied;
    case Reason.REVOCATION_STALE:
    case Reason.AUDIT_UNAVAILABLE:
    case Reason.KEYS_UNAVAILABLE:
    case Reason.STORE_UNAVAILABLE:
    case Reason.SHUTTING_DOWN:
      return Code.Unavailable;
    case Reason.INTERACTION_REQUIRED:
      return Code.FailedPrecondition;
    case Reason.MANDATE_MISSING:
    case Reason.MANDATE_MALFORMED:
    case Reason.MANDATE_TOO_LARGE:
    case Reason.MANDATE_ALGORITHM_REJECTED:
    case Reason.MANDATE_TYPE_REJECTED:
    case Reason.MANDATE_HEADER_REJECTED:
    case Reason.MANDATE_UNKNOWN_KEY:
    case Reason.MANDATE_BAD_SIGNATURE:
    case Reason.MANDATE_EXPIRED:
    case Reason.MANDATE_NOT_YET_VALID:
    case Reason.MANDATE_KEY_RETIRED:
    case Reason.MANDATE_WRONG_ISSUER:
    case Reason.MANDATE_WRONG_USE:
    case Reason.MANDATE_REVOKED:
      return Code.Unauthenticated;
    default:
      // A reason that is not about a mandate has no business here.
      return Code.Internal;
  }
}
