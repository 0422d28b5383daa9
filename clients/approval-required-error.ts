import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, type Client } from "@connectrpc/connect";
import { ApprovalChallengeSchema, ApprovalState } from "../gen/caracal/approval/v1/approval_pb.js";
import type { ApprovalProofSchema, TokenService } from "../gen/caracal/sts/v1/token_service_pb.js";

/** Where a step-up approval stands, as {@link ApprovalRequiredError.state} reports it. */
export type ApprovalStateName = "pending" | "approved" | "rejected" | "expired" | "used";

/** A state in which an approval stays: once there, it never changes again. */
export type ApprovalDecision = Exclude<ApprovalStateName, "pending">;

/** The held `Exchange`, which a retry must repeat exactly. */
export interface HeldExchange {
  /** A TokenService client pointed at the STS; `waitForDecision` uses it. */
  readonly sts: Client<typeof TokenService>;
  /** The zone slug. */
  readonly zone: string;
  /** The resources the exchange asked for. */
  readonly resources: readonly string[];
  /** The scopes it asked for. */
  readonly scopes: readonly string[];
}

const STATE_NAMES: Partial<Record<ApprovalState, ApprovalStateName>> = {
  [ApprovalState.PENDING]: "pending",
  [ApprovalState.APPROVED]: "approved",
  [ApprovalState.REJECTED]: "rejected",
  [ApprovalState.EXPIRED]: "expired",
  [ApprovalState.USED]: "used",
};

/** Pause before re-opening a WaitApproval stream that ended undecided (the server drained). */
const REOPEN_DELAY_MS = 1_000;

/**
 * The STS held an `Exchange` until an operator approves it (a policy marked it
 * `@step_up`): the call failed with FAILED_PRECONDITION,
 * `REASON_INTERACTION_REQUIRED` and an `ApprovalChallenge` detail.
 *
 * The challenge secret stays inside the error: it is never part of the
 * message, `toJSON()` or the inspected object, and `cause` is the refusal with
 * the challenge detail removed. Only {@link approvalProof} hands it out, to
 * retry the very same exchange once approved.
 *
 * @example
 * try {
 *   await sts.exchange({ subjectToken, resources: ["billing-api"], scopes: ["invoices.write"] });
 * } catch (error) {
 *   const held = ApprovalRequiredError.from(error, { sts, zone, resources: ["billing-api"], scopes: ["invoices.write"] });
 *   if (!held) throw error;
 *   console.log(`waiting for an operator to approve ${held.challengeId}`);
 *   if ((await held.waitForDecision()) !== "approved") throw held;
 *   await sts.exchange({ subjectToken, resources: ["billing-api"], scopes: ["invoices.write"], approval: held.approvalProof() });
 * }
 */
export class ApprovalRequiredError extends Error {
  override readonly name = "ApprovalRequiredError";
  /** Stable code, for a `switch` over error codes. */
  readonly code = "ERR_APPROVAL_REQUIRED";
  /** The challenge id; also the approval's id that an operator approves (`caracal approvals approve <id>`). */
  readonly challengeId: string;
  /** When the challenge lapses if not decided and redeemed. */
  readonly expiresAt: Date;
  /** The kind of step-up the policy asked for, from `@step_up("…")`. */
  readonly stepUpKind: string;
  /** The zone slug. */
  readonly zone: string;
  /** The resources of the held exchange. */
  readonly resources: readonly string[];
  /** The scopes of the held exchange. */
  readonly scopes: readonly string[];
  readonly #secret: string;
  readonly #sts: Client<typeof TokenService>;
  #state: ApprovalStateName = "pending";

  private constructor(challenge: { challengeId: string; challengeSecret: string; expiresAt: Date; stepUpKind: string }, held: HeldExchange, cause: ConnectError) {
    super(
      `exchange for ${held.resources.join(",")} (${held.scopes.join(" ")}) needs a step-up approval (${challenge.stepUpKind || "unspecified"}); ` +
        `challenge ${challenge.challengeId} expires at ${isoOrDash(challenge.expiresAt)}`,
      { cause },
    );
    this.challengeId = challenge.challengeId;
    this.expiresAt = challenge.expiresAt;
    this.stepUpKind = challenge.stepUpKind;
    this.zone = held.zone;
    this.resources = [...held.resources];
    this.scopes = [...held.scopes];
    this.#secret = challenge.challengeSecret;
    this.#sts = held.sts;
  }

  /**
   * The error for a refusal carrying an `ApprovalChallenge`, or `undefined`
   * for any other error (so the caller rethrows it).
   */
  static from(error: unknown, held: HeldExchange): ApprovalRequiredError | undefined {
    if (!(error instanceof Error)) return undefined;
    const refusal = ConnectError.from(error);
    const [challenge] = refusal.findDetails(ApprovalChallengeSchema);
    if (!challenge || challenge.challengeId === "" || challenge.challengeSecret === "") return undefined;
    // The raw status details (a trailer the transport keeps) hold the secret too.
    const metadata = new Headers(refusal.metadata);
    metadata.delete("grpc-status-details-bin");
    const withoutSecret = new ConnectError(refusal.rawMessage, refusal.code, metadata);
    withoutSecret.details = refusal.details.filter((detail) => ("desc" in detail ? detail.desc.typeName : detail.type) !== ApprovalChallengeSchema.typeName);
    const expiresAt = challenge.expiresAt ? timestampDate(challenge.expiresAt) : new Date(Number.NaN);
    return new ApprovalRequiredError({ ...challenge, expiresAt }, held, withoutSecret);
  }

  /**
   * Where the approval stood when last seen: `pending` until
   * {@link waitForDecision} has learnt the decision.
   */
  get state(): ApprovalStateName {
    return this.#state;
  }

  /**
   * Waits (with `WaitApproval`, no busy-polling) until an operator decides or
   * the challenge lapses, and resolves to the final state. Rejects when
   * `signal` aborts or the STS refuses the wait.
   */
  async waitForDecision(signal?: AbortSignal): Promise<ApprovalDecision> {
    for (;;) {
      const stream = this.#sts.waitApproval({ zone: this.zone, challengeId: this.challengeId, challengeSecret: this.#secret }, { signal });
      for await (const update of stream) this.#state = STATE_NAMES[update.state] ?? this.#state;
      if (this.#state !== "pending") return this.#state;
      // The stream ended undecided: the server is draining. Ask again.
      signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, REOPEN_DELAY_MS));
    }
  }

  /** The proof that redeems the approval: pass it as `approval` when retrying the exact same `Exchange`. */
  approvalProof(): MessageInitShape<typeof ApprovalProofSchema> {
    return { challengeId: this.challengeId, challengeSecret: this.#secret };
  }

  /** What is safe to log: everything but the secret. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      challengeId: this.challengeId,
      expiresAt: isoOrDash(this.expiresAt),
      stepUpKind: this.stepUpKind,
      zone: this.zone,
      resources: this.resources,
      scopes: this.scopes,
      state: this.state,
    };
  }
}

function isoOrDash(date: Date): string {
  return Number.isNaN(date.getTime()) ? "-" : date.toISOString();
}
