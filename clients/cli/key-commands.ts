import type { Command } from "commander";
import { KeyStateSchema, type ZoneKey } from "../../gen/caracal/admin/v1/admin_pb.js";
import { ListZoneKeysResponseSchema, RotateZoneKeyResponseSchema } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { formatEnum, formatTime, printJson, printTable } from "./output.js";

const KEY_HEADERS = ["KEY ID", "ALG", "STATE", "CREATED", "ACTIVATED", "DEACTIVATED", "RETIRE AT"];

/** Registers `caracal key rotate|list`. */
export function registerKeyCommands(program: Command): void {
  const key = program.command("key").description("manage zone signing keys");

  clientCommand(key, "rotate", "rotate the zone signing key: the published next key starts signing")
    .requiredOption("--zone <zone>", "the zone")
    .action((options: { zone: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).rotateZoneKey({ zone: options.zone });
        if (cli.json) printJson(RotateZoneKeyResponseSchema, response);
        else {
          const keys = [response.current, response.previous, response.next].filter((k): k is ZoneKey => k !== undefined);
          printTable(KEY_HEADERS, keys.map(keyRow), `no keys in zone ${options.zone}`);
        }
      }),
    );

  clientCommand(key, "list", "list the zone's signing keys, newest first")
    .requiredOption("--zone <zone>", "the zone")
    .option("--include-retired", "include keys no longer published")
    .action((options: { zone: string; includeRetired?: boolean }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).listZoneKeys({ zone: options.zone, includeRetired: options.includeRetired === true });
        if (cli.json) printJson(ListZoneKeysResponseSchema, response);
        else printTable(KEY_HEADERS, response.keys.map(keyRow), `no keys in zone ${options.zone}`);
      }),
    );
}

function keyRow(key: ZoneKey): string[] {
  return [
    key.keyId,
    key.algorithm,
    formatEnum(KeyStateSchema, key.state),
    formatTime(key.createdAt),
    formatTime(key.activatedAt),
    formatTime(key.deactivatedAt),
    formatTime(key.retireAt),
  ];
}
