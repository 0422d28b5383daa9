import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Option, type Command } from "commander";
import type { Revocation } from "../../gen/caracal/revocation/v1/revocation_pb.js";
import { ListRevocationsResponseSchema, RevokeResponseSchema, WatchResponseSchema, type RevokeRequest } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { parsePageSize } from "./option-parsers.js";
import { formatTime, printFields, printJson, printNote, printTable } from "./output.js";
import { UsageError } from "./usage-error.js";

interface RevokeOptions {
  zone: string;
  mandate?: string;
  session?: string;
  application?: string;
  issuedBefore?: string;
  reason: string;
}

/** Registers `caracal revoke` and `caracal revocations list|watch`. */
export function registerRevocationCommands(program: Command): void {
  clientCommand(program, "revoke", "revoke a mandate, a session (and all derived from it), an application, or everything before a time")
    .requiredOption("--zone <zone>", "the zone")
    .option("--mandate <jti>", "one mandate, by its jti")
    .option("--session <sid>", "a session and every mandate derived from it (root_sid cascade)")
    .option("--application <client-id>", "everything issued to an application until now")
    .option("--issued-before <time>", "zone-wide cut-off: everything issued before this ISO-8601 time")
    .requiredOption("--reason <text>", "why (recorded and audited, at most 500 characters)")
    .action((options: RevokeOptions, command: Command) =>
      runClientAction(command, async (cli) => {
        const target = targetOf(options);
        const response = await (await cli.revocation()).revoke({ zone: options.zone, reason: options.reason, target: { target } });
        if (cli.json) printJson(RevokeResponseSchema, response);
        else {
          if (!response.created) printNote("already revoked: nothing new was recorded");
          if (response.revocation) printFields(revocationFields(response.revocation));
        }
      }),
    );

  const revocations = program.command("revocations").description("revocations in force");
  clientCommand(revocations, "list", "list a zone's revocations still in force, newest first")
    .requiredOption("--zone <zone>", "the zone")
    .addOption(new Option("--page-size <n>", "revocations fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { zone: string; pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const client = await cli.revocation();
        const items = await collectPages(async (pageToken) => {
          const page = await client.listRevocations({ zone: options.zone, pageToken, pageSize: options.pageSize });
          return { items: page.revocations, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListRevocationsResponseSchema, create(ListRevocationsResponseSchema, { revocations: items }));
        else
          printTable(
            ["ID", "TARGET", "REASON", "BY", "CREATED", "EXPIRES"],
            items.map((r) => [r.revocationId, describeTarget(r), r.reason, r.revokedBy, formatTime(r.createdAt), formatTime(r.expiresAt)]),
            `no revocations in force in zone ${options.zone}`,
          );
      }),
    );

  clientCommand(revocations, "watch", "print revocations in force, then each new one as it happens (Ctrl-C to stop)")
    .requiredOption("--zone <zone>", "the zone")
    .action((options: { zone: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const client = await cli.revocation();
        const stop = new AbortController();
        const interrupt = () => stop.abort();
        process.once("SIGINT", interrupt);
        try {
          for await (const response of client.watch({ zone: options.zone }, { signal: stop.signal })) {
            const event = response.event;
            if (cli.json) {
              if (event.case !== "heartbeat") printJson(WatchResponseSchema, response);
            } else if (event.case === "revocation") {
              printTable(["ID", "TARGET", "REASON", "BY", "CREATED"], [[event.value.revocationId, describeTarget(event.value), event.value.reason, event.value.revokedBy, formatTime(event.value.createdAt)]], "");
            } else if (event.case === "snapshotComplete") {
              printNote(`${event.value.count} revocation(s) in force; watching for new ones`);
            }
          }
        } catch (error) {
          if (!stop.signal.aborted) throw error;
        } finally {
          process.off("SIGINT", interrupt);
        }
      }),
    );
}

function targetOf(options: RevokeOptions): NonNullable<RevokeRequest["target"]>["target"] {
  const given = [options.mandate, options.session, options.application, options.issuedBefore].filter((value) => value !== undefined);
  if (given.length !== 1) throw new UsageError("name exactly one of --mandate, --session, --application, --issued-before");
  if (options.mandate !== undefined) return { case: "mandateId", value: options.mandate };
  if (options.session !== undefined) return { case: "sessionId", value: options.session };
  if (options.application !== undefined) return { case: "clientId", value: options.application };
  const at = new Date(options.issuedBefore!);
  if (Number.isNaN(at.getTime())) throw new UsageError(`--issued-before: not an ISO-8601 time: ${options.issuedBefore}`);
  return { case: "issuedBefore", value: timestampFromDate(at) };
}

function describeTarget(revocation: Revocation): string {
  const target = revocation.target?.target;
  switch (target?.case) {
    case "mandateId":
      return `mandate ${target.value}`;
    case "sessionId":
      return `session ${target.value}`;
    case "clientId":
      return `application ${target.value}`;
    case "issuedBefore":
      return `issued before ${formatTime(target.value)}`;
    default:
      return "-";
  }
}

function revocationFields(revocation: Revocation): [string, string][] {
  return [
    ["revocation", revocation.revocationId],
    ["zone", revocation.zone],
    ["target", describeTarget(revocation)],
    ["reason", revocation.reason],
    ["revoked by", revocation.revokedBy],
    ["created", formatTime(revocation.createdAt)],
    ["expires", formatTime(revocation.expiresAt)],
  ];
}
