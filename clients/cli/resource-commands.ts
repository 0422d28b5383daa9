import { create } from "@bufbuild/protobuf";
import { Option, type Command } from "commander";
import type { Resource } from "../../gen/caracal/admin/v1/admin_pb.js";
import { CreateResourceResponseSchema, ListResourcesResponseSchema } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { parsePageSize } from "./option-parsers.js";
import { formatList, formatTime, printFields, printJson, printTable } from "./output.js";

/** Registers `caracal resource create|list`. */
export function registerResourceCommands(program: Command): void {
  const resource = program.command("resource").description("manage resources: the services agents call, and the scopes they offer");

  clientCommand(resource, "create <resource-id>", "register a resource and the scopes it offers")
    .requiredOption("--zone <zone>", "the zone")
    .requiredOption("--scope <name...>", "scopes it offers, e.g. invoices.read invoices.write")
    .option("--display-name <name>", "a name for people")
    .action((resourceId: string, options: { zone: string; scope: string[]; displayName?: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).createResource({
          zone: options.zone,
          resourceId,
          displayName: options.displayName ?? "",
          scopes: options.scope.map((name) => ({ name })),
        });
        if (cli.json) printJson(CreateResourceResponseSchema, response);
        else if (response.resource) printFields(resourceFields(response.resource));
      }),
    );

  clientCommand(resource, "list", "list the zone's resources")
    .requiredOption("--zone <zone>", "the zone")
    .addOption(new Option("--page-size <n>", "resources fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { zone: string; pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const admin = await cli.admin();
        const resources = await collectPages(async (pageToken) => {
          const page = await admin.listResources({ zone: options.zone, pageToken, pageSize: options.pageSize });
          return { items: page.resources, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListResourcesResponseSchema, create(ListResourcesResponseSchema, { resources }));
        else
          printTable(
            ["RESOURCE", "SCOPES", "DISPLAY NAME", "CREATED"],
            resources.map((r) => [r.resourceId, formatList(r.scopes.map((s) => s.name)), r.displayName || "-", formatTime(r.createdAt)]),
            `no resources in zone ${options.zone}`,
          );
      }),
    );
}

function resourceFields(resource: Resource): [string, string][] {
  return [
    ["zone", resource.zone],
    ["resource", resource.resourceId],
    ["display name", resource.displayName || "-"],
    ["scopes", formatList(resource.scopes.map((s) => s.name))],
    ["created", formatTime(resource.createdAt)],
  ];
}
