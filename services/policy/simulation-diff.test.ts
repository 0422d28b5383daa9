import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CedarEngine } from "./cedar-engine.js";
import type { AuthorizationRequestInput, PolicyDecision, PolicySourceInput } from "./policy-engine.js";
import { DEFAULT_EVALUATOR, setEvaluator } from "./policy-evaluator.js";
import { diffDecisions } from "./simulation-diff.js";

interface VersionSwitch {
  readonly name: string;
  /** null: no active set, grants alone decide. */
  readonly before: PolicySourceInput | null;
  readonly after: PolicySourceInput;
  readonly requests: readonly Partial<AuthorizationRequestInput>[];
  readonly expect: {
    readonly changed: number;
    /** [request index, decision before, decision after, determining policies after] */
    readonly changes: readonly [number, PolicyDecision, PolicyDecision, string[]][];
    /** [scope, decision before, decision after, count] */
    readonly groups: readonly [string, PolicyDecision, PolicyDecision, number][];
  };
}

const matrix = JSON.parse(readFileSync(new URL("./decision-matrix.json", import.meta.url), "utf8")) as {
  readonly defaultRequest: AuthorizationRequestInput;
  readonly versionSwitches: readonly VersionSwitch[];
};

const engine = new CedarEngine();

describe("version switches and simulation diffs (decision matrix)", () => {
  for (const c of matrix.versionSwitches) {
    it(c.name, async () => {
      const before = c.before ? setEvaluator(1, engine.compile(c.before)) : DEFAULT_EVALUATOR;
      const after = setEvaluator(2, engine.compile(c.after));
      const requests = c.requests.map((r) => ({ ...matrix.defaultRequest, ...r }));
      const diff = await diffDecisions(before, after, requests.map((request) => ({ request, sourceDecisionId: "" })), { maxChanges: 100 });
      expect(diff.evaluated).toBe(requests.length);
      expect(diff.changed).toBe(c.expect.changed);
      expect(diff.changes.map((ch) => [requests.indexOf(ch.replay.request as (typeof requests)[number]), ch.before.decision, ch.after.decision, ch.after.determiningPolicies])).toEqual(
        c.expect.changes,
      );
      expect(diff.groups.map((g) => [g.scope, g.before, g.after, g.count])).toEqual(c.expect.groups);
      // After the switch, each request decides as the new version alone would.
      for (const request of requests) expect(after.evaluate(request)).toEqual(engine.compile(c.after).evaluate(request));
    });
  }

  it("reports at most maxChanges one by one and still counts and groups every change", async () => {
    const before = setEvaluator(1, engine.compile({ documents: [{ name: "a.cedar", text: "permit(principal, action, resource);" }] }));
    const after = setEvaluator(2, engine.compile({ documents: [{ name: "b.cedar", text: "forbid(principal, action, resource);" }] }));
    const replays = Array.from({ length: 60 }, (_, i) => ({ request: { ...matrix.defaultRequest, scope: `s${i % 2}` }, sourceDecisionId: `d${i}` }));
    const diff = await diffDecisions(before, after, replays, { maxChanges: 10 });
    expect(diff.changed).toBe(60);
    expect(diff.changes.map((c) => c.replay.sourceDecisionId)).toEqual(Array.from({ length: 10 }, (_, i) => `d${i}`));
    expect(diff.groups.map((g) => [g.scope, g.count])).toEqual([["s0", 30], ["s1", 30]]);
  });

  it("stops when the caller goes away", async () => {
    const set = setEvaluator(1, engine.compile({ documents: [{ name: "a.cedar", text: "permit(principal, action, resource);" }] }));
    const replays = Array.from({ length: 100 }, () => ({ request: matrix.defaultRequest, sourceDecisionId: "" }));
    const gone = AbortSignal.abort(new Error("client went away"));
    await expect(diffDecisions(set, set, replays, { maxChanges: 10, signal: gone })).rejects.toThrow("client went away");
  });
});
