import { describe, expect, it } from "vitest";
import { applications, drawRequests, realisticPolicySource } from "../bench/policy/realistic-set.js";
import { CedarEngine } from "../services/policy/cedar-engine.js";
import type { AuthorizationRequestInput, PolicySourceInput } from "../services/policy/policy-engine.js";

/**
 * The engine hands Cedar only the policies that could apply to a request and
 * only the parts of the request they read. These tests hold it to the one
 * promise that makes that safe: the answer is exactly what Cedar gives with
 * every policy and the whole request.
 */
describe("policy slicing", () => {
  const sliced = new CedarEngine();
  const whole = new CedarEngine({ slicing: false });

  function expectSameAnswers(source: PolicySourceInput, requests: readonly AuthorizationRequestInput[]): void {
    const a = sliced.compile(source);
    const b = whole.compile(source);
    for (const request of requests) {
      const fast = a.evaluate(request);
      const full = b.evaluate(request);
      expect({ ...fast, errors: fast.errors.length > 0 }, JSON.stringify(request)).toEqual({ ...full, errors: full.errors.length > 0 });
    }
  }

  it("gives the same decision, determining policies and reasons as the whole set on 600 varied requests", () => {
    const requests = drawRequests(600, 42);
    const set = sliced.compile(realisticPolicySource);
    const decisions = new Set(requests.map((r) => set.evaluate(r).decision));
    // The sample exercises every kind of answer, or the comparison proves little.
    expect([...decisions].sort()).toEqual(["allow", "deny", "step_up_required"]);
    expectSameAnswers(realisticPolicySource, requests);
  });

  it("still reads what a policy reads through has-paths, whole records and non-scope uses of principal", () => {
    const source: PolicySourceInput = {
      documents: [
        {
          name: "reads.cedar",
          text: [
            '@id("nested-has") permit(principal, action == Action::"a", resource) when { context has session.labels.tier };',
            '@id("whole-labels") forbid(principal, action == Action::"b", resource) when { principal.labels == {"env": "prod"} };',
            '@id("principal-value") permit(principal, action == Action::"c", resource) when { principal == Application::"x" && context.delegation.hops == 0 };',
            '@id("context-whole") permit(principal, action == Action::"d", resource) when { context.approval == {"state": "approved", "kind": "k"} };',
            '@id("catch-all") permit(principal, action, resource) when { context.time > 0 };',
          ].join("\n"),
        },
      ],
    };
    const app = applications[0]!;
    const base: AuthorizationRequestInput = {
      clientId: "x",
      applicationLabels: { env: "prod" },
      resource: "r",
      scope: "a",
      session: { sessionId: "s", ageSeconds: 5, labels: { tier: "gold" } },
      delegationChain: [],
      timeMs: 1_767_225_600_000,
      approvalState: "approved",
      approvalKind: "k",
    };
    const requests: AuthorizationRequestInput[] = [];
    for (const scope of ["a", "b", "c", "d", "e"]) {
      requests.push({ ...base, scope });
      requests.push({ ...base, scope, session: { ...base.session, labels: {} } });
      requests.push({ ...base, scope, applicationLabels: { env: "prod", team: "t" } });
      requests.push({ ...base, scope, clientId: app.clientId, delegationChain: ["y"], approvalKind: "other" });
    }
    expectSameAnswers(source, requests);
  });
});

describe("the answer cache", () => {
  it("never answers a request with another's entry: cached answers equal fresh ones across 2,000 interleaved requests", () => {
    const cached = new CedarEngine({ cacheSize: 64 }).compile(realisticPolicySource);
    const fresh = new CedarEngine({ cacheSize: 0 }).compile(realisticPolicySource);
    const distinct = drawRequests(500, 7);
    // Each request comes back several times, far apart and close together, while a small cache evicts.
    const stream = [...distinct, ...distinct.slice(0, 250), ...distinct.toReversed(), ...distinct.slice(100, 600), ...distinct.slice(0, 250)];
    let repeats = 0;
    const seen = new Set<AuthorizationRequestInput>();
    for (const request of stream) {
      if (seen.has(request)) repeats++;
      seen.add(request);
      expect(cached.evaluate(request), JSON.stringify(request)).toEqual(fresh.evaluate(request));
    }
    expect(repeats).toBeGreaterThan(1_000);
  });

  it("keeps requests that differ only in a label, session age, delegation or approval apart", () => {
    const source: PolicySourceInput = {
      documents: [
        {
          name: "guards.cedar",
          text: [
            '@id("billing") permit(principal, action == Action::"read", resource) when { principal.labels has team && principal.labels.team == "billing" };',
            '@id("old-session") forbid(principal, action, resource) when { context.session.age_seconds > 3600 };',
            '@id("deep") forbid(principal, action, resource) when { context.delegation.hops > 1 };',
            '@id("approved-write") @step_up("approval") permit(principal, action == Action::"write", resource);',
          ].join("\n"),
        },
      ],
    };
    const set = new CedarEngine().compile(source);
    const base: AuthorizationRequestInput = {
      clientId: "agent",
      applicationLabels: { team: "billing" },
      resource: "ledger",
      scope: "read",
      session: { sessionId: "s", ageSeconds: 60, labels: {} },
      delegationChain: [],
      timeMs: 1_767_225_600_000,
      approvalState: "unspecified",
      approvalKind: "",
    };
    const variants: [AuthorizationRequestInput, string][] = [
      [base, "allow"],
      [{ ...base, applicationLabels: { team: "sales" } }, "deny"],
      [{ ...base, session: { ...base.session, ageSeconds: 7_200 } }, "deny"],
      [{ ...base, delegationChain: ["a", "b"] }, "deny"],
      [{ ...base, scope: "write" }, "step_up_required"],
      [{ ...base, scope: "write", approvalState: "approved", approvalKind: "approval" }, "allow"],
      [{ ...base, scope: "write", approvalState: "approved", approvalKind: "other" }, "step_up_required"],
    ];
    // Twice over, so the second round is answered from the cache.
    for (let round = 0; round < 2; round++) {
      for (const [request, decision] of variants) expect(set.evaluate(request).decision, JSON.stringify(request)).toBe(decision);
    }
  });
});
