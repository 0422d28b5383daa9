import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type {
  ApproveRequest,
  GetApprovalRequest,
  GetApprovalResponseSchema,
  ListApprovalsRequest,
  ListApprovalsResponseSchema,
  RejectRequest,
} from "../../gen/caracal/admin/v1/admin_service_pb.js";
import type { ApprovalSchema } from "../../gen/caracal/approval/v1/approval_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import { approvalMessage, approvalStateName } from "../approval/approval-message.js";
import { decideApproval, findApproval, listApprovals as listRows, stateOf } from "../approval/approval-rows.js";
import { notFound, requireZone } from "../directory/require-zone.js";
import { requestContextKey } from "../server/request-context.js";
import { boundedText, invalidArgument, pageSize, timeIdPageToken } from "../validation.js";
import type { AdminDeps } from "./admin-deps.js";

/** `ListApprovals`: the zone's approvals, newest first, optionally in one state. */
export async function listApprovalsPage(deps: AdminDeps, request: ListApprovalsRequest): Promise<MessageInitShape<typeof ListApprovalsResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const after = timeIdPageToken.decode(request.pageToken);
  const state = request.state === 0 ? undefined : approvalStateName(request.state);
  if (request.state !== 0 && !state) throw invalidArgument("state", "is not a known state");
  const now = deps.now();
  const rows = await listRows(deps.store, zone.id, { ...(state ? { state } : {}), now: new Date(now), ...(after ? { after } : {}), limit: limit + 1 });
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    approvals: page.map((r) => approvalMessage(zone.slug, r, now)),
    nextPageToken: rows.length > limit && last ? timeIdPageToken.encode(last.createdAt, last.approvalId) : "",
  };
}

/** `GetApproval`. */
export async function getApproval(deps: AdminDeps, request: GetApprovalRequest): Promise<MessageInitShape<typeof GetApprovalResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const record = await findApproval(deps.store, zone.id, request.approvalId);
  if (!record) throw notFound(`approval ${request.approvalId}`);
  return { approval: approvalMessage(zone.slug, record, deps.now()) };
}

/**
 * `Approve` and `Reject`: an operator decides a pending approval, with a
 * reason. The proto demands `admin.approve` (`admin.write` alone cannot
 * decide), and the application that asked can never decide its own challenge.
 */
export async function decide(
  deps: AdminDeps,
  request: ApproveRequest | RejectRequest,
  ctx: HandlerContext,
  approve: boolean,
): Promise<{ approval: MessageInitShape<typeof ApprovalSchema> }> {
  const zone = await requireZone(deps.store, request.zone);
  if (request.reason.trim() === "") throw invalidArgument("reason", "is required");
  const reason = boundedText(request.reason, "reason", 500);
  const operator = ctx.values.get(verifiedMandateKey);
  const record = await findApproval(deps.store, zone.id, request.approvalId);
  if (!record) throw notFound(`approval ${request.approvalId}`);
  if (operator && operator.zone === zone.slug && operator.client_id === record.clientId) {
    throw caracalError(Code.PermissionDenied, Reason.APPROVAL_SELF_APPROVAL, `${record.clientId} asked for this approval and cannot decide it`);
  }
  const now = deps.now();
  const result = await decideApproval(deps.store, zone.id, record.approvalId, { approve, by: operator?.client_id ?? "", reason, at: new Date(now) });
  if (!result) throw notFound(`approval ${request.approvalId}`);
  if (!result.decided) {
    const state = stateOf(result.record, now);
    const reasonCode = state === "expired" ? Reason.APPROVAL_EXPIRED : state === "used" ? Reason.APPROVAL_ALREADY_USED : Reason.APPROVAL_ALREADY_DECIDED;
    throw caracalError(Code.FailedPrecondition, reasonCode, `approval ${record.approvalId} is ${state}, not pending`);
  }
  const accepted = deps.audit.record({
    zone: zone.slug,
    type: EventType.APPROVAL,
    actor: operator?.client_id ?? "",
    action: approve ? "approval approved" : "approval rejected",
    approvalId: record.approvalId,
    clientId: record.clientId,
    sessionId: record.sessionId,
    resources: [...record.resources],
    scopes: [...record.scopes],
    policySetVersion: BigInt(record.policySetVersion),
    determiningPolicies: [...record.determiningPolicies],
    attributes: { reason },
    requestId: ctx.values.get(requestContextKey)?.requestId ?? "",
  });
  if (!accepted) ctx.values.get(requestContextKey)?.log.error({ approval_id: record.approvalId }, "approval decision not audited: audit queue full");
  return { approval: approvalMessage(zone.slug, result.record, now) };
}
