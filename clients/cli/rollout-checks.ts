/**
 * The four requests `caracal validate-rollout` makes against a deployment,
 * and what each must show: the outcome at the probe's edge, a trail in the
 * audit ledger, and an explanation of the final decision with its reason.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { ApprovalChallengeSchema } from "../../gen/caracal/approval/v1/approval_pb.js";
import { AuditDecision, EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { AuditService, ExplainResponse } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { ProbeService } from "../../gen/caracal/probe/v1/probe_service_pb.js";
import type { RevocationService } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import type { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { reasonOf } from "../../interceptors/caracal-error.js";

/** The clients a rollout check uses, all on the deployment under test. */
export interface RolloutClients {
  readonly sts: Client<typeof TokenService>;
  readonly admin: Client<typeof AdminService>;
  readonly audit: Client<typeof AuditService>;
  readonly revocation: Client<typeof RevocationService>;
  readonly probe: Client<typeof ProbeService>;
}

/** The throwaway zone and its probe application. */
export interface RolloutZone {
  readonly zone: string;
  readonly clientId: string;
  readonly secret: string;
}

/** One check's result, a row of the table. */
export interface RolloutResult {
  readonly check: string;
  readonly expected: string;
  readonly got: string;
  /** Records the ledger holds for the request, or a failure. */
  readonly audit: string;
  /** The explanation's summary, or a failure. */
  readonly explain: string;
  readonly pass: boolean;
}

/** How long the ledger may take to hold a request's trail. */
const LEDGER_WAIT_MS = 15_000;

/** The rollout's policy set: sessions, the ordinary probe call, and the sensitive one behind a step-up. */
export const ROLLOUT_POLICY = [
  '@id("rollout-sessions") permit(principal, action == Action::"StartSession", resource);',
  '@id("rollout-call") permit(principal, action == Action::"probe.call", resource == Resource::"caracal-probe");',
  '@id("rollout-write") @step_up("approval") permit(principal, action == Action::"probe.write", resource == Resource::"caracal-probe");',
].join("\n");

/** Runs the four checks in order; each stands on its own, so one failure does not hide the others. */
export async function runRolloutChecks(clients: RolloutClients, setup: RolloutZone): Promise<RolloutResult[]> {
  const results: RolloutResult[] = [];
  for (const check of [successCheck, deniedCheck, revokedCheck, stepUpCheck]) {
    try {
      results.push(await check(clients, setup));
    } catch (error) {
      results.push({ check: check.label, expected: "-", got: `error: ${describe(error)}`, audit: "-", explain: "-", pass: false });
    }
  }
  return results;
}

type Check = ((clients: RolloutClients, setup: RolloutZone) => Promise<RolloutResult>) & { label: string };

function check(label: string, run: (clients: RolloutClients, setup: RolloutZone) => Promise<RolloutResult>): Check {
  return Object.assign(run, { label });
}

const successCheck = check("successful request", async (c, s) => {
  const mandate = await mandateFor(c, s, ["probe.call"]);
  const requestId = randomUUID();
  const got = await outcome(() => c.probe.probe({ note: "rollout" }, { headers: headersFor(mandate, requestId) }));
  return judged(c, s, "successful request", "allowed", got, requestId, AuditDecision.ALLOW, "allowed:");
});

const deniedCheck = check("denied request", async (c, s) => {
  // A mandate for probe.call presented where probe.write is required.
  const mandate = await mandateFor(c, s, ["probe.call"]);
  const requestId = randomUUID();
  const got = await outcome(() => c.probe.probeSensitive({ note: "rollout" }, { headers: headersFor(mandate, requestId) }));
  return judged(c, s, "denied request", "PERMISSION_DENIED REASON_SCOPE_MISSING", got, requestId, AuditDecision.DENY, "denied: scope probe.write not in mandate");
});

const revokedCheck = check("revoked-session request", async (c, s) => {
  const session = await c.sts.startSession({ zone: s.zone, clientId: s.clientId, credential: { case: "clientSecret", value: s.secret } });
  const { mandate } = await c.sts.exchange({ subjectToken: session.sessionMandate, resources: ["caracal-probe"], scopes: ["probe.call"] });
  await c.revocation.revoke({ zone: s.zone, reason: "validate-rollout", target: { target: { case: "sessionId", value: session.info!.sessionId } } });
  // Revocations reach the edge within milliseconds; allow a few seconds on a loaded deployment.
  let requestId = randomUUID();
  let got = await outcome(() => c.probe.probe({ note: "rollout" }, { headers: headersFor(mandate, requestId) }));
  for (let waited = 0; got === "allowed" && waited < 5_000; waited += 100) {
    await sleep(100);
    requestId = randomUUID();
    got = await outcome(() => c.probe.probe({ note: "rollout" }, { headers: headersFor(mandate, requestId) }));
  }
  return judged(c, s, "revoked-session request", "UNAUTHENTICATED REASON_MANDATE_REVOKED", got, requestId, AuditDecision.DENY, "denied: the mandate was revoked");
});

