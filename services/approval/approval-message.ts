import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ApprovalState, type ApprovalSchema } from "../../gen/caracal/approval/v1/approval_pb.js";
import { stateOf, type ApprovalRecord, type ApprovalStateName } from "./approval-rows.js";

const STATES: Record<ApprovalStateName, ApprovalState> = {
  pending: ApprovalState.PENDING,
  approved: ApprovalState.APPROVED,
  rejected: ApprovalState.REJECTED,
  expired: ApprovalState.EXPIRED,
  used: ApprovalState.USED,
};

/** An approval state as the API names it. */
export function approvalStateMessage(state: ApprovalStateName): ApprovalState {
  return STATES[state];
}

/** The state an API filter names, or undefined for "all". */
export function approvalStateName(state: ApprovalState): ApprovalStateName | undefined {
  return (Object.entries(STATES) as [ApprovalStateName, ApprovalState][]).find(([, value]) => value === state)?.[0];
}

/** An approval as the API shows it, its state as of `now`; never the secret's hash. */
export function approvalMessage(zone: string, record: ApprovalRecord, now: number): MessageInitShape<typeof ApprovalSchema> {
  return {
    approvalId: record.approvalId,
    zone,
    clientId: record.clientId,
    sessionId: record.sessionId,
    resources: [...record.resources],
    scopes: [...record.scopes],
    policySetVersion: BigInt(record.policySetVersion),
    determiningPolicies: [...record.determiningPolicies],
    stepUpKind: record.stepUpKind,
    state: STATES[stateOf(record, now)],
    createdAt: timestampFromDate(record.createdAt),
    expiresAt: timestampFromDate(record.expiresAt),
    decidedBy: record.decidedBy ?? "",
    ...(record.decidedAt ? { decidedAt: timestampFromDate(record.decidedAt) } : {}),
    decisionReason: record.decisionReason ?? "",
  };
}
