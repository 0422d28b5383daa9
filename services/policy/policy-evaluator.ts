import type { ActivePolicySets, ZoneRef } from "./active-policy-sets.js";
import type { AuthorizationRequestInput, CompiledPolicySet, OutcomeInfo } from "./policy-engine.js";
import { DEFAULT_OUTCOME } from "./policy-messages.js";
import { notFound } from "../directory/require-zone.js";

/** A policy-set version ready to decide: the active one, a stored one, a candidate, or the default. */
export interface PolicyEvaluator {
  /** The version deciding; 0 for the default (no active set) and for unstored candidates. */
  readonly version: number;
  /** True when no policy set decides and grants alone do. */
  readonly isDefault: boolean;
  /** Decides one request; never throws, never allows on failure. */
  evaluate(request: AuthorizationRequestInput): OutcomeInfo;
}

/** The evaluator for a compiled set. */
export function setEvaluator(version: number, set: CompiledPolicySet): PolicyEvaluator {
  return { version, isDefault: false, evaluate: (request) => set.evaluate(request) };
}

/** The default when a zone has no active set: every request is allowed here, because grants alone decide. */
export const DEFAULT_EVALUATOR: PolicyEvaluator = { version: 0, isDefault: true, evaluate: () => DEFAULT_OUTCOME };

/** A version that cannot run denies every request, with the failure as its error. */
function failingEvaluator(version: number, failure: string): PolicyEvaluator {
  const outcome: OutcomeInfo = {
    decision: "deny",
    determiningPolicies: [],
    reasons: ["the policy set cannot be evaluated; failures deny"],
    errors: [failure],
    stepUpKind: "",
  };
  return { version, isDefault: false, evaluate: () => outcome };
}

/** The zone's active set, or the default when none is active. Rejects when the store cannot be read. */
export async function activeEvaluator(policies: ActivePolicySets, zone: ZoneRef): Promise<PolicyEvaluator> {
  const active = await policies.active(zone);
  if ("set" in active) return setEvaluator(active.version, active.set);
  if ("failure" in active) return failingEvaluator(active.version, active.failure);
  return DEFAULT_EVALUATOR;
}

/** A stored version of the zone; NOT_FOUND when it has none by that number. */
export async function storedEvaluator(policies: ActivePolicySets, zone: ZoneRef, version: number): Promise<PolicyEvaluator> {
  const compiled = await policies.version(zone.id, version);
  if (compiled === undefined) throw notFound(`policy set version ${version} of zone ${zone.slug}`);
  if (compiled instanceof Error) return failingEvaluator(version, compiled.message);
  return setEvaluator(version, compiled);
}