const stepUpCheck = check("step-up request", async (c, s) => {
  const session = await c.sts.startSession({ zone: s.zone, clientId: s.clientId, credential: { case: "clientSecret", value: s.secret } });
  const ask = (approval?: { challengeId: string; challengeSecret: string }) =>
    c.sts.exchange({ subjectToken: session.sessionMandate, resources: ["caracal-probe"], scopes: ["probe.write"], ...(approval ? { approval } : {}) });
  let challenge;
  try {
    await ask();
    return failed("step-up request", "exchange was not held for approval");
  } catch (error) {
    const e = ConnectError.from(error);
    if (e.code !== Code.FailedPrecondition || reasonOf(e) !== Reason.INTERACTION_REQUIRED) throw error;
    challenge = e.findDetails(ApprovalChallengeSchema)[0];
  }
  if (!challenge) return failed("step-up request", "held without an approval challenge");
  // The operator running this command approves, as a human would.
  await c.admin.approve({ zone: s.zone, approvalId: challenge.challengeId, reason: "caracal validate-rollout" });
  const { mandate } = await ask({ challengeId: challenge.challengeId, challengeSecret: challenge.challengeSecret });
  const requestId = randomUUID();
  const got = await outcome(() => c.probe.probeSensitive({ note: "rollout" }, { headers: headersFor(mandate, requestId) }));
  // The story must include the operator's decision: who approved, when and why.
  return judged(c, s, "step-up request", "allowed after approval", got === "allowed" ? "allowed after approval" : got, requestId, AuditDecision.ALLOW, "allowed:", EventType.APPROVAL);
});

async function mandateFor(c: RolloutClients, s: RolloutZone, scopes: string[]): Promise<string> {
  const session = await c.sts.startSession({ zone: s.zone, clientId: s.clientId, credential: { case: "clientSecret", value: s.secret } });
  return (await c.sts.exchange({ subjectToken: session.sessionMandate, resources: ["caracal-probe"], scopes })).mandate;
}

function headersFor(mandate: string, requestId: string): Record<string, string> {
  return { authorization: `Bearer ${mandate}`, "x-request-id": requestId };
}

/** "allowed", or the refusal as `CODE REASON`. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "allowed";
  } catch (error) {
    const e = ConnectError.from(error);
    return `${Code[e.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase()} REASON_${Reason[reasonOf(e)]}`;
  }
}

/**
 * Compares the outcome, then waits for the ledger to hold the request's
 * trail (the edge decision and the issuance of its mandate) and checks that
 * `Explain` gives the final decision and its reason.
 */
async function judged(
  c: RolloutClients,
  s: RolloutZone,
  name: string,
  expected: string,
  got: string,
  requestId: string,
  decision: AuditDecision,
  summaryStart: string,
  alsoRecorded?: EventType,
): Promise<RolloutResult> {
  let explained: ExplainResponse | undefined;
  const deadline = Date.now() + LEDGER_WAIT_MS;
  while (Date.now() < deadline) {
    try {
      explained = await c.audit.explain({ zone: s.zone, id: { case: "requestId", value: requestId } });
      const types = new Set(explained.steps.map((step) => step.record?.event?.type));
      if (types.has(EventType.EDGE_CALL) && types.has(EventType.EXCHANGE) && (alsoRecorded === undefined || types.has(alsoRecorded))) break;
    } catch (error) {
      if (ConnectError.from(error).code !== Code.NotFound) throw error;
    }
    await sleep(100);
  }
  const steps = explained?.steps ?? [];
  const edge = steps.some((step) => step.record?.event?.type === EventType.EDGE_CALL);
  const issuance = steps.some((step) => step.record?.event?.type === EventType.EXCHANGE);
  const also = alsoRecorded === undefined || steps.some((step) => step.record?.event?.type === alsoRecorded);
  const audit = !edge ? "no trail" : !issuance ? "edge decision only, no issuance" : !also ? `no ${EventType[alsoRecorded!].toLowerCase()} record` : `${steps.length} records: ${alsoRecorded === undefined ? "issuance and edge decision" : "issuance, approval and edge decision"}`;
  const explainOk = explained !== undefined && explained.decision === decision && explained.summary.startsWith(summaryStart);
  return {
    check: name,
    expected,
    got,
    audit,
    explain: explained?.summary ?? "not found",
    pass: got === expected && edge && issuance && also && explainOk,
  };
}

function failed(check: string, why: string): RolloutResult {
  return { check, expected: "-", got: why, audit: "-", explain: "-", pass: false };
}

function describe(error: unknown): string {
  if (error instanceof ConnectError) return `${Code[error.code]} ${Reason[reasonOf(error)] ?? ""}: ${error.rawMessage}`;
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
