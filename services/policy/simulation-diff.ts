import type { AuthorizationRequestInput, OutcomeInfo, PolicyDecision } from "./policy-engine.js";
import type { PolicyEvaluator } from "./policy-evaluator.js";

/** One request to replay, and the recorded decision it came from ("" when given in the call). */
export interface Replay {
  readonly request: AuthorizationRequestInput;
  readonly sourceDecisionId: string;
}

/** One replayed request whose outcome would change. */
export interface ChangedDecision {
  readonly replay: Replay;
  readonly before: OutcomeInfo;
  readonly after: OutcomeInfo;
}

/** Changes that share application, resource, scope and outcome before and after. */
export interface ChangeGroup {
  readonly clientId: string;
  readonly resource: string;
  readonly scope: string;
  readonly before: PolicyDecision;
  readonly after: PolicyDecision;
  readonly beforePolicies: readonly string[];
  readonly afterPolicies: readonly string[];
  count: number;
}

/** What a candidate would change. */
export interface SimulationDiff {
  readonly evaluated: number;
  readonly changed: number;
  /** The first `maxChanges` changes, in replay order. */
  readonly changes: readonly ChangedDecision[];
  /** Every change, grouped, largest group first. */
  readonly groups: readonly ChangeGroup[];
}

/** Replays between yields to the event loop (a few milliseconds of work). */
const YIELD_EVERY = 25;

/**
 * Replays each request under the baseline and the candidate and collects
 * those whose decision, step-up kind or determining policies differ. Yields
 * to the event loop as it goes, so a 10,000-request replay does not stall the
 * STS on the same process, and stops when `signal` aborts.
 */
export async function diffDecisions(
  baseline: PolicyEvaluator,
  candidate: PolicyEvaluator,
  replays: readonly Replay[],
  options: { maxChanges: number; signal?: AbortSignal },
): Promise<SimulationDiff> {
  const changes: ChangedDecision[] = [];
  const groups = new Map<string, ChangeGroup>();
  let changed = 0;
  for (const [i, replay] of replays.entries()) {
    if (i % YIELD_EVERY === YIELD_EVERY - 1) {
      await new Promise((resolve) => setImmediate(resolve));
      options.signal?.throwIfAborted();
    }
    const before = baseline.evaluate(replay.request);
    const after = candidate.evaluate(replay.request);
    if (sameOutcome(before, after)) continue;
    changed++;
    if (changes.length < options.maxChanges) changes.push({ replay, before, after });
    const { clientId, resource, scope } = replay.request;
    const key = JSON.stringify([clientId, resource, scope, before.decision, after.decision, before.determiningPolicies, after.determiningPolicies]);
    const group = groups.get(key);
    if (group) group.count++;
    else {
      groups.set(key, {
        clientId,
        resource,
        scope,
        before: before.decision,
        after: after.decision,
        beforePolicies: before.determiningPolicies,
        afterPolicies: after.determiningPolicies,
        count: 1,
      });
    }
  }
  return { evaluated: replays.length, changed, changes, groups: [...groups.values()].sort((a, b) => b.count - a.count) };
}

function sameOutcome(a: OutcomeInfo, b: OutcomeInfo): boolean {
  return (
    a.decision === b.decision &&
    a.stepUpKind === b.stepUpKind &&
    a.determiningPolicies.length === b.determiningPolicies.length &&
    a.determiningPolicies.every((id, i) => b.determiningPolicies[i] === id)
  );
}
