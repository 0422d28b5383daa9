import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SimulatePolicySetRequest, SimulatePolicySetResponseSchema } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { requireZone } from "../directory/require-zone.js";
import { invalidArgument } from "../validation.js";
import { MAX_RECORDED_DECISIONS, recentDecisions } from "./decision-recorder.js";
import type { PolicyDeps } from "./policy-deps.js";
import { activeEvaluator, setEvaluator, storedEvaluator, type PolicyEvaluator } from "./policy-evaluator.js";
import { diffDecisions, type Replay } from "./simulation-diff.js";
import { decisionMessage, outcomeMessage, requestFromProto, requestMessage, requireValid, sourceFromProto, versionNumber } from "./policy-messages.js";

/** The most requests one call may carry. */
const MAX_REQUESTS = 10_000;
/** The most changes reported one by one; `groups` counts every change. */
const MAX_CHANGES = 1_000;

/**
 * `SimulatePolicySet`: replays requests against the active version and a
 * candidate, and reports every request whose decision or determining policies
 * would change, one by one (up to 1,000) and grouped (always complete).
 *
 * The traffic is either given in the call or the zone's last N decisions as
 * the STS recorded them: the very questions it asked, with the labels, session
 * age, delegation chain and time they had, so the replay does not depend on
 * anything that changed since.
 */
export async function simulatePolicySet(
  deps: PolicyDeps,
  request: SimulatePolicySetRequest,
  signal?: AbortSignal,
): Promise<MessageInitShape<typeof SimulatePolicySetResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  let candidate: PolicyEvaluator;
  switch (request.candidate.case) {
    case "candidateVersion":
      candidate = await storedEvaluator(deps.policies, zone, versionNumber(request.candidate.value, "candidate_version"));
      break;
    case "candidateSource": {
      const source = sourceFromProto(request.candidate.value, "candidate_source");
      requireValid(deps.engine, source);
      candidate = setEvaluator(0, deps.engine.compile(source));
      break;
    }
    default:
      throw invalidArgument("candidate", "give candidate_version or candidate_source");
  }

  let replays: Replay[];
  switch (request.traffic.case) {
    case "requests": {
      const given = request.traffic.value.requests;
      if (given.length === 0) throw invalidArgument("requests", "give at least one request");
      if (given.length > MAX_REQUESTS) throw invalidArgument("requests", `at most ${MAX_REQUESTS}`);
      const now = deps.now();
      replays = given.map((r, i) => ({ request: requestFromProto(r, now, `requests[${i}]`), sourceDecisionId: "" }));
      break;
    }
    case "recentDecisions": {
      const n = request.traffic.value;
      if (n < 1 || n > MAX_RECORDED_DECISIONS) throw invalidArgument("recent_decisions", `must be 1 to ${MAX_RECORDED_DECISIONS}`);
      const recorded = await recentDecisions(deps.store, zone.id, n);
      replays = recorded.flatMap((d) => d.questions.map((q) => ({ request: q.request, sourceDecisionId: d.decisionId })));
      break;
    }
    default:
      throw invalidArgument("traffic", "give requests or recent_decisions");
  }

  const baseline = await activeEvaluator(deps.policies, zone);
  const diff = await diffDecisions(baseline, candidate, replays, { maxChanges: MAX_CHANGES, ...(signal ? { signal } : {}) });
  return {
    baselineVersion: BigInt(baseline.version),
    candidateVersion: BigInt(candidate.version),
    evaluated: diff.evaluated,
    changed: diff.changed,
    changes: diff.changes.map(({ replay, before, after }) => ({
      request: requestMessage(replay.request),
      sourceDecisionId: replay.sourceDecisionId,
      before: outcomeMessage(before),
      after: outcomeMessage(after),
    })),
    groups: diff.groups.map((g) => ({
      ...g,
      before: decisionMessage(g.before),
      after: decisionMessage(g.after),
      beforePolicies: [...g.beforePolicies],
      afterPolicies: [...g.afterPolicies],
    })),
    changesTruncated: diff.changed > diff.changes.length,
  };
}
