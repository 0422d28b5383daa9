import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EvaluateRequest, EvaluateResponseSchema } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { requireZone } from "../directory/require-zone.js";
import type { PolicyDeps } from "./policy-deps.js";
import { activeEvaluator, storedEvaluator } from "./policy-evaluator.js";
import { outcomeMessage, requestFromProto, versionNumber } from "./policy-messages.js";

/**
 * `Evaluate`: one request against the active version (or a named one), with
 * the decision, the determining policies, reasons and engine diagnostics.
 */
export async function evaluate(deps: PolicyDeps, request: EvaluateRequest): Promise<MessageInitShape<typeof EvaluateResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const input = requestFromProto(request.request, deps.now());
  const version = versionNumber(request.version, "version", "the active version");
  const evaluator = version === 0 ? await activeEvaluator(deps.policies, zone) : await storedEvaluator(deps.policies, zone, version);
  return { outcome: outcomeMessage(evaluator.evaluate(input)), policySetVersion: BigInt(evaluator.version) };
}
