import { Code, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalChallengeSchema, ApprovalState, type ApprovalChallenge } from "../gen/caracal/approval/v1/approval_pb.js";
import { AuditDecision, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { PolicyService } from "../gen/caracal/policy/v1/policy_service_pb.js";
import { errorDetailOf, reasonOf } from "../interceptors/caracal-error.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { createStepUpZone } from "./support/step-up-zone.js";
import { refusal } from "./support/refusal.js";

describe.each(HARNESS_KINDS)("step-up approvals on %s", (kind) => {
  let caracal: CaracalHarness;
  let policy: Client<typeof PolicyService>;
  let zones = 0;

  beforeAll(async () => {
    caracal = await startHarness(kind);
    policy = caracal.serviceClient(PolicyService);
  }, 120_000);

  afterAll(async () => {
    await caracal?.stop();
  });

  /** A zone whose policy holds invoices.write for approval, and an agent's session in it. */
  async function heldZone(): Promise<{ zone: string; session: string }> {
    const zone = `appr-${kind.startsWith("postgres") ? "pg" : "lite"}-${++zones}`;
    const clientSecret = await createStepUpZone(caracal, zone);
    const started = await caracal.sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: clientSecret } });
    return { zone, session: started.sessionMandate };
  }

  const write = (session: string, proof?: ApprovalChallenge, scopes = ["invoices.write"]) =>
    caracal.sts.exchange({
      subjectToken: session,
      resources: ["billing-api"],
      scopes,
      ...(proof ? { approval: { challengeId: proof.challengeId, challengeSecret: proof.challengeSecret } } : {}),
    });

  async function challenge(session: string): Promise<ApprovalChallenge> {
    const held = await refusal(write(session));
    expect(held.code).toBe(Code.FailedPrecondition);
    expect(reasonOf(held)).toBe(Reason.INTERACTION_REQUIRED);
    const [detail] = held.findDetails(ApprovalChallengeSchema);
    expect(detail).toMatchObject({ stepUpKind: "approval" });
    expect(detail!.challengeSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    return detail!;
  }

  it("holds the request, tells a waiting agent when an operator approves, and issues the mandate once", async () => {
    const { zone, session } = await heldZone();
    const proof = await challenge(session);
    const pending = await caracal.admin.getApproval({ zone, approvalId: proof.challengeId });
    expect(pending.approval).toMatchObject({ clientId: "agent", resources: ["billing-api"], scopes: ["invoices.write"], state: ApprovalState.PENDING, determiningPolicies: ["write-approved"] });
    // The secret is shown once and stored only as a hash.
    expect(await caracal.textDump()).not.toContain(proof.challengeSecret);

    const states: ApprovalState[] = [];
    const waiting = (async () => {
      for await (const update of caracal.sts.waitApproval({ zone, challengeId: proof.challengeId, challengeSecret: proof.challengeSecret })) states.push(update.state);
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await refusal(write(session, proof))).findDetails(ApprovalChallengeSchema)).toEqual([]);
    expect(reasonOf(await refusal(write(session, proof)))).toBe(Reason.APPROVAL_PENDING);

    const approved = await caracal.admin.approve({ zone, approvalId: proof.challengeId, reason: "ticket FIN-42" });
    expect(approved.approval).toMatchObject({ state: ApprovalState.APPROVED, decidedBy: caracal.profile.client_id, decisionReason: "ticket FIN-42" });
    await waiting;
    expect(states).toEqual([ApprovalState.PENDING, ApprovalState.APPROVED]);

    const issued = await write(session, proof);
    expect(issued.info?.scopes).toEqual(["invoices.write"]);
    // Single use.
    expect(reasonOf(await refusal(write(session, proof)))).toBe(Reason.APPROVAL_ALREADY_USED);
    expect((await caracal.admin.getApproval({ zone, approvalId: proof.challengeId })).approval?.state).toBe(ApprovalState.USED);

    await caracal.audit.settle();
    const events = caracal.audit.events.filter((e) => e.zone === zone && e.event.approvalId === proof.challengeId).map((e) => e.event);
    expect(events.map((e) => [EventType[e.type], AuditDecision[e.decision]])).toEqual(
      expect.arrayContaining([
        ["EXCHANGE", "STEP_UP"],
        ["APPROVAL", "UNSPECIFIED"],
        ["EXCHANGE", "ALLOW"],
      ]),
    );
    expect(events.find((e) => e.type === EventType.APPROVAL)).toMatchObject({ actor: caracal.profile.client_id, action: "approval approved", attributes: { reason: "ticket FIN-42" } });
  });

  it("refuses a rejected approval, and lists approvals by state", async () => {
    const { zone, session } = await heldZone();
    const proof = await challenge(session);
    expect((await caracal.admin.listApprovals({ zone, state: ApprovalState.PENDING })).approvals.map((a) => a.approvalId)).toEqual([proof.challengeId]);
    await caracal.admin.reject({ zone, approvalId: proof.challengeId, reason: "not today" });
    expect(reasonOf(await refusal(write(session, proof)))).toBe(Reason.APPROVAL_REJECTED);
    expect((await caracal.admin.listApprovals({ zone, state: ApprovalState.PENDING })).approvals).toEqual([]);
    const twice = await refusal(caracal.admin.approve({ zone, approvalId: proof.challengeId, reason: "changed my mind" }));
    expect(twice.code).toBe(Code.FailedPrecondition);
    expect(reasonOf(twice)).toBe(Reason.APPROVAL_ALREADY_DECIDED);
  });

  it("refuses a redemption for other scopes as a binding mismatch", async () => {
    const { zone, session } = await heldZone();
    const proof = await challenge(session);
    await caracal.admin.approve({ zone, approvalId: proof.challengeId, reason: "ok" });
    const other = await refusal(write(session, proof, ["invoices.write", "invoices.read"]));
    expect(other.code).toBe(Code.PermissionDenied);
    expect(reasonOf(other)).toBe(Reason.APPROVAL_BINDING_MISMATCH);
    // The exact request still redeems it.
    await write(session, proof);
  });

  it("lets an approval lapse after 30 minutes", async () => {
    const { zone, session } = await heldZone();
    const proof = await challenge(session);
    await caracal.admin.approve({ zone, approvalId: proof.challengeId, reason: "ok" });
    caracal.clock.advance(31 * 60);
    expect(reasonOf(await refusal(write(session, proof)))).toBe(Reason.APPROVAL_EXPIRED);
    const late = await refusal(caracal.admin.reject({ zone, approvalId: proof.challengeId, reason: "too late" }));
    expect(reasonOf(late)).toBe(Reason.APPROVAL_EXPIRED);
  });

  it("cools a challenge down after five failed redemptions", async () => {
    const { zone, session } = await heldZone();
    const proof = await challenge(session);
    await caracal.admin.approve({ zone, approvalId: proof.challengeId, reason: "ok" });
    for (let i = 0; i < 5; i++) {
      expect(reasonOf(await refusal(write(session, { ...proof, challengeSecret: `wrong-${i}` })))).toBe(Reason.APPROVAL_INVALID);
    }
    const cooling = await refusal(write(session, proof));
    expect(cooling.code).toBe(Code.ResourceExhausted);
    expect(reasonOf(cooling)).toBe(Reason.APPROVAL_COOLDOWN);
  });

  it("needs admin.approve to decide (admin.write is not enough), and never lets an application approve its own challenge", async () => {
    const zone = caracal.profile.zone;
    // Payments in the admin zone are held for approval; everything else stays as it was.
    await caracal.admin.createResource({ zone, resourceId: "payments", scopes: [{ name: "pay" }] });
    const { clientSecret: opsSecret } = await caracal.admin.createApplication({ zone, clientId: "ops-bot" });
    await caracal.admin.createGrant({ zone, clientId: "ops-bot", resourceId: "payments", scopes: ["pay"] });
    await caracal.admin.createGrant({ zone, clientId: "ops-bot", resourceId: "caracal-admin", scopes: ["admin.approve", "admin.read"] });
    const { clientSecret: writerSecret } = await caracal.admin.createApplication({ zone, clientId: "writer" });
    await caracal.admin.createGrant({ zone, clientId: "writer", resourceId: "caracal-admin", scopes: ["admin.write", "admin.read"] });
    const text = [
      '@id("everything-else") permit(principal, action, resource) unless { action == Action::"pay" };',
      '@id("pay-approved") @step_up("approval") permit(principal, action == Action::"pay", resource);',
    ].join("\n");
    const { version } = await policy.createPolicySetVersion({ zone, source: { documents: [{ name: "admin.cedar", text }] }, message: "" });
    const { activeVersion } = await policy.listPolicySetVersions({ zone });
    await policy.activatePolicySet({ zone, version: version!.version, expectedCurrentVersion: activeVersion, reason: "hold payments" });

    const ops = await caracal.sts.startSession({ zone, clientId: "ops-bot", credential: { case: "clientSecret", value: opsSecret } });
    const held = await refusal(caracal.sts.exchange({ subjectToken: ops.sessionMandate, resources: ["payments"], scopes: ["pay"] }));
    const [proof] = held.findDetails(ApprovalChallengeSchema);

    const opsAdmin = caracal.adminClient(caracal.mandateSource(zone, "ops-bot", { clientSecret: opsSecret }));
    const self = await refusal(opsAdmin.approve({ zone, approvalId: proof!.challengeId, reason: "trust me" }));
    expect(self.code).toBe(Code.PermissionDenied);
    expect(reasonOf(self)).toBe(Reason.APPROVAL_SELF_APPROVAL);

    const writer = caracal.adminClient(caracal.mandateSource(zone, "writer", { clientSecret: writerSecret }));
    const notAllowed = await refusal(writer.approve({ zone, approvalId: proof!.challengeId, reason: "I can write" }));
    expect(notAllowed.code).toBe(Code.PermissionDenied);
    expect(reasonOf(notAllowed)).toBe(Reason.SCOPE_NOT_GRANTED);
    expect(errorDetailOf(notAllowed)?.metadata.scope).toBe("admin.approve");

    // Another operator may.
    await caracal.admin.approve({ zone, approvalId: proof!.challengeId, reason: "second pair of eyes" });
  });
});
