import type { Command } from "commander";
import { registerAppCommands } from "./app-commands.js";
import { registerApprovalCommands } from "./approval-commands.js";
import { registerAuditCommands } from "./audit-commands.js";
import type { StreamExport } from "./audit-export.js";
import { registerGrantCommands } from "./grant-commands.js";
import { registerKeyCommands } from "./key-commands.js";
import { registerPolicyCommands } from "./policy-commands.js";
import { registerResourceCommands } from "./resource-commands.js";
import { registerRevocationCommands } from "./revocation-commands.js";
import { registerTokenCommands } from "./token-commands.js";
import { registerValidateRollout } from "./validate-rollout.js";
import { registerZoneCommands } from "./zone-commands.js";

/**
 * Adds the client commands (`zone`, `app`, `resource`, `grant`, `key`,
 * `token`, `revoke`, `revocations`, `policy`, `audit`, `approvals`,
 * `validate-rollout`) to the `caracal` program. Admin commands sign in with the admin
 * profile that `caracal serve` writes on first start; `token` commands need
 * only a target. Exit codes: 0 ok, 1 refused or failed, 2 usage or configuration.
 *
 * `services` hands over what only the services side can run: the SIEM
 * export from the audit stream (`audit export --source stream`), which
 * reaches NATS.
 *
 * @example
 * const program = new Command("caracal").exitOverride();
 * registerClientCommands(program);
 * await program.parseAsync(["zone", "list", "--json"], { from: "user" });
 */
export function registerClientCommands(program: Command, services: { readonly auditStream?: StreamExport } = {}): void {
  registerZoneCommands(program);
  registerAppCommands(program);
  registerResourceCommands(program);
  registerGrantCommands(program);
  registerKeyCommands(program);
  registerTokenCommands(program);
  registerRevocationCommands(program);
  registerPolicyCommands(program);
  registerAuditCommands(program, services.auditStream);
  registerApprovalCommands(program);
  registerValidateRollout(program);
}
