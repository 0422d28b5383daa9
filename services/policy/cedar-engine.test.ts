import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CedarEngine } from "./cedar-engine.js";
import type { AuthorizationRequestInput, PolicyDecision, PolicySourceInput } from "./policy-engine.js";
import { PolicyInvalidError } from "./policy-invalid-error.js";

interface MatrixRequest extends Partial<Omit<AuthorizationRequestInput, "session">> {
  readonly session?: Partial<AuthorizationRequestInput["session"]>;
}

interface MatrixCase {
  readonly name: string;
  readonly source: PolicySourceInput;
  readonly checks?: readonly {
    readonly request: MatrixRequest;
    readonly expect: {
      readonly decision: PolicyDecision;
      readonly determiningPolicies: readonly string[];
      readonly stepUpKind?: string;
      readonly errors?: boolean;
    };
  }[];
  readonly expectProblems?: readonly {
    readonly document: string;
    readonly policyId: string;
    readonly line: number;
    readonly column: number;
    readonly schemaError: boolean;
    readonly messageIncludes: string;
  }[];
}

const matrix = JSON.parse(readFileSync(new URL("./decision-matrix.json", import.meta.url), "utf8")) as {
  readonly defaultRequest: AuthorizationRequestInput;
  readonly cases: readonly MatrixCase[];
};

function request(overrides: MatrixRequest = {}): AuthorizationRequestInput {
  const base = matrix.defaultRequest;
  return { ...base, ...overrides, session: { ...base.session, ...overrides.session } };
}

function doc(name: string, text: string): PolicySourceInput {
  return { documents: [{ name, text }] };
}

const engine = new CedarEngine();

describe("decision matrix", () => {
  for (const c of matrix.cases) {
    it(c.name, () => {
      if (c.expectProblems) {
        const problems = engine.validate(c.source);
        expect(problems).toHaveLength(c.expectProblems.length);
        c.expectProblems.forEach(({ messageIncludes, ...where }, i) => {
          expect(problems[i]).toMatchObject(where);
          expect(problems[i]?.message).toContain(messageIncludes);
        });
        expect(() => engine.compile(c.source)).toThrow(PolicyInvalidError);
        return;
      }
      expect(engine.validate(c.source)).toEqual([]);
      const set = engine.compile(c.source);
      for (const [i, check] of (c.checks ?? []).entries()) {
        const outcome = set.evaluate(request(check.request));
        const label = `check ${i}: ${JSON.stringify(check.request)}`;
        expect(outcome.decision, label).toBe(check.expect.decision);
        expect(outcome.determiningPolicies, label).toEqual(check.expect.determiningPolicies);
        expect(outcome.stepUpKind, label).toBe(check.expect.stepUpKind ?? "");
        if (check.expect.errors) expect(outcome.errors.length, label).toBeGreaterThan(0);
        else expect(outcome.errors, label).toEqual([]);
        expect(outcome.reasons.length, label).toBeGreaterThan(0);
      }
    });
  }
});

