import { inspect } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalState, type Approval } from "../gen/caracal/approval/v1/approval_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { ApprovalRequiredError } from "../clients/approval-required-error.js";
import { MandateSource, type ApprovalOptions } from "../clients/mandate-source.js";
import { reasonOf } from "../interceptors/caracal-error.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { createStepUpZone } from "./support/step-up-zone.js";

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

describe("ApprovalRequiredError.from", () => {
  const held = { sts: undefined as never, zone: "z", resources: ["r"], scopes: ["s"] };

  it("returns undefined for a refusal without an approval challenge", () => {
    expect(ApprovalRequiredError.from(new ConnectError("no", Code.FailedPrecondition), held)).toBeUndefined();
    expect(ApprovalRequiredError.from(new TypeError("bug"), held)).toBeUndefined();
    expect(ApprovalRequiredError.from("a string", held)).toBeUndefined();
  });
});

describe.each(HARNESS_KINDS)("MandateSource with step-up approvals on %s", (kind) => {
  let caracal: CaracalHarness;
  let zones = 0;

  beforeAll(async () => {
    caracal = await startHarness(kind);
  }, 120_000);

  afterAll(async () => {
    await caracal?.stop();
  });

  /** A zone whose policy holds invoices.write for approval, and a MandateSource for its agent. */
  async function heldZone(approvals?: ApprovalOptions): Promise<{ zone: string; agent: MandateSource }> {
    const zone = `appr-client-${kind.startsWith("postgres") ? "pg" : "lite"}-${++zones}`;
    const clientSecret = await createStepUpZone(caracal, zone);
    const agent = new MandateSource({ sts: caracal.sts, zone, clientId: "agent", credential: { clientSecret }, now: caracal.clock.now, ...(approvals ? { approvals } : {}) });
    return { zone, agent };
  }

  /** The zone's one pending approval, once the agent's exchange has raised it. */
  async function pendingApproval(zone: string): Promise<Approval> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const { approvals } = await caracal.admin.listApprovals({ zone, state: ApprovalState.PENDING });
      if (approvals.length > 0) {
        expect(approvals).toHaveLength(1);
        return approvals[0]!;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no pending approval in zone ${zone}`);
  }

  it("throws ApprovalRequiredError with the challenge id, and never shows the secret", async () => {
    const { zone, agent } = await heldZone();
    const held = await failure(agent.mandateFor("billing-api", ["invoices.write"]));
    expect(held).toBeInstanceOf(ApprovalRequiredError);
    const error = held as ApprovalRequiredError;
    expect(error).toMatchObject({ code: "ERR_APPROVAL_REQUIRED", zone, resources: ["billing-api"], scopes: ["invoices.write"], stepUpKind: "approval", state: "pending" });
    expect(error.expiresAt.getTime()).toBe(caracal.clock.now() + 30 * 60 * 1000);
    expect((await caracal.admin.getApproval({ zone, approvalId: error.challengeId })).approval).toMatchObject({ clientId: "agent", state: ApprovalState.PENDING });
    expect(reasonOf(error.cause)).toBe(Reason.INTERACTION_REQUIRED);

    const secret = String(error.approvalProof().challengeSecret);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    for (const shown of [error.message, String(error), JSON.stringify(error), inspect(error, { depth: 10 })]) {
      expect(shown).toContain(error.challengeId);
      expect(shown).not.toContain(secret);
    }
    // The cause keeps the reason for logs, but neither the challenge detail nor the raw status trailer that encodes it.
    const cause = error.cause as ConnectError;
    expect(cause.details).toHaveLength(1);
    expect(cause.metadata.has("grpc-status-details-bin")).toBe(false);
    expect(inspect(cause, { depth: 10 })).not.toContain(secret);
    // Reads still go through without a step-up.
    await expect(agent.mandateFor("billing-api", ["invoices.read"])).resolves.toMatch(/^ey/);
  });

  it("lets a caller wait for the decision and retry the exchange with the proof", async () => {
    const { zone, agent } = await heldZone();
    const error = (await failure(agent.mandateFor("billing-api", ["invoices.write"]))) as ApprovalRequiredError;
    const decision = error.waitForDecision();
    await caracal.admin.approve({ zone, approvalId: error.challengeId, reason: "ticket FIN-42" });
    await expect(decision).resolves.toBe("approved");
    expect(error.state).toBe("approved");
    const issued = await caracal.sts.exchange({ subjectToken: await agent.sessionMandate(), resources: ["billing-api"], scopes: ["invoices.write"], approval: error.approvalProof() });
    expect(issued.info?.scopes).toEqual(["invoices.write"]);
  });

  it("waits when asked to, and returns the mandate once another operator approves", async () => {
    const { zone, agent } = await heldZone({ wait: true });
    const mandate = agent.mandateFor("billing-api", ["invoices.write"]);
    const pending = await pendingApproval(zone);
    expect(pending).toMatchObject({ clientId: "agent", scopes: ["invoices.write"] });
    await caracal.admin.approve({ zone, approvalId: pending.approvalId, reason: "ticket FIN-42" });
    const token = await mandate;
    expect(token).toMatch(/^ey/);
    expect((await caracal.admin.getApproval({ zone, approvalId: pending.approvalId })).approval?.state).toBe(ApprovalState.USED);
    // Cached like any other mandate: no second approval is raised.
    await expect(agent.mandateFor("billing-api", ["invoices.write"])).resolves.toBe(token);
    expect((await caracal.admin.listApprovals({ zone })).approvals).toHaveLength(1);
  });

  it("throws the ApprovalRequiredError in state rejected when the operator rejects", async () => {
    const { zone, agent } = await heldZone({ wait: true });
    const mandate = failure(agent.mandateFor("billing-api", ["invoices.write"]));
    const pending = await pendingApproval(zone);
    await caracal.admin.reject({ zone, approvalId: pending.approvalId, reason: "not today" });
    const error = await mandate;
    expect(error).toBeInstanceOf(ApprovalRequiredError);
    expect(error).toMatchObject({ challengeId: pending.approvalId, state: "rejected" });
  });

  it("stops waiting when the signal aborts", async () => {
    const stop = new AbortController();
    const { zone, agent } = await heldZone({ wait: true, signal: stop.signal });
    const mandate = failure(agent.mandateFor("billing-api", ["invoices.write"]));
    await pendingApproval(zone);
    stop.abort();
    expect(ConnectError.from(await mandate).code).toBe(Code.Canceled);
  });
});
