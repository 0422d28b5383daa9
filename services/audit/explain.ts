import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { AuditDecision, EventType, type AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { ExplainRequest, ExplainResponseSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { invalidArgument, zoneSlug } from "../validation.js";
import type { AuditDeps } from "./audit-deps.js";
import { ledgerUuid } from "./ledger-columns.js";
import { decodeEvent, RECORD_COLUMNS, recordMessage, type AuditRow } from "./audit-rows.js";

const MAX_STEPS = 50;

/**
 * `AuditService.Explain`: the whole story of one request, from the ledger.
 * The request's own records (by request id or decision id) come with the
 * issuance of every mandate they name (the STS decision that issued it, with
 * its policy-set version and determining policies), oldest first, each with a
 * sentence, and a one-line summary of the final decision, e.g.
 * "denied: scope invoices.write not in mandate".
 */
export async function explain(deps: AuditDeps, request: ExplainRequest): Promise<MessageInitShape<typeof ExplainResponseSchema>> {
  const zone = zoneSlug(request.zone);
  let column: "request_id" | "decision_id";
  switch (request.id.case) {
    case "requestId":
      column = "request_id";
      break;
    case "decisionId":
      column = "decision_id";
      break;
    default:
      throw invalidArgument("id", "give request_id or decision_id");
  }
  const id = request.id.value;
  if (id === "" || id.length > 128) throw invalidArgument(column, "is required, at most 128 characters");
  const { rows: anchors } = await deps.store.query<AuditRow>(
    `SELECT ${RECORD_COLUMNS} FROM audit_events WHERE zone = $1 AND ${column} = $2 ORDER BY time, seq LIMIT ${MAX_STEPS}`,
    [zone, column === "decision_id" ? ledgerUuid(id) : id],
  );
  if (anchors.length === 0) throw caracalError(Code.NotFound, Reason.NOT_FOUND, `the ledger holds nothing for ${column} ${id} in zone ${zone}`);

  // The issuance of each mandate presented (edge calls name the jti they were shown).
  const anchorEvents = anchors.map(decodeEvent);
  const presented = [...new Set(anchorEvents.filter((e) => e.type === EventType.EDGE_CALL && e.mandateId !== "").map((e) => e.mandateId))];
  const { rows: issuances } = presented.length
    ? await deps.store.query<AuditRow>(
        `SELECT ${RECORD_COLUMNS} FROM audit_events
         WHERE zone = $1 AND mandate_id = ANY($2::uuid[]) AND type = ${EventType.EXCHANGE} AND decision = ${AuditDecision.ALLOW}
         ORDER BY time, seq LIMIT ${MAX_STEPS}`,
        [zone, presented.map(ledgerUuid)],
      )
    : { rows: [] };
  // The operator's decision on any approval an issuance or the request itself redeemed.
  const issuanceEvents = issuances.map(decodeEvent);
  const approvalIds = [...new Set([...issuanceEvents, ...anchorEvents].map((e) => e.approvalId).filter((id) => id !== ""))];
  const { rows: decisions } = approvalIds.length
    ? await deps.store.query<AuditRow>(
        `SELECT ${RECORD_COLUMNS} FROM audit_events WHERE zone = $1 AND approval_id = ANY($2::uuid[]) AND type = ${EventType.APPROVAL}
         ORDER BY time, seq LIMIT ${MAX_STEPS}`,
        [zone, approvalIds.map(ledgerUuid)],
      )
    : { rows: [] };
  // Each row decoded once; a row found twice (an anchor that is also an issuance) appears once.
  const seen = new Set<string>();
  const steps = [
    ...anchors.map((row, i) => ({ row, event: anchorEvents[i]! })),
    ...issuances.map((row, i) => ({ row, event: issuanceEvents[i]! })),
    ...decisions.map((row) => ({ row, event: decodeEvent(row) })),
  ]
    .filter(({ row }) => !seen.has(row.seq) && seen.add(row.seq))
    .sort((a, b) => micros(a.event) - micros(b.event) || Number(a.row.seq) - Number(b.row.seq));

  const final = anchorEvents.filter((e) => e.decision !== AuditDecision.UNSPECIFIED).at(-1) ?? anchorEvents.at(-1)!;
  return {
    summary: summaryOf(final),
    decision: final.decision,
    steps: steps.map(({ row, event }) => ({ record: recordMessage(row, event), sentence: sentenceOf(event) })),
  };
}

function micros(event: AuditEvent): number {
  return event.time ? Number(event.time.seconds) * 1e6 + Math.floor(event.time.nanos / 1e3) : 0;
}

/** The final decision in a line: "denied: scope invoices.write not in mandate". */
export function summaryOf(event: AuditEvent): string {
  switch (event.decision) {
    case AuditDecision.DENY:
      return `denied: ${reasonPhrase(event)}`;
    case AuditDecision.STEP_UP:
      return `held for approval: ${reasonPhrase(event)}`;
    case AuditDecision.ALLOW:
      return `allowed: ${sentenceOf(event)}`;
    default:
      return sentenceOf(event);
  }
}

/** One recorded step in a sentence. */
export function sentenceOf(event: AuditEvent): string {
  const who = event.clientId || "an unidentified caller";
  const what = `${list(event.scopes)} on ${list(event.resources)}`;
  const policy =
    event.policySetVersion === 0n
      ? "no active policy set: grants alone decided"
      : `policy set version ${event.policySetVersion}${event.determiningPolicies.length ? ` (${event.determiningPolicies.join(", ")})` : ""}`;
  switch (event.type) {
    case EventType.START_SESSION:
      return event.decision === AuditDecision.ALLOW
        ? `the STS started session ${event.sessionId} for ${who}; ${policy}`
        : `the STS refused ${who} a session: ${reasonPhrase(event)}`;
    case EventType.EXCHANGE:
      if (event.decision === AuditDecision.ALLOW) return `the STS issued ${who} mandate ${event.mandateId} for ${what}; ${policy}`;
      if (event.decision === AuditDecision.STEP_UP) return `the STS held ${who}'s request for ${what}: ${reasonPhrase(event)}`;
      return `the STS refused ${who} ${what}: ${reasonPhrase(event)}`;
    case EventType.EDGE_CALL: {
      const method = `${event.edgeService}/${event.edgeMethod}`;
      return event.decision === AuditDecision.ALLOW
        ? `${method} allowed ${who} with mandate ${event.mandateId}`
        : `${method} denied ${who}: ${reasonPhrase(event)}`;
    }
    case EventType.APPROVAL:
      return `${event.actor || "an operator"} ${event.action.replace("approval ", "") || "decided"} approval ${event.approvalId} of ${who}'s request for ${what}${
        event.attributes.reason ? `: "${event.attributes.reason}"` : ""
      }`;
    default:
      return `${event.actor || who} ${event.action || EventType[event.type]?.toLowerCase().replaceAll("_", " ") || "event"}`;
  }
}

/** Why an event was refused, from its reason and the facts recorded with it. */
function reasonPhrase(event: AuditEvent): string {
  const a = event.attributes;
  switch (event.reason) {
    case Reason.SCOPE_MISSING:
      return `scope ${a.scope ?? list(event.scopes)} not in mandate`;
    case Reason.SCOPE_NOT_GRANTED:
      return `scope ${a.scope ?? "?"} is not granted on ${a.resource ?? list(event.resources)}`;
    case Reason.POLICY_DENIED:
      return `policy set version ${event.policySetVersion} denies ${a.scope ?? list(event.scopes)} on ${a.resource ?? list(event.resources)}${
        event.determiningPolicies.length ? ` (forbidden by ${event.determiningPolicies.join(", ")})` : " (no policy permits it)"
      }`;
    case Reason.POLICY_EVAL_FAILED:
      return `policy set version ${event.policySetVersion} could not be evaluated, and failures deny`;
    case Reason.INTERACTION_REQUIRED:
      return `a "${a.step_up ?? "approval"}" approval is required (${event.determiningPolicies.join(", ") || "step-up policy"})`;
    case Reason.WRONG_AUDIENCE:
      return `the mandate is not for ${a.resource ?? list(event.resources)}`;
    case Reason.MANDATE_REVOKED:
      return "the mandate was revoked";
    case Reason.MANDATE_EXPIRED:
      return "the mandate had expired";
    case Reason.MANDATE_MISSING:
      return "no mandate was presented";
    default:
      return (Reason[event.reason] ?? "unknown reason").toLowerCase().replaceAll("_", " ");
  }
}

function list(items: readonly string[]): string {
  return items.length === 0 ? "-" : items.join(", ");
}
