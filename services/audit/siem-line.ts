import { AuditDecision, EventType, type AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { summaryOf } from "./explain.js";

/** OCSF class per event type: what a SIEM files the record under. */
const CLASSES: Record<EventType, [number, string, string]> = {
  [EventType.UNSPECIFIED]: [0, "Base Event", "Other"],
  [EventType.START_SESSION]: [3002, "Authentication", "Logon"],
  [EventType.EXCHANGE]: [3003, "Authorize Session", "Assign Privileges"],
  [EventType.EDGE_CALL]: [6003, "API Activity", "Read"],
  [EventType.ADMIN_CHANGE]: [3004, "Entity Management", "Update"],
  [EventType.POLICY_CHANGE]: [3004, "Entity Management", "Update"],
  [EventType.REVOCATION]: [3004, "Entity Management", "Update"],
  [EventType.APPROVAL]: [3004, "Entity Management", "Update"],
};

/** `metadata.log_provider` of lines exported from the ledger (the `Export` RPC). */
export const LEDGER_PROVIDER = "caracal.ledger";

/** `metadata.log_provider` of lines exported from the audit stream by the durable consumer `durable`. */
export function streamProvider(durable: string): string {
  return `caracal.stream/${durable}`;
}

/** Where a SIEM line's event was read: what its `metadata` says besides the event. */
export interface SiemOrigin {
  /** The zone (`metadata.log_name`). */
  readonly zone: string;
  /**
   * `metadata.sequence`, the cursor to resume after: the zone's chain
   * sequence in the ledger, or the position in the audit stream.
   */
  readonly sequence: bigint | number;
  /** `metadata.log_provider`: {@link LEDGER_PROVIDER} or a {@link streamProvider}. */
  readonly provider: string;
  /** The ledger row's HMAC, hex (`unmapped.chain_hash`); events read from the stream are not chained yet. */
  readonly hash?: string;
}

/**
 * One audit event as a SIEM line: a JSON object with OCSF-like field names
 * (class, activity, status, actor, api, resources, policy, metadata), no
 * trailing newline. Caracal-specific facts go under `unmapped`.
 */
export function siemLine(event: AuditEvent, origin: SiemOrigin): string {
  const [classUid, className, activity] = CLASSES[event.type] ?? CLASSES[EventType.UNSPECIFIED];
  const ms = event.time ? Number(event.time.seconds) * 1000 + Math.floor(event.time.nanos / 1e6) : 0;
  const status =
    event.decision === AuditDecision.ALLOW ? "Success" : event.decision === AuditDecision.DENY ? "Failure" : event.decision === AuditDecision.STEP_UP ? "Other" : "Success";
  return JSON.stringify({
    time: ms,
    time_dt: new Date(ms).toISOString(),
    class_uid: classUid,
    class_name: className,
    category_name: classUid === 6003 ? "Application Activity" : "Identity & Access Management",
    activity_name: event.action || activity,
    type_name: EventType[event.type],
    status,
    status_code: event.reason === Reason.UNSPECIFIED ? undefined : `REASON_${Reason[event.reason]}`,
    status_detail: summaryOf(event),
    severity: status === "Failure" ? "Medium" : "Informational",
    actor: {
      app_uid: event.clientId || undefined,
      user: event.subject ? { uid: event.subject } : undefined,
      session: event.sessionId ? { uid: event.sessionId, root_uid: event.rootSessionId || undefined } : undefined,
      invoked_by: event.actor || undefined,
    },
    api: event.edgeService ? { service: { name: event.edgeService }, operation: event.edgeMethod } : undefined,
    resources: event.resources.map((uid) => ({ uid, type: "caracal.resource" })),
    policy: event.policySetVersion > 0n ? { version: String(event.policySetVersion), uid: event.determiningPolicies } : undefined,
    metadata: {
      uid: event.eventId,
      correlation_uid: event.requestId || undefined,
      log_name: origin.zone,
      log_provider: origin.provider,
      sequence: String(origin.sequence),
      product: { name: "Caracal", vendor_name: "Caracal" },
      version: "1.1.0",
    },
    unmapped: {
      decision_id: event.decisionId || undefined,
      trace_id: event.traceId || undefined,
      scopes: event.scopes.length ? event.scopes : undefined,
      mandate_id: event.mandateId || undefined,
      delegation_chain: event.delegationChain.length ? event.delegationChain.map((a) => a.clientId) : undefined,
      approval_id: event.approvalId || undefined,
      attributes: Object.keys(event.attributes).length ? event.attributes : undefined,
      chain_hash: origin.hash,
    },
  });
}
