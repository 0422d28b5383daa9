import { randomUUID } from "node:crypto";
import { Code, type ConnectError, type HandlerContext } from "@connectrpc/connect";
import { AuditDecision } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError, type OutgoingDetail } from "../../interceptors/caracal-error.js";
import { traceIdOf } from "../../interceptors/edge-verifier.js";
import type { Logger } from "pino";
import type { AuditEventInit, AuditSink } from "../../interceptors/audit-sink.js";
import { requestContextKey } from "../server/request-context.js";

/**
 * One STS decision: it has an id from the start, gathers what the audit event
 * needs as the handler learns it, and ends exactly once, allowed or refused,
 * with the event recorded. The id goes back to the caller either way.
 */
export class Decision {
  /** The decision id, returned to the caller and recorded in the ledger. */
  readonly id = randomUUID();
  readonly #audit: AuditSink;
  readonly #event: AuditEventInit;
  /** This call's logger, when the server set one. */
  readonly log: Logger | undefined;

  constructor(audit: AuditSink, ctx: HandlerContext, event: AuditEventInit) {
    this.#audit = audit;
    const request = ctx.values.get(requestContextKey);
    this.log = request?.log;
    // Callers join their own logs to the ledger with this, allowed or refused.
    ctx.responseHeader.set("x-caracal-decision-id", this.id);
    this.#event = {
      ...event,
      decisionId: this.id,
      requestId: request?.requestId ?? "",
      traceId: traceIdOf(ctx.requestHeader.get("traceparent")),
    };
  }

  /** Adds what the handler has learned (application, session, resources…). */
  note(facts: Partial<AuditEventInit>): void {
    Object.assign(this.#event, facts);
  }

  /**
   * Records the refusal and returns the error to throw, carrying the reason
   * and this decision's id. A refusal that cannot be queued is still refused.
   * `recorded` is the audit decision: a deny, or a hold for a step-up.
   */
  refuse(
    code: Code,
    reason: Reason,
    message: string,
    metadata?: Record<string, string>,
    recorded: AuditDecision.DENY | AuditDecision.STEP_UP = AuditDecision.DENY,
    details?: readonly OutgoingDetail[],
  ): ConnectError {
    if (this.#event.zone === "") {
      // Nothing names a zone (an unparseable token): there is no ledger to file it in.
      this.log?.warn({ decision_id: this.id, reason: Reason[reason] }, "refusal outside any zone");
    } else {
      // The error's metadata (the resource, the missing scope…) says what was refused.
      this.#audit.record({ ...this.#event, decision: recorded, reason, attributes: { ...this.#event.attributes, ...metadata } });
    }
    return caracalError(code, reason, message, { decisionId: this.id, metadata, ...(details ? { details } : {}) });
  }

  /**
   * Records the allow. When the audit queue is full the mandate is not
   * issued: nothing is handed out that the ledger would not know of.
   */
  allow(facts: Partial<AuditEventInit> = {}): void {
    if (!this.#audit.record({ ...this.#event, ...facts, decision: AuditDecision.ALLOW })) {
      throw caracalError(Code.Unavailable, Reason.AUDIT_UNAVAILABLE, "audit queue is full; try again", { decisionId: this.id });
    }
  }
}
