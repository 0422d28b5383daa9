import { PolicyService } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import type { CaracalHarness } from "./caracal-harness.js";

/** Sessions and invoices.read allowed; invoices.write held for an operator's approval (`write-approved`). */
export const STEP_UP_POLICIES = [
  '@id("sessions") permit(principal, action == Action::"StartSession", resource);',
  '@id("read") permit(principal, action == Action::"invoices.read", resource);',
  '@id("write-approved") @step_up("approval") permit(principal, action == Action::"invoices.write", resource);',
].join("\n");

/**
 * Creates `zone` with `billing-api` (invoices.read, invoices.write), the
 * application `agent` granted both, and {@link STEP_UP_POLICIES} active;
 * returns the agent's client secret.
 */
export async function createStepUpZone(caracal: CaracalHarness, zone: string): Promise<string> {
  await caracal.admin.createZone({ zone });
  await caracal.admin.createResource({ zone, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
  const { clientSecret } = await caracal.admin.createApplication({ zone, clientId: "agent" });
  await caracal.admin.createGrant({ zone, clientId: "agent", resourceId: "billing-api", scopes: ["invoices.read", "invoices.write"] });
  const policy = caracal.serviceClient(PolicyService);
  const { version } = await policy.createPolicySetVersion({ zone, source: { documents: [{ name: "p.cedar", text: STEP_UP_POLICIES }] }, message: "" });
  await policy.activatePolicySet({ zone, version: version!.version, expectedCurrentVersion: 0n, reason: "step-up for writes" });
  return clientSecret;
}
