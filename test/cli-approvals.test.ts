import { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalChallengeSchema, ApprovalState } from "../gen/caracal/approval/v1/approval_pb.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { runCli, type CliRun as Run } from "./support/cli-run.js";
import { createStepUpZone } from "./support/step-up-zone.js";

describe.each(HARNESS_KINDS)("caracal approvals against a running server on %s", (kind) => {
  let harness: CaracalHarness;
  let zones = 0;

  beforeAll(async () => {
    harness = await startHarness(kind);
  }, 120_000);

  afterAll(async () => {
    await harness?.stop();
  });

  /** Runs `caracal <args>` in-process with the harness's admin profile, capturing its output; no run may print the admin secret. */
  async function caracal(args: readonly string[]): Promise<Run> {
    return runCli([...args, "--profile", harness.profilePath], { secret: harness.profile.client_secret });
  }

  /** A zone holding invoices.write for approval, with one pending approval raised by its agent. */
  async function pendingApproval(): Promise<{ zone: string; approvalId: string }> {
    const zone = `appr-cli-${++zones}`;
    const clientSecret = await createStepUpZone(harness, zone);
    const session = await harness.sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: clientSecret } });
    const held = await harness.sts.exchange({ subjectToken: session.sessionMandate, resources: ["billing-api"], scopes: ["invoices.write"] }).then(
      () => expect.fail("the exchange should be held"),
      (error: unknown) => ConnectError.from(error),
    );
    const [challenge] = held.findDetails(ApprovalChallengeSchema);
    return { zone, approvalId: challenge!.challengeId };
  }

  it("lists a pending approval as a table and as JSON", async () => {
    const { zone, approvalId } = await pendingApproval();
    const table = await caracal(["approvals", "list", "--zone", zone, "--state", "pending"]);
    expect(table.code).toBe(0);
    const [header, row, ...rest] = table.stdout.trimEnd().split("\n");
    expect(header?.split(/\s{2,}/)).toEqual(["ID", "STATE", "CLIENT", "SESSION", "RESOURCES", "SCOPES", "KIND", "POLICY VERSION", "CREATED", "EXPIRES", "DECIDED BY"]);
    expect(row?.split(/\s{2,}/)).toEqual([approvalId, "pending", "agent", expect.any(String), "billing-api", "invoices.write", "approval", "1", expect.stringMatching(/Z$/), expect.stringMatching(/Z$/), "-"]);
    expect(rest).toEqual([]);

    const json = await caracal(["approvals", "list", "--zone", zone, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ approvals: [{ approvalId, state: "APPROVAL_STATE_PENDING", clientId: "agent" }] });

    const none = await caracal(["approvals", "list", "--zone", zone, "--state", "approved"]);
    expect(none).toEqual({ code: 0, stdout: "", stderr: `no approved approvals in zone ${zone}\n` });
  });

  it("approves with a reason, and refuses to decide the same approval twice", async () => {
    const { zone, approvalId } = await pendingApproval();
    const approved = await caracal(["approvals", "approve", approvalId, "--zone", zone, "--reason", "ticket FIN-42"]);
    expect(approved.code).toBe(0);
    expect(approved.stdout).toMatch(/^state:\s+approved$/m);
    expect(approved.stdout).toMatch(new RegExp(`^decided by:\\s+${harness.profile.client_id}$`, "m"));
    expect(approved.stdout).toMatch(/^reason:\s+ticket FIN-42$/m);
    expect((await harness.admin.getApproval({ zone, approvalId })).approval?.state).toBe(ApprovalState.APPROVED);

    const again = await caracal(["approvals", "approve", approvalId, "--zone", zone, "--reason", "once more"]);
    expect(again.code).toBe(1);
    // A decision is final.
    expect(again.stderr).toBe(`caracal: failed_precondition REASON_APPROVAL_ALREADY_DECIDED: approval ${approvalId} is approved, not pending\n`);
  });

  it("rejects with a reason", async () => {
    const { zone, approvalId } = await pendingApproval();
    const rejected = await caracal(["approvals", "reject", approvalId, "--zone", zone, "--reason", "not today", "--json"]);
    expect(rejected.code).toBe(0);
    expect(JSON.parse(rejected.stdout)).toMatchObject({ approval: { approvalId, state: "APPROVAL_STATE_REJECTED", decisionReason: "not today" } });
    const again = await caracal(["approvals", "approve", approvalId, "--zone", zone, "--reason", "ok then"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`caracal: failed_precondition REASON_APPROVAL_ALREADY_DECIDED: approval ${approvalId} is rejected, not pending\n`);
  });

  it("exits 2 without a reason or with an unknown state, before calling the server", async () => {
    const { zone, approvalId } = await pendingApproval();
    const noReason = await caracal(["approvals", "approve", approvalId, "--zone", zone]);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain("--reason");
    expect((await caracal(["approvals", "list", "--zone", zone, "--state", "maybe"])).code).toBe(2);
    expect((await harness.admin.getApproval({ zone, approvalId })).approval?.state).toBe(ApprovalState.PENDING);
  });
});