describe("CedarEngine problems", () => {
  it("reports a syntax error with its document, line and column", () => {
    const problems = engine.validate({
      documents: [
        { name: "ok.cedar", text: "permit(principal, action, resource);\n" },
        { name: "broken.cedar", text: '// header\npermit(principal, action, resource);\nforbid(principal, action, resource)\n  when { 1 + };\n' },
      ],
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ document: "broken.cedar", line: 4, column: 14, schemaError: false });
    expect(problems[0]?.message).toContain("unexpected token");
  });

  it("counts columns in characters, not the UTF-8 bytes Cedar reports", () => {
    const problems = engine.validate(doc("utf8.cedar", 'permit(principal, action, resource) when { "é" == "€" && 1 + };'));
    expect(problems[0]).toMatchObject({ line: 1, column: 62 });
  });

  it("reports a schema syntax error against the schema, with its position", () => {
    const problems = engine.validate({
      schema: "entity Application;\nentity Resource {\n  owner: \n};\n",
      documents: [{ name: "a.cedar", text: "permit(principal, action, resource);" }],
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ document: "", policyId: "", line: 4, column: 1, schemaError: true });
  });

  it("accepts a JSON schema", () => {
    const schema = JSON.stringify({
      "": {
        entityTypes: { Application: {}, Resource: {} },
        actions: { read: { appliesTo: { principalTypes: ["Application"], resourceTypes: ["Resource"] } } },
      },
    });
    const ok = { schema, documents: [{ name: "a.cedar", text: 'permit(principal, action == Action::"read", resource);' }] };
    expect(engine.validate(ok)).toEqual([]);
    const bad = { schema, documents: [{ name: "a.cedar", text: 'permit(principal, action == Action::"delete", resource);' }] };
    expect(engine.validate(bad)).toMatchObject([{ document: "a.cedar", policyId: "a.cedar#0", line: 1, column: 29, schemaError: true }]);
  });

  it("refuses duplicate policy ids and points at the second one", () => {
    const problems = engine.validate({
      documents: [
        { name: "a.cedar", text: '@id("p")\npermit(principal, action, resource);' },
        { name: "b.cedar", text: '\n\n@id("p")\nforbid(principal, action, resource);' },
      ],
    });
    expect(problems).toMatchObject([{ document: "b.cedar", policyId: "p", line: 3, column: 1 }]);
    expect(problems[0]?.message).toContain("a.cedar:1:1");
  });

  it("refuses @step_up on a forbid and @step_up without a kind", () => {
    const problems = engine.validate(
      doc("s.cedar", '@step_up("approval")\nforbid(principal, action, resource);\n@step_up\npermit(principal, action, resource);'),
    );
    expect(problems).toMatchObject([
      { policyId: "s.cedar#0", line: 1, column: 1, message: "@step_up applies to permit policies only" },
      { policyId: "s.cedar#1", line: 3, column: 1 },
    ]);
  });

  it("refuses templates, which have no links here", () => {
    const problems = engine.validate(doc("t.cedar", "permit(principal, action, resource);\npermit(principal == ?principal, action, resource);"));
    expect(problems).toMatchObject([{ document: "t.cedar", line: 2, column: 1 }]);
  });

  it("compile throws PolicyInvalidError with a stable code and every problem", () => {
    let caught: unknown;
    try {
      engine.compile({
        documents: [
          { name: "a.cedar", text: "permit(principal, action, resource" },
          { name: "b.cedar", text: "forbid(principal, action, resource) when { };" },
        ],
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PolicyInvalidError);
    const err = caught as PolicyInvalidError;
    expect(err.code).toBe("POLICY_INVALID");
    expect(err.problems.map((p) => p.document)).toEqual(["a.cedar", "b.cedar"]);
  });

  it("keeps source order for positional ids past ten policies", () => {
    const text = Array.from({ length: 12 }, (_, i) => `permit(principal, action == Action::"a${i}", resource);`).join("\n");
    const set = engine.compile(doc("many.cedar", text));
    expect(set.policyIds).toEqual(Array.from({ length: 12 }, (_, i) => `many.cedar#${i}`));
    expect(set.evaluate(request({ scope: "a10" })).determiningPolicies).toEqual(["many.cedar#10"]);
    expect(set.evaluate(request({ scope: "a2" })).determiningPolicies).toEqual(["many.cedar#2"]);
  });
});

describe("CedarEngine failures deny", () => {
  const permitAll = engine.compile(doc("all.cedar", "permit(principal, action, resource);"));

  it("denies with an error when a request value cannot be expressed in Cedar", () => {
    const outcome = permitAll.evaluate(request({ session: { ageSeconds: 1.5 } }));
    expect(outcome.decision).toBe("deny");
    expect(outcome.determiningPolicies).toEqual([]);
    expect(outcome.errors[0]).toContain("session age");
  });

  it("denies with an error when the request time is not a number", () => {
    const outcome = permitAll.evaluate(request({ timeMs: Number.NaN }));
    expect(outcome).toMatchObject({ decision: "deny", determiningPolicies: [] });
    expect(outcome.errors[0]).toContain("request time");
  });

  it("treats a label named like Cedar's JSON entity escape as a plain label", () => {
    // Labels come from callers; `__entity` must not turn into an entity reference.
    const set = engine.compile(doc("escape.cedar", "permit(principal, action, resource) when { principal.labels has __entity };"));
    expect(set.evaluate(request({ applicationLabels: { __entity: "x" } }))).toMatchObject({ decision: "allow", errors: [] });
  });
});

describe("compiled sets are independent", () => {
  it("switches versions: the same request is allowed by set A and denied by set B", () => {
    const a = engine.compile(doc("v1.cedar", '@id("v1-read")\npermit(principal, action == Action::"read", resource);'));
    const b = engine.compile(doc("v2.cedar", '@id("v2-no-read")\nforbid(principal, action == Action::"read", resource);\npermit(principal, action, resource);'));
    const req = request();
    expect(a.evaluate(req)).toMatchObject({ decision: "allow", determiningPolicies: ["v1-read"] });
    expect(b.evaluate(req)).toMatchObject({ decision: "deny", determiningPolicies: ["v2-no-read"] });
    expect(a.evaluate(req)).toMatchObject({ decision: "allow", determiningPolicies: ["v1-read"] });
  });

  it("compiling the same source twice gives sets that both still work", () => {
    const source = doc("same.cedar", "permit(principal, action, resource);");
    const first = engine.compile(source);
    const second = engine.compile(source);
    expect(first.evaluate(request()).decision).toBe("allow");
    expect(second.evaluate(request()).decision).toBe("allow");
  });
});
