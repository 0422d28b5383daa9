import { create } from "@bufbuild/protobuf";
import { Option, type Command } from "commander";
import { ApprovalState, ApprovalStateSchema, type Approval } from "../../gen/caracal/approval/v1/approval_pb.js";
import { ApproveResponseSchema, ListApprovalsResponseSchema, RejectResponseSchema } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { parsePageSize } from "./option-parsers.js";
import { formatEnum, formatList, formatTime, printFields, printJson, printTable } from "./output.js";

const STATES: Record<string, ApprovalState> = {
  pending: ApprovalState.PENDING,
  approved: ApprovalState.APPROVED,
  rejected: ApprovalState.REJECTED,
  expired: ApprovalState.EXPIRED,
  used: ApprovalState.USED,
};

interface DecideOptions {
  zone: string;
  reason: string;
}

/**
 * Registers `caracal approvals list|approve|reject`: the operator's side of
 * step-up approvals, which an agent's held `Exchange` waits on. Deciding
 * needs the `admin.approve` scope, and an application never decides its own.
 *
 * @example
 * caracal approvals list --zone acme --state pending
 * caracal approvals approve 01J…Q --zone acme --reason "ticket FIN-42"
 * caracal approvals reject 01J…Q --zone acme --reason "not during the freeze"
 */
export function registerApprovalCommands(program: Command): void {
  const approvals = program.command("approvals").description("step-up approvals: list, approve or reject held requests");

  clientCommand(approvals, "list", "list a zone's approvals, newest first")
    .requiredOption("--zone <zone>", "the zone")
    .addOption(new Option("--state <state>", "only approvals in this state").choices(Object.keys(STATES)))
    .addOption(new Option("--page-size <n>", "approvals fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { zone: string; state?: string; pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const admin = await cli.admin();
        const state = options.state === undefined ? ApprovalState.UNSPECIFIED : STATES[options.state]!;
        const items = await collectPages(async (pageToken) => {
          const page = await admin.listApprovals({ zone: options.zone, state, pageToken, pageSize: options.pageSize });
          return { items: page.approvals, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListApprovalsResponseSchema, create(ListApprovalsResponseSchema, { approvals: items }));
        else
          printTable(
            ["ID", "STATE", "CLIENT", "SESSION", "RESOURCES", "SCOPES", "KIND", "POLICY VERSION", "CREATED", "EXPIRES", "DECIDED BY"],
            items.map((a) => [
              a.approvalId,
              formatEnum(ApprovalStateSchema, a.state),
              a.clientId,
              a.sessionId || "-",
              formatList(a.resources),
              formatList(a.scopes),
              a.stepUpKind || "-",
              String(a.policySetVersion),
              formatTime(a.createdAt),
              formatTime(a.expiresAt),
              a.decidedBy || "-",
            ]),
            options.state === undefined ? `no approvals in zone ${options.zone}` : `no ${options.state} approvals in zone ${options.zone}`,
          );
      }),
    );

  clientCommand(approvals, "approve <id>", "approve a pending step-up; the agent may then redeem it once")
    .requiredOption("--zone <zone>", "the zone")
    .requiredOption("--reason <text>", "why (recorded and audited, at most 500 characters)")
    .action((approvalId: string, options: DecideOptions, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).approve({ zone: options.zone, approvalId, reason: options.reason });
        if (cli.json) printJson(ApproveResponseSchema, response);
        else if (response.approval) printFields(approvalFields(response.approval));
      }),
    );

  clientCommand(approvals, "reject <id>", "reject a pending step-up; the agent's request stays refused")
    .requiredOption("--zone <zone>", "the zone")
    .requiredOption("--reason <text>", "why (recorded and audited, at most 500 characters)")
    .action((approvalId: string, options: DecideOptions, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).reject({ zone: options.zone, approvalId, reason: options.reason });
        if (cli.json) printJson(RejectResponseSchema, response);
        else if (response.approval) printFields(approvalFields(response.approval));
      }),
    );
}

function approvalFields(approval: Approval): [string, string][] {
  return [
    ["approval", approval.approvalId],
    ["zone", approval.zone],
    ["state", formatEnum(ApprovalStateSchema, approval.state)],
    ["client", approval.clientId],
    ["session", approval.sessionId || "-"],
    ["resources", formatList(approval.resources)],
    ["scopes", formatList(approval.scopes)],
    ["kind", approval.stepUpKind || "-"],
    ["policy version", String(approval.policySetVersion)],
    ["policies", formatList(approval.determiningPolicies)],
    ["created", formatTime(approval.createdAt)],
    ["expires", formatTime(approval.expiresAt)],
    ["decided by", approval.decidedBy || "-"],
    ["decided", formatTime(approval.decidedAt)],
    ["reason", approval.decisionReason || "-"],
  ];
}
