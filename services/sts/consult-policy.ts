import { Code } from "@connectrpc/connect";
import { AuditDecision } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { ZoneRecord } from "../directory/zones.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ApprovalChallengeSchema } from "../../gen/caracal/approval/v1/approval_pb.js";
import type { AuthorizationRequestInput, OutcomeInfo } from "../policy/policy-engine.js";
import { activeEvaluator } from "../policy/policy-evaluator.js";
import type { Decision } from "./decision.js";
import type { StsDeps } from "./sts-deps.js";

/**
 * Puts the STS's questions (one per resource and scope, or the session
 * question) to the zone's active policy set, after the grant checks: policy
 * narrows what grants allow, it never widens it. Returns the deciding
 * version, which the mandate and the audit event carry.
 *
 * A zone without an active set uses the default: grants alone decide. Every
 * question must be allowed; any engine error refuses with
 * `REASON_POLICY_EVAL_FAILED`, any deny with `REASON_POLICY_DENIED`, and a
 * step-up with `FAILED_PRECONDITION` / `REASON_INTERACTION_REQUIRED`.
 *
 * Either way the questions are recorded, so a candidate set can be replayed
 * against them (`SimulatePolicySet`).
 */
export async function consultPolicy(
  deps: StsDeps,
  zone: ZoneRecord,
  questions: readonly AuthorizationRequestInput[],
  decision: Decision,
  options: {
    /**
     * Raises an approval for a held request and returns its challenge, sent
     * beside the refusal; without it a hold is refused with no way forward.
     */
    raise?: (held: OutcomeInfo, version: number) => Promise<MessageInitShape<typeof ApprovalChallengeSchema>>;
  } = {},
): Promise<number> {
  const evaluator = await activeEvaluator(deps.policies, zone);
  const outcomes = questions.map((question) => evaluator.evaluate(question));
  deps.decisions.record(zone.id, {
    decisionId: decision.id,
    decidedAt: new Date(deps.now()),
    policySetVersion: evaluator.version,
    questions: questions.map((request, i) => ({ request, decision: outcomes[i]!.decision })),
  });
  decision.note({ policySetVersion: BigInt(evaluator.version) });
  if (evaluator.isDefault) return 0;

  const at = (i: number) => ({ resource: questions[i]!.resource, scope: questions[i]!.scope });
  const failed = outcomes.findIndex((o) => o.errors.length > 0);
  if (failed !== -1) {
    // The errors name policies and attributes: they go to the log and the
    // ledger's operators, not to the caller.
    decision.log?.warn({ policy_set_version: evaluator.version, errors: outcomes[failed]!.errors }, "policy evaluation failed; denied");
    throw decision.refuse(Code.PermissionDenied, Reason.POLICY_EVAL_FAILED, `policy set version ${evaluator.version} could not be evaluated; failures deny`, at(failed));
  }
  const denied = outcomes.findIndex((o) => o.decision === "deny");
  if (denied !== -1) {
    const { resource, scope } = at(denied);
    decision.note({ determiningPolicies: [...outcomes[denied]!.determiningPolicies] });
    throw decision.refuse(Code.PermissionDenied, Reason.POLICY_DENIED, `policy denies ${scope} on ${resource}`, at(denied));
  }
  const held = outcomes.findIndex((o) => o.decision === "step_up_required");
  if (held !== -1) {
    const { resource, scope } = at(held);
    const outcome = outcomes[held]!;
    decision.note({ determiningPolicies: [...outcome.determiningPolicies] });
    const challenge = options.raise ? await options.raise(outcome, evaluator.version) : undefined;
    if (challenge) decision.note({ approvalId: challenge.challengeId ?? "" });
    throw decision.refuse(
      Code.FailedPrecondition,
      Reason.INTERACTION_REQUIRED,
      `policy requires a "${outcome.stepUpKind}" approval for ${scope} on ${resource}`,
      { ...at(held), step_up: outcome.stepUpKind },
      AuditDecision.STEP_UP,
      challenge ? [{ desc: ApprovalChallengeSchema, value: create(ApprovalChallengeSchema, challenge) }] : undefined,
    );
  }
  decision.note({ determiningPolicies: [...new Set(outcomes.flatMap((o) => o.determiningPolicies))] });
  return evaluator.version;
}
