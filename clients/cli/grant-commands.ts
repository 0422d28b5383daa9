import { create } from "@bufbuild/protobuf";
import { Option, type Command } from "commander";
import { CreateGrantResponseSchema, ListGrantsResponseSchema } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { parsePageSize } from "./option-parsers.js";
import { formatList, formatTime, printFields, printJson, printTable } from "./output.js";

/**
 * Registers `caracal grant create|list`. `create` is the default, so
 * `caracal grant <client-id> <resource-id> …` creates a grant; an application
 * named `list` or `create` needs the explicit `caracal grant create list …`.
 */
export function registerGrantCommands(program: Command): void {
  // A group with a default subcommand rather than a command with both
  // arguments and a subcommand: commander checks a parent's required options
  // for its subcommands and lets the parent take options written after a
  // subcommand name, so `grant list --zone z` would lose `--zone` to `grant`.
  const grant = program.command("grant").description("manage grants: the scopes an application may request on a resource");

  clientCommand(grant, "create <client-id> <resource-id>", "give an application scopes on a resource (the default)", { isDefault: true })
    .requiredOption("--zone <zone>", "the zone")
    .requiredOption("--scope <name...>", "scopes to grant, each offered by the resource")
    .action((clientId: string, resourceId: string, options: { zone: string; scope: string[] }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).createGrant({ zone: options.zone, clientId, resourceId, scopes: options.scope });
        if (cli.json) printJson(CreateGrantResponseSchema, response);
        else if (response.grant) {
          const g = response.grant;
          printFields([
            ["zone", g.zone],
            ["grant id", g.grantId],
            ["client id", g.clientId],
            ["resource", g.resourceId],
            ["scopes", formatList(g.scopes)],
            ["created", formatTime(g.createdAt)],
          ]);
        }
      }),
    );

  clientCommand(grant, "list", "list the zone's grants")
    .requiredOption("--zone <zone>", "the zone")
    .option("--client-id <id>", "only this application's grants")
    .option("--resource-id <id>", "only grants on this resource")
    .addOption(new Option("--page-size <n>", "grants fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { zone: string; clientId?: string; resourceId?: string; pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const admin = await cli.admin();
        const grants = await collectPages(async (pageToken) => {
          const page = await admin.listGrants({
            zone: options.zone,
            clientId: options.clientId ?? "",
            resourceId: options.resourceId ?? "",
            pageToken,
            pageSize: options.pageSize,
          });
          return { items: page.grants, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListGrantsResponseSchema, create(ListGrantsResponseSchema, { grants }));
        else
          printTable(
            ["GRANT ID", "CLIENT ID", "RESOURCE", "SCOPES", "CREATED"],
            grants.map((g) => [g.grantId, g.clientId, g.resourceId, formatList(g.scopes), formatTime(g.createdAt)]),
            `no grants in zone ${options.zone}`,
          );
      }),
    );
}
