import type { ServiceImpl } from "@connectrpc/connect";
import type { PolicyService } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { activatePolicySet } from "./activate-policy-set.js";
import { evaluate } from "./evaluate.js";
import type { PolicyDeps } from "./policy-deps.js";
import { createPolicySetVersion, getActivePolicySet, getPolicySetVersion, listPolicySetVersions, validatePolicySet } from "./policy-set-versions.js";
import { simulatePolicySet } from "./simulate-policy-set.js";

/** `caracal.policy.v1.PolicyService`. */
export function createPolicyService(deps: PolicyDeps): ServiceImpl<typeof PolicyService> {
  return {
    evaluate: (request) => evaluate(deps, request),
    validatePolicySet: (request) => validatePolicySet(deps, request),
    createPolicySetVersion: (request, ctx) => createPolicySetVersion(deps, request, ctx),
    simulatePolicySet: (request, ctx) => simulatePolicySet(deps, request, ctx.signal),
    activatePolicySet: (request, ctx) => activatePolicySet(deps, request, ctx),
    getActivePolicySet: (request) => getActivePolicySet(deps, request),
    getPolicySetVersion: (request) => getPolicySetVersion(deps, request),
    listPolicySetVersions: (request) => listPolicySetVersions(deps, request),
  };
}
