import { create } from "@bufbuild/protobuf";
import { Option, type Command } from "commander";
import type { Zone } from "../../gen/caracal/admin/v1/admin_pb.js";
import { CreateZoneResponseSchema, ListZonesResponseSchema } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { parsePageSize, parseSeconds } from "./option-parsers.js";
import { formatDuration, formatTime, printFields, printJson, printTable } from "./output.js";

/** Registers `caracal zone create|list`. */
export function registerZoneCommands(program: Command): void {
  const zone = program.command("zone").description("manage zones: hard boundaries with their own keys, applications and resources");

  clientCommand(zone, "create <zone>", "create a zone and its first signing keys")
    .option("--display-name <name>", "a name for people")
    .option("--max-session-ttl <seconds>", "upper bound on session mandate lifetime (default 3600)", parseSeconds)
    .action((slug: string, options: { displayName?: string; maxSessionTtl?: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).createZone({
          zone: slug,
          displayName: options.displayName ?? "",
          ...(options.maxSessionTtl === undefined ? {} : { maxSessionTtl: { seconds: BigInt(options.maxSessionTtl) } }),
        });
        if (cli.json) printJson(CreateZoneResponseSchema, response);
        else if (response.zone) printFields(zoneFields(response.zone));
      }),
    );

  clientCommand(zone, "list", "list every zone")
    .addOption(new Option("--page-size <n>", "zones fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const admin = await cli.admin();
        const zones = await collectPages(async (pageToken) => {
          const page = await admin.listZones({ pageToken, pageSize: options.pageSize });
          return { items: page.zones, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListZonesResponseSchema, create(ListZonesResponseSchema, { zones }));
        else
          printTable(
            ["ZONE", "DISPLAY NAME", "MAX SESSION TTL", "CREATED"],
            zones.map((z) => [z.zone, z.displayName || "-", formatDuration(z.maxSessionTtl), formatTime(z.createdAt)]),
            "no zones",
          );
      }),
    );
}

function zoneFields(zone: Zone): [string, string][] {
  return [
    ["zone", zone.zone],
    ["display name", zone.displayName || "-"],
    ["max session ttl", formatDuration(zone.maxSessionTtl)],
    ["created", formatTime(zone.createdAt)],
  ];
}
