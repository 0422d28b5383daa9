import { randomBytes, randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { ApprovalChallengeSchema } from "../../gen/caracal/approval/v1/approval_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { ApprovalProof } from "../../gen/caracal/sts/v1/token_service_pb.js";
import type { KeyEncryptionKey } from "../keys/key-encryption-key.js";
import type { Store } from "../store/store.js";
import { findApproval, insertApproval, recordFailedRedemption, stateOf, type ApprovalRecord } from "./approval-rows.js";

/** What an approval is bound to: exactly the request it was raised for. */
export interface ApprovalBinding {
  readonly clientId: string;
  readonly sessionId: string;
  readonly resources: readonly string[];
  readonly scopes: readonly string[];
  readonly policySetVersion: number;
}

/** A refusal of a redemption, for the STS to record and send. */
export interface RedemptionRefusal {
  readonly code: Code;
  readonly reason: Reason;
  readonly message: string;
}

/** What step-up approvals need. */
export interface StepUpDeps {
  readonly store: Store;
  readonly kek: KeyEncryptionKey;
  /** How long a challenge stays open to decide and redeem; default 30 min. */
  readonly approvalTtlMs: number;
}

/**
 * Raises a pending approval for a held request and returns the challenge for
 * the caller: its id and a 256-bit secret, shown this once; only a keyed hash
 * of the secret is stored.
 */
export async function raiseApproval(
  deps: StepUpDeps,
  zoneId: string,
  binding: ApprovalBinding,
  held: { stepUpKind: string; determiningPolicies: readonly string[] },
  nowMs: number,
): Promise<MessageInitShape<typeof ApprovalChallengeSchema>> {
  const approvalId = randomUUID();
  const secret = randomBytes(32).toString("base64url");
  const expiresAt = nowMs + deps.approvalTtlMs;
  await insertApproval(deps.store, {
    approvalId,
    zoneId,
    clientId: binding.clientId,
    sessionId: binding.sessionId,
    resources: [...binding.resources],
    scopes: [...binding.scopes],
    policySetVersion: binding.policySetVersion,
    determiningPolicies: [...held.determiningPolicies],
    stepUpKind: held.stepUpKind,
    secretHash: deps.kek.hashSecret(secret),
    createdAt: new Date(nowMs),
    expiresAt: new Date(expiresAt),
  });
  return { challengeId: approvalId, challengeSecret: secret, expiresAt: timestampFromMs(expiresAt), stepUpKind: held.stepUpKind };
}

/**
 * Checks an approval proof presented with `Exchange`, without spending it:
 * the approval must exist, the secret match, the request be exactly the one
 * it was raised for, and an operator must have approved it, in time. A wrong
 * secret or a different request counts as a failed redemption; the fifth puts
 * the challenge in a cooldown. The caller spends the approval only once
 * policy has allowed the request (`spendApproval`).
 */
export async function checkApprovalProof(
  deps: StepUpDeps,
  zoneId: string,
  proof: ApprovalProof,
  binding: ApprovalBinding,
  nowMs: number,
): Promise<ApprovalRecord | RedemptionRefusal> {
  const invalid: RedemptionRefusal = { code: Code.PermissionDenied, reason: Reason.APPROVAL_INVALID, message: "the challenge id or secret is wrong" };
  if (proof.challengeSecret === "" || proof.challengeSecret.length > 128) return invalid;
  const record = await findApproval(deps.store, zoneId, proof.challengeId);
  if (!record) return invalid;
  if (record.cooldownUntil && record.cooldownUntil.getTime() > nowMs) {
    return { code: Code.ResourceExhausted, reason: Reason.APPROVAL_COOLDOWN, message: "too many failed redemptions; the challenge is cooling down" };
  }
  if (!deps.kek.secretMatches(proof.challengeSecret, record.secretHash)) {
    await recordFailedRedemption(deps.store, zoneId, record.approvalId, new Date(nowMs));
    return invalid;
  }
  const mismatch = bindingMismatch(record, binding);
  if (mismatch) {
    await recordFailedRedemption(deps.store, zoneId, record.approvalId, new Date(nowMs));
    return { code: Code.PermissionDenied, reason: Reason.APPROVAL_BINDING_MISMATCH, message: `the approval was granted for another request: ${mismatch} differ` };
  }
  switch (stateOf(record, nowMs)) {
    case "approved":
      return record;
    case "pending":
      return { code: Code.FailedPrecondition, reason: Reason.APPROVAL_PENDING, message: "the approval is still pending" };
    case "rejected":
      return { code: Code.PermissionDenied, reason: Reason.APPROVAL_REJECTED, message: "an operator rejected the approval" };
    case "expired":
      return { code: Code.FailedPrecondition, reason: Reason.APPROVAL_EXPIRED, message: "the approval expired" };
    case "used":
      return { code: Code.FailedPrecondition, reason: Reason.APPROVAL_ALREADY_USED, message: "the approval was already redeemed; approvals are single-use" };
  }
}

function bindingMismatch(record: ApprovalRecord, binding: ApprovalBinding): string | undefined {
  const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
  if (record.clientId !== binding.clientId) return "application";
  if (record.sessionId !== binding.sessionId) return "session";
  if (!sameSet(record.resources, binding.resources)) return "resources";
  if (!sameSet(record.scopes, binding.scopes)) return "scopes";
  if (record.policySetVersion !== binding.policySetVersion) return "policy-set versions";
  return undefined;
}
