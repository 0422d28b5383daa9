import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Option, type Command } from "commander";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { ApprovalState } from "../../gen/caracal/approval/v1/approval_pb.js";
import { DecisionSchema, PolicySetVersionSchema, type Outcome, type PolicySetVersion } from "../../gen/caracal/policy/v1/policy_pb.js";
import {
  ActivatePolicySetResponseSchema,
  CreatePolicySetVersionResponseSchema,
  EvaluateResponseSchema,
  GetActivePolicySetResponseSchema,
  ListPolicySetVersionsResponseSchema,
  SimulatePolicySetResponseSchema,
  ValidatePolicySetResponseSchema,
} from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { reasonOf } from "../../interceptors/caracal-error.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { CommandFailed } from "./command-failed.js";
import { collectLabel, parsePageSize, parseSeconds } from "./option-parsers.js";
import { formatEnum, formatList, formatTime, printFields, printJson, printNote, printTable } from "./output.js";
import { parseExpectedVersion, parseRecent, parseTime, parseVersion, problemLine, readPolicyFiles, readSimulation, type SimulationOptions } from "./policy-inputs.js";
import { UsageError } from "./usage-error.js";


/** The action of the session question (`caracal:sts` is its resource). */
const START_SESSION = "StartSession";

const NO_ACTIVE_SET = "none (no active set: grants alone decide)";

/**
 * Registers `caracal policy validate|create|list|show|simulate|activate|eval`.
 * Policies are `.cedar` files (a directory means its `*.cedar` files), each
 * sent as a document named after the file, with an optional `--schema` file.
 *
 * @example
 * caracal policy validate policies/ --schema policies/schema.cedarschema --zone acme
 * caracal policy create policies/ --zone acme -m "deny writes at night"
 * caracal policy simulate policies/ --zone acme --recent 1000
 * caracal policy activate 4 --zone acme --reason "reviewed in #123"
 */
