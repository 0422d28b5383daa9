import { randomBytes } from "node:crypto";
import { Option, type Command } from "commander";
import { clientCommand, runClientAction } from "./client-command.js";
import { CommandFailed } from "./command-failed.js";
import { printNote, printTable } from "./output.js";
import { ROLLOUT_POLICY, runRolloutChecks, type RolloutResult } from "./rollout-checks.js";

/**
 * Registers `caracal validate-rollout`: checks a running deployment end to
 * end, as the production checklist asks. In a throwaway zone it sets up a
 * probe application, the `caracal-probe` resource and a policy set, then makes
 * a successful request, a denied request, a revoked-session request and a
 * step-up request (approving it as the operator) against Caracal's built-in
 * probe service. For each it checks the outcome, that the audit ledger holds
 * its trail, and that `Explain` gives the final decision and its reason.
 * Prints a pass/fail table, exits 0 only if all pass, and deletes the zone.
 *
 * @example
 * caracal validate-rollout --target http://caracal.internal:7070
 */
export function registerValidateRollout(program: Command): void {
  clientCommand(program, "validate-rollout", "check a deployment end to end: success, denial, revoked session and step-up, each audited and explained")
    .addOption(new Option("--keep", "keep the throwaway zone afterwards, for a closer look"))
    .action((options: { keep?: boolean }, command: Command) =>
      runClientAction(command, async (cli) => {
        const clients = await cli.all();
        const admin = clients.admin!;
        const zone = `rollout-${randomBytes(4).toString("hex")}`;
        let results: RolloutResult[];
        try {
          await admin.createZone({ zone, displayName: "caracal validate-rollout (throwaway)" });
          await admin.createResource({ zone, resourceId: "caracal-probe", scopes: [{ name: "probe.call" }, { name: "probe.write" }] });
          const { clientSecret } = await admin.createApplication({ zone, clientId: "rollout-probe", displayName: "validate-rollout probe" });
          await admin.createGrant({ zone, clientId: "rollout-probe", resourceId: "caracal-probe", scopes: ["probe.call", "probe.write"] });
          const { version } = await clients.policy!.createPolicySetVersion({
            zone,
            source: { documents: [{ name: "rollout.cedar", text: ROLLOUT_POLICY }] },
            message: "caracal validate-rollout",
          });
          await clients.policy!.activatePolicySet({ zone, version: version!.version, expectedCurrentVersion: 0n, reason: "caracal validate-rollout" });
          results = await runRolloutChecks(
            { sts: clients.sts, admin, audit: clients.audit!, revocation: clients.revocation!, probe: clients.probe },
            { zone, clientId: "rollout-probe", secret: clientSecret },
          );
        } finally {
          if (options.keep) printNote(`kept zone ${zone}`);
          else await admin.deleteZone({ zone, confirm: zone }).catch((error: unknown) => printNote(`could not delete zone ${zone}: ${String(error)}`));
        }
        if (cli.json) process.stdout.write(`${JSON.stringify({ zone, results }, null, 2)}\n`);
        else {
          printTable(
            ["CHECK", "EXPECTED", "GOT", "AUDIT TRAIL", "EXPLAIN", "RESULT"],
            results.map((r) => [r.check, r.expected, r.got, r.audit, r.explain, r.pass ? "pass" : "FAIL"]),
            "no checks ran",
          );
        }
        const failures = results.filter((r) => !r.pass).length;
        if (failures > 0) throw new CommandFailed(`validate-rollout: ${failures} of ${results.length} checks failed`);
      }),
    );
}