export function registerPolicyCommands(program: Command): void {
  const policy = program.command("policy").description("manage Cedar policy sets: validate, version, simulate, activate, evaluate");

  policyCommand(policy, "validate <paths...>", "check .cedar files (and a schema) for syntax and schema errors; stores nothing")
    .option("--schema <file>", "Cedar schema (JSON or Cedar syntax) to check the policies against")
    .action((paths: string[], options: { zone: string; schema?: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const files = await readPolicyFiles(paths, options.schema);
        const client = await cli.policy();
        const response = await client.validatePolicySet({ zone: options.zone, source: files.source });
        if (cli.json) printJson(ValidatePolicySetResponseSchema, response);
        else if (response.valid) process.stdout.write(`valid: ${describeFiles(files.source.documents.length, options.schema)}\n`);
        else process.stdout.write(response.problems.map((p) => `${problemLine(p, files)}\n`).join(""));
        if (!response.valid) throw new CommandFailed(`policy set is invalid: ${plural(response.problems.length, "problem")}`);
      }),
    );

  policyCommand(policy, "create <paths...>", "store .cedar files as the zone's next version (not active until activated)")
    .option("--schema <file>", "Cedar schema (JSON or Cedar syntax) to check the policies against")
    .requiredOption("-m, --message <text>", "what changed and why")
    .action((paths: string[], options: { zone: string; schema?: string; message: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const files = await readPolicyFiles(paths, options.schema);
        const client = await cli.policy();
        const response = await client.createPolicySetVersion({ zone: options.zone, source: files.source, message: options.message }).catch(async (error: unknown) => {
          // The refusal names the first problem only; list them all, as validate does.
          if (reasonOf(error) === Reason.POLICY_INVALID) {
            const { problems } = await client.validatePolicySet({ zone: options.zone, source: files.source }).catch(() => ({ problems: [] }));
            for (const p of problems) printNote(problemLine(p, files));
          }
          throw error;
        });
        if (cli.json) printJson(CreatePolicySetVersionResponseSchema, response);
        else if (response.version) {
          printFields(versionFields(response.version));
          printNote(`not active yet; to activate: caracal policy activate ${response.version.version} --zone ${options.zone} --reason <text>`);
        }
      }),
    );

  policyCommand(policy, "list", "list the zone's versions, newest first; * marks the active one")
    .addOption(new Option("--page-size <n>", "versions fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { zone: string; pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const client = await cli.policy();
        let activeVersion = 0n;
        const versions = await collectPages(async (pageToken) => {
          const page = await client.listPolicySetVersions({ zone: options.zone, pageToken, pageSize: options.pageSize });
          activeVersion = page.activeVersion;
          return { items: page.versions, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListPolicySetVersionsResponseSchema, create(ListPolicySetVersionsResponseSchema, { versions, activeVersion }));
        else
          printTable(
            ["ACTIVE", "VERSION", "CREATED", "AUTHOR", "HASH", "MESSAGE"],
            versions.map((v) => [v.version === activeVersion ? "*" : "", String(v.version), formatTime(v.createdAt), v.author, v.contentHash.slice(0, 12), v.message || "-"]),
            `no policy set versions in zone ${options.zone}`,
          );
      }),
    );

  policyCommand(policy, "show", "show a version with its source; the active one when none is named (--json: GetActivePolicySetResponse, or PolicySetVersion for a given version)")
    .argument("[version]", "a stored version (default: the active one)", parseVersion)
    .action((wanted: bigint | undefined, options: { zone: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const client = await cli.policy();
        const active = await client.getActivePolicySet({ zone: options.zone });
        if (wanted === undefined && cli.json) return printJson(GetActivePolicySetResponseSchema, active);
        if (wanted === undefined && !active.version) return printNote(`no active policy set in zone ${options.zone}: grants alone decide`);
        const isActive = wanted === undefined || wanted === active.version?.version;
        const shown = isActive ? active.version : (await client.getPolicySetVersion({ zone: options.zone, version: wanted })).version;
        if (!shown) throw new CommandFailed(`zone ${options.zone} has no policy set version ${wanted}`);
        if (cli.json) return printJson(PolicySetVersionSchema, shown);
        const activation: [string, string][] = isActive
          ? [["activated", formatTime(active.activatedAt)], ["activated by", active.activatedBy], ["reason", active.reason]]
          : [["active", "no"]];
        printFields([...versionFields(shown), ...activation]);
        printSource(shown);
      }),
    );

  policyCommand(policy, "simulate [paths...]", "replay requests against the active version and a candidate, and report every decision that would change")
    .option("--version <n>", "the candidate: a stored version (instead of .cedar paths)", parseVersion)
    .option("--schema <file>", "Cedar schema for a candidate given as .cedar paths")
    .option("--recent <n>", "replay the zone's last n recorded decisions (1 to 10000)", parseRecent)
    .option("--requests <file>", "replay a JSON array of AuthorizationRequest objects (protobuf JSON)")
    .option("--verbose", "also list each changed request, not only the groups")
    .action((paths: string[], options: SimulateOptions, command: Command) =>
      runClientAction(command, async (cli) => {
        const simulation = await readSimulation(paths, options);
        const response = await (await cli.policy()).simulatePolicySet({ zone: options.zone, ...simulation });
        if (cli.json) return printJson(SimulatePolicySetResponseSchema, response);
        if (response.evaluated === 0) printNote("nothing to replay: the zone has no recorded decisions yet");
        printFields([
          ["baseline", versionName(response.baselineVersion, NO_ACTIVE_SET)],
          ["candidate", versionName(response.candidateVersion, "the given files (not stored)")],
          ["evaluated", String(response.evaluated)],
          ["changed", String(response.changed)],
        ]);
        if (response.groups.length > 0) process.stdout.write("\n");
        printTable(
          ["CLIENT", "RESOURCE", "SCOPE", "CHANGE", "POLICIES", "COUNT"],
          response.groups.map((g) => [g.clientId, g.resource, g.scope, change(g.before, g.after), change(g.beforePolicies, g.afterPolicies), String(g.count)]),
          "no decision would change",
        );
        if (!options.verbose || response.changes.length === 0) return;
        process.stdout.write("\n");
        printTable(
          ["TIME", "CLIENT", "RESOURCE", "SCOPE", "CHANGE", "POLICIES", "DECISION ID"],
          response.changes.map(({ request: r, before, after, sourceDecisionId }) => [
            formatTime(r?.time),
            r?.clientId ?? "-",
            r?.resource ?? "-",
            r?.scope ?? "-",
            change(before?.decision, after?.decision),
            change(before?.determiningPolicies, after?.determiningPolicies),
            sourceDecisionId || "-",
          ]),
          "",
        );
        if (response.changesTruncated) printNote(`showing ${response.changes.length} of ${response.changed} changes; the groups count every one`);
      }),
    );

  policyCommand(policy, "activate", "make a stored version the active one (an older one rolls back)")
    .argument("<version>", "the stored version to activate", parseVersion)
    .option("--expect <version>", "the version you believe is active now, or none (default: read it first)", parseExpectedVersion)
    .requiredOption("--reason <text>", "why (recorded and audited)")
    .action((target: bigint, options: { zone: string; expect?: bigint; reason: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        // Read-then-switch is still race-free: the server refuses the switch if
        // the active version moved in between (REASON_VERSION_CONFLICT).
        const client = await cli.policy();
        const expected = options.expect ?? (await client.getActivePolicySet({ zone: options.zone })).version?.version ?? 0n;
        printNote(`switching zone ${options.zone} from ${versionName(expected)} to version ${target}`);
        const response = await client.activatePolicySet({ zone: options.zone, version: target, expectedCurrentVersion: expected, reason: options.reason });
        if (cli.json) printJson(ActivatePolicySetResponseSchema, response);
        else printFields([["active version", String(response.activeVersion)], ["previous version", versionName(response.previousVersion)]]);
      }),
    );

  policyCommand(policy, "eval", "ask the policy set one question and print the decision and why")
    .requiredOption("--client <id>", "the application (Cedar principal)")
    .option("--resource <id>", `the resource (not needed for --scope ${START_SESSION})`)
    .requiredOption("--scope <scope>", `the scope (Cedar action), or ${START_SESSION} for the session question`)
    .option("--label <key=value>", "an application label; repeat for more", collectLabel)
    .option("--session-label <key=value>", "a session label; repeat for more", collectLabel)
    .option("--session-age <seconds>", "time since the session started", parseSeconds)
    .option("--chain <ids>", "the delegation chain, comma-separated client ids, outermost first")
    .option("--approved <kind>", "present an approved step-up approval of this kind")
    .option("--at <time>", "the request time, ISO 8601 (default: now)", parseTime)
    .option("--version <n>", "evaluate a stored version instead of the active one", parseVersion)
    .action((options: EvalOptions, command: Command) =>
      runClientAction(command, async (cli) => {
        if (options.resource === undefined && options.scope !== START_SESSION) throw new UsageError(`--resource is required unless --scope is ${START_SESSION}`);
        const response = await (await cli.policy()).evaluate({
          zone: options.zone,
          version: options.version ?? 0n,
          request: {
            clientId: options.client,
            applicationLabels: options.label ?? {},
            resource: options.resource ?? "",
            scope: options.scope,
            session: { labels: options.sessionLabel ?? {}, age: { seconds: BigInt(options.sessionAge ?? 0) } },
            delegationChain: (options.chain ?? "").split(",").filter((id) => id !== "").map((clientId) => ({ clientId })),
            ...(options.approved === undefined ? {} : { approvalState: ApprovalState.APPROVED, approvalKind: options.approved }),
            ...(options.at === undefined ? {} : { time: timestampFromDate(options.at) }),
          },
        });
        if (cli.json) printJson(EvaluateResponseSchema, response);
        else printFields([...outcomeFields(response.outcome), ["version", versionName(response.policySetVersion, NO_ACTIVE_SET)]]);
      }),
    );
}

interface SimulateOptions extends SimulationOptions {
  zone: string;
  verbose?: boolean;
}

interface EvalOptions {
  zone: string;
  client: string;
  resource?: string;
  scope: string;
  label?: Record<string, string>;
  sessionLabel?: Record<string, string>;
  sessionAge?: number;
  chain?: string;
  approved?: string;
  at?: Date;
  version?: bigint;
}

/** A policy subcommand: the client options plus `--zone`. */
function policyCommand(parent: Command, nameAndArgs: string, description: string): Command {
  return clientCommand(parent, nameAndArgs, description).requiredOption("--zone <zone>", "the zone");
}

function versionFields(v: PolicySetVersion): [string, string][] {
  return [
    ["version", String(v.version)],
    ["content hash", v.contentHash],
    ["author", v.author],
    ["created", formatTime(v.createdAt)],
    ["message", v.message || "-"],
  ];
}

function outcomeFields(outcome: Outcome | undefined): [string, string][] {
  if (!outcome) return [["decision", "-"]];
  return [
    ["decision", formatEnum(DecisionSchema, outcome.decision)],
    ...(outcome.stepUpKind === "" ? [] : [["step-up kind", outcome.stepUpKind] as [string, string]]),
    ["policies", formatList(outcome.determiningPolicies)],
    ["reasons", outcome.reasons.join("; ") || "-"],
    ["errors", outcome.errors.join("; ") || "-"],
  ];
}

/** Each document after a `==> name <==` header, as `head` prints several files; the schema last. */
function printSource(version: PolicySetVersion): void {
  const parts = (version.source?.documents ?? []).map((d) => [d.name, d.text] as const);
  if (version.source?.schema) parts.push(["schema", version.source.schema]);
  for (const [name, text] of parts) process.stdout.write(`\n==> ${name} <==\n${text.endsWith("\n") ? text : `${text}\n`}`);
}

function change(before: number | readonly string[] | undefined, after: number | readonly string[] | undefined): string {
  const show = (side: number | readonly string[] | undefined) =>
    side === undefined ? "-" : typeof side === "number" ? formatEnum(DecisionSchema, side) : formatList(side);
  return `${show(before)} → ${show(after)}`;
}

function versionName(version: bigint, none = "none"): string {
  return version === 0n ? none : `version ${version}`;
}

function describeFiles(count: number, schema: string | undefined): string {
  return `${plural(count, "policy file")}${schema === undefined ? "" : `, checked against ${schema}`}`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
