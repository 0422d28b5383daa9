import { Code } from "@connectrpc/connect";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AuditDecision, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { createAttackFixture, mintMandate, TEST_RESOURCE, TEST_SCOPE, type AttackFixture } from "../test/support/mandates.js";
import { MemoryAuditSink } from "./audit-sink.js";
import { EdgeVerifier, traceIdOf, type EdgeCall, type EdgeVerifierOptions } from "./edge-verifier.js";
import { MandateError } from "./mandate-error.js";
import type { RequirementMap } from "./method-requirement.js";
import { InMemoryRevocationView, staleRevocationView, type RevocationEntry, type RevocationTarget, type RevocationView } from "./revocation-view.js";
import type { MandateKeyResolver } from "./verify-mandate.js";

// 2030-01-01T12:00:00Z: every test runs on this frozen clock unless it moves it.
const T0 = Date.UTC(2030, 0, 1, 12);
const clock = { ms: T0 };
const now = () => clock.ms;

const check = Health.method.check; // needs invoices.read at billing-api
const watch = Health.method.watch; // needs invoices.write at billing-api
const list = Health.method.list; // public
const payroll = { service: "acme.payroll.v1.PayrollService", name: "RunPayroll" }; // known by name only
const undeclared = { service: "acme.payroll.v1.PayrollService", name: "DeleteEverything" };

const requirements: RequirementMap = {
  "grpc.health.v1.Health/Check": { resource: TEST_RESOURCE, scopes: [TEST_SCOPE] },
  "grpc.health.v1.Health/Watch": { resource: TEST_RESOURCE, scopes: ["invoices.write"] },
  "grpc.health.v1.Health/List": { public: true },
  "acme.payroll.v1.PayrollService/RunPayroll": { resource: "payroll-api", scopes: [] },
};

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

let fixture: AttackFixture;
let lookups: number;
let keys: MandateKeyResolver;
let token: string;

beforeAll(async () => {
  fixture = await createAttackFixture(now);
  keys = (zone, kid) => {
    lookups += 1;
    return fixture.keyring.resolve(zone, kid);
  };
});

beforeEach(async () => {
  clock.ms = T0;
  lookups = 0;
  token = await mintMandate({ key: fixture.zoneKey, now });
});

function verifier(options: Partial<EdgeVerifierOptions> = {}): EdgeVerifier {
  return new EdgeVerifier({ keys, requirements, allowedZones: ["acme"], now, ...options });
}

function call(method: EdgeCall["method"], authorization: string | null, extra: Partial<EdgeCall> = {}): EdgeCall {
  return { method, authorization, ...extra };
}

const bearer = (mandate: string) => `Bearer ${mandate}`;

async function refusal(outcome: Promise<unknown>): Promise<MandateError> {
  const error = await outcome.then(
    (admission) => {
      throw new Error(`admitted a call that must be refused: ${JSON.stringify(admission)}`);
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(MandateError);
  return error as MandateError;
}

/** Asserts the refusal's reason and code, and returns it. */
async function expectRefusal(outcome: Promise<unknown>, reason: Reason, code: Code): Promise<MandateError> {
  const error = await refusal(outcome);
  expect({ reason: Reason[error.reason], code: Code[error.code] }).toEqual({ reason: Reason[reason], code: Code[code] });
  return error;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("EdgeVerifier requirements", () => {
  it("refuses a method that declares no requirement, even with a valid mandate (deny by default)", async () => {
    const error = await expectRefusal(verifier().check(call(undeclared, bearer(token))), Reason.METHOD_NOT_DECLARED, Code.PermissionDenied);
    expect(error.decisionId).toMatch(UUID);
  });

  it("refuses a method of a service it has no requirement map entry for at all", async () => {
    await expectRefusal(verifier({ requirements: {} }).check(call(check, bearer(token))), Reason.METHOD_NOT_DECLARED, Code.PermissionDenied);
  });

  it("admits a public method with no mandate, no decision and no audit event", async () => {
    const audit = new MemoryAuditSink();
    await expect(verifier({ audit }).check(call(list, null))).resolves.toEqual({ decisionId: "", claims: undefined });
    await expect(verifier({ audit }).check(call(list, "garbage"))).resolves.toEqual({ decisionId: "", claims: undefined });
    expect(audit.events).toEqual([]);
    expect(lookups).toBe(0);
  });

  it("applies a service-wide requirement to every method of the service", async () => {
    const edge = verifier({ requirements: { "grpc.health.v1.Health": { resource: TEST_RESOURCE, scopes: [TEST_SCOPE] } } });
    await expect(edge.check(call(watch, bearer(token)))).resolves.toMatchObject({ claims: { zone: "acme" } });
  });

  it("prefers the method entry over the service entry", async () => {
    const edge = verifier({
      requirements: {
        "grpc.health.v1.Health": { public: true },
        "grpc.health.v1.Health/Watch": { resource: TEST_RESOURCE, scopes: [TEST_SCOPE] },
      },
    });
    await expectRefusal(edge.check(call(watch, null)), Reason.MANDATE_MISSING, Code.Unauthenticated);
    await expect(edge.check(call(check, null))).resolves.toEqual({ decisionId: "", claims: undefined });
  });

  it("finds the requirement of a method known only by name", async () => {
    const mandate = await mintMandate({ key: fixture.zoneKey, now, claims: { aud: ["payroll-api"], target: ["payroll-api"] } });
    await expect(verifier().check(call(payroll, bearer(mandate)))).resolves.toMatchObject({ claims: { target: ["payroll-api"] } });
    await expectRefusal(verifier().check(call(payroll, bearer(token))), Reason.WRONG_AUDIENCE, Code.PermissionDenied);
  });
});

describe("EdgeVerifier bearer", () => {
  it("refuses a call without authorization as REASON_MANDATE_MISSING", async () => {
    await expectRefusal(verifier().check(call(check, null)), Reason.MANDATE_MISSING, Code.Unauthenticated);
  });

  for (const [name, authorization] of [
    ["another scheme", `Basic ${Buffer.from("agent:secret").toString("base64")}`],
    ["the bare token without a scheme", "TOKEN"],
    ["the scheme without a token", "Bearer "],
    ["the scheme alone", "Bearer"],
    ["two tokens", "Bearer a.b.c d.e.f"],
    ["a token with a newline", "Bearer a.b.c\nx"],
    ["an empty header", ""],
  ] as const) {
    it(`refuses ${name} as REASON_MANDATE_MALFORMED`, async () => {
      const header = authorization === "TOKEN" ? token : authorization;
      await expectRefusal(verifier().check(call(check, header)), Reason.MANDATE_MALFORMED, Code.Unauthenticated);
    });
  }

  it("refuses an oversized authorization header before parsing it", async () => {
    await expectRefusal(verifier().check(call(check, bearer("a".repeat(9_000)))), Reason.MANDATE_TOO_LARGE, Code.Unauthenticated);
    await expectRefusal(
      verifier({ maxTokenBytes: token.length - 1 }).check(call(check, bearer(token))),
      Reason.MANDATE_TOO_LARGE,
      Code.Unauthenticated,
    );
  });

  it("refuses a good token for a token that fails verification", async () => {
    const [header, payload] = token.split(".");
    await expectRefusal(verifier().check(call(check, bearer(`${header}.${payload}.AAAA`))), Reason.MANDATE_BAD_SIGNATURE, Code.Unauthenticated);
  });

  it("returns the verified claims and a decision id for a valid mandate", async () => {
    const admission = await verifier().check(call(check, bearer(token)));
    expect(admission.decisionId).toMatch(UUID);
    expect(admission.claims).toMatchObject({ zone: "acme", use: "resource", target: [TEST_RESOURCE], scope: TEST_SCOPE });
  });
});

describe("EdgeVerifier cache of verified mandates", () => {
  it("verifies a token once and serves it from the cache afterwards", async () => {
    const edge = verifier();
    await edge.check(call(check, bearer(token)));
    await edge.check(call(check, bearer(token)));
    await edge.check(call(check, bearer(token)));
    expect(lookups).toBe(1);
  });

  it("verifies every time when the cache is off", async () => {
    const edge = verifier({ cacheSize: 0 });
    await edge.check(call(check, bearer(token)));
    await edge.check(call(check, bearer(token)));
    expect(lookups).toBe(2);
  });

  it("still checks the scope per call on a cache hit", async () => {
    const edge = verifier();
    await edge.check(call(check, bearer(token)));
    const error = await expectRefusal(edge.check(call(watch, bearer(token))), Reason.SCOPE_MISSING, Code.PermissionDenied);
    expect(error.metadata).toEqual({ scope: "invoices.write" });
    expect(lookups).toBe(1);
  });

  it("still checks the resource per call on a cache hit", async () => {
    const edge = verifier();
    await edge.check(call(check, bearer(token)));
    const error = await expectRefusal(edge.check(call(payroll, bearer(token))), Reason.WRONG_AUDIENCE, Code.PermissionDenied);
    expect(error.metadata).toEqual({ resource: "payroll-api" });
    expect(lookups).toBe(1);
  });

  it("refuses a cached mandate once it expires", async () => {
    const edge = verifier();
    await edge.check(call(check, bearer(token)));
    clock.ms = T0 + (300 + 5) * 1000; // exp plus the default tolerance
    await expectRefusal(edge.check(call(check, bearer(token))), Reason.MANDATE_EXPIRED, Code.Unauthenticated);
  });

  it("never serves one token's verification for another token", async () => {
    const edge = verifier();
    await edge.check(call(check, bearer(token)));
    const [header, payload, signature] = token.split(".");
    const forged = `${header}.${payload}.${signature!.slice(0, -2)}${signature!.endsWith("AA") ? "BB" : "AA"}`;
    await expectRefusal(edge.check(call(check, bearer(forged))), Reason.MANDATE_BAD_SIGNATURE, Code.Unauthenticated);
  });
});

describe("EdgeVerifier revocation", () => {
  const cases: { name: string; target: RevocationTarget }[] = [
    { name: "its jti", target: { kind: "mandate", mandateId: "<jti>" } },
    { name: "its session (sid)", target: { kind: "session", sessionId: "sess-1" } },
    { name: "its root session (root_sid)", target: { kind: "session", sessionId: "sess-root" } },
    { name: "an application cut-off after it was issued", target: { kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 1_000 } },
    { name: "a zone cut-off after it was issued", target: { kind: "zone", issuedBeforeMs: T0 + 1_000 } },
  ];

  for (const { name, target } of cases) {
    it(`refuses a cached mandate at once when ${name} is revoked, and drops it from the cache`, async () => {
      const revocations = new InMemoryRevocationView({ now });
      const edge = verifier({ revocations });
      const admitted = await edge.check(call(check, bearer(token)));
      await edge.check(call(check, bearer(token)));
      expect(lookups).toBe(1);

      const resolved = target.kind === "mandate" ? { ...target, mandateId: admitted.claims!.jti } : target;
      revocations.add(revocation(resolved));
      await expectRefusal(edge.check(call(check, bearer(token))), Reason.MANDATE_REVOKED, Code.Unauthenticated);
      // The revocation dropped the cached entry: the token was verified again.
      expect(lookups).toBe(2);
    });
  }

  it("does not refuse mandates the revocation does not cover", async () => {
    const revocations = new InMemoryRevocationView({ now });
    const edge = verifier({ revocations });
    const other = await mintMandate({ key: fixture.zoneKey, now, claims: { sid: "sess-2", root_sid: "sess-2" } });
    await edge.check(call(check, bearer(token)));
    revocations.add(revocation({ kind: "session", sessionId: "sess-1" }));
    revocations.add(revocation({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 }));
    await expect(edge.check(call(check, bearer(other)))).resolves.toMatchObject({ claims: { sid: "sess-2" } });
  });

  it("refuses a mandate revoked before it was ever presented", async () => {
    const revocations = new InMemoryRevocationView({ now });
    revocations.add(revocation({ kind: "session", sessionId: "sess-root" }));
    await expectRefusal(verifier({ revocations }).check(call(check, bearer(token))), Reason.MANDATE_REVOKED, Code.Unauthenticated);
  });

  it("refuses every call, cached or not, with REASON_REVOCATION_STALE while the view is stale", async () => {
    let stale = false;
    const view: RevocationView = {
      assertFresh() {
        if (stale) throw staleRevocationView(60_000, 5_000);
      },
      isRevoked: () => false,
      onRevocation: () => () => {},
    };
    const edge = verifier({ revocations: view });
    await edge.check(call(check, bearer(token)));
    stale = true;
    const error = await expectRefusal(edge.check(call(check, bearer(token))), Reason.REVOCATION_STALE, Code.Unavailable);
    expect(error.decisionId).toMatch(UUID);
    await expectRefusal(edge.check(call(check, null)), Reason.REVOCATION_STALE, Code.Unavailable);
    stale = false;
    await expect(edge.check(call(check, bearer(token)))).resolves.toBeDefined();
  });
});

describe("EdgeVerifier audit", () => {
  it("records one ALLOW event per admitted call with its decision id, client, session and edge method", async () => {
    const audit = new MemoryAuditSink();
    const admission = await verifier({ audit }).check(call(check, bearer(token), { traceparent: TRACEPARENT, requestId: "req-7" }));
    expect(audit.events).toHaveLength(1);
    expect(audit.events[0]).toMatchObject({
      zone: "acme",
      type: EventType.EDGE_CALL,
      decision: AuditDecision.ALLOW,
      reason: Reason.UNSPECIFIED,
      decisionId: admission.decisionId,
      requestId: "req-7",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      edgeService: "grpc.health.v1.Health",
      edgeMethod: "Check",
      resources: [TEST_RESOURCE],
      scopes: [TEST_SCOPE],
      clientId: "agent-billing",
      subject: "agent-billing",
      sessionId: "sess-1",
      rootSessionId: "sess-root",
      mandateId: admission.claims!.jti,
      policySetVersion: 3n,
    });
  });

  it("records one DENY event per refusal with the reason and the decision id the caller was given", async () => {
    const audit = new MemoryAuditSink();
    const edge = verifier({ audit });
    await edge.check(call(check, bearer(token)));
    const error = await refusal(edge.check(call(watch, bearer(token))));
    expect(audit.events).toHaveLength(2);
    expect(audit.events[1]).toMatchObject({
      zone: "acme",
      decision: AuditDecision.DENY,
      reason: Reason.SCOPE_MISSING,
      decisionId: error.decisionId,
      edgeService: "grpc.health.v1.Health",
      edgeMethod: "Watch",
      scopes: ["invoices.write"],
    });
    expect(audit.events[0]!.decisionId).not.toBe(error.decisionId);
  });

  it("files a refusal of an unverified token under the zone it claims, without the claims it cannot trust", async () => {
    const audit = new MemoryAuditSink();
    const [header, payload] = token.split(".");
    const error = await refusal(verifier({ audit }).check(call(check, bearer(`${header}.${payload}.AAAA`))));
    expect(audit.events).toHaveLength(1);
    expect(audit.events[0]).toMatchObject({ zone: "acme", decision: AuditDecision.DENY, reason: Reason.MANDATE_BAD_SIGNATURE, decisionId: error.decisionId });
    expect(audit.events[0]!.clientId).toBeUndefined();
    expect(audit.events[0]!.sessionId).toBeUndefined();
  });

  it("records the refusal of an undeclared method", async () => {
    const audit = new MemoryAuditSink();
    const error = await refusal(verifier({ audit }).check(call(undeclared, bearer(token))));
    expect(audit.events).toEqual([
      expect.objectContaining({
        decision: AuditDecision.DENY,
        reason: Reason.METHOD_NOT_DECLARED,
        decisionId: error.decisionId,
        edgeService: "acme.payroll.v1.PayrollService",
        edgeMethod: "DeleteEverything",
        resources: [],
      }),
    ]);
  });

  it("files nothing under a zone this verifier does not accept", async () => {
    const audit = new MemoryAuditSink();
    const globex = await mintMandate({ key: fixture.otherZoneKey, now });
    await expectRefusal(verifier({ audit }).check(call(check, bearer(globex))), Reason.WRONG_ZONE, Code.PermissionDenied);
    expect(audit.events).toEqual([]);
  });

  it("refuses an allowed call with REASON_AUDIT_UNAVAILABLE when the sink is full", async () => {
    const audit = new MemoryAuditSink(0);
    const error = await expectRefusal(verifier({ audit }).check(call(check, bearer(token))), Reason.AUDIT_UNAVAILABLE, Code.Unavailable);
    expect(error.decisionId).toMatch(UUID);
  });

  it("still refuses a bad call with its own reason when the sink is full", async () => {
    const audit = new MemoryAuditSink(0);
    await expectRefusal(verifier({ audit }).check(call(watch, bearer(token))), Reason.SCOPE_MISSING, Code.PermissionDenied);
  });

  it("lets an allowed call through a full sink when requireAudit is false", async () => {
    const audit = new MemoryAuditSink(0);
    const admission = await verifier({ audit, requireAudit: false }).check(call(check, bearer(token)));
    expect(admission.claims).toMatchObject({ zone: "acme" });
    expect(admission.decisionId).toMatch(UUID);
  });

  it("refuses once the bounded sink fills up, and admits again once it is drained", async () => {
    const audit = new MemoryAuditSink(2);
    const edge = verifier({ audit });
    await edge.check(call(check, bearer(token)));
    await edge.check(call(check, bearer(token)));
    await expectRefusal(edge.check(call(check, bearer(token))), Reason.AUDIT_UNAVAILABLE, Code.Unavailable);
    expect(audit.drain()).toHaveLength(2);
    await expect(edge.check(call(check, bearer(token)))).resolves.toBeDefined();
  });
});

describe("EdgeVerifier keys", () => {
  it("refuses with UNAVAILABLE REASON_KEYS_UNAVAILABLE when the resolver cannot know the keys", async () => {
    const audit = new MemoryAuditSink();
    const unavailable: MandateKeyResolver = () => {
      throw new MandateError(Reason.KEYS_UNAVAILABLE, "keys of zone acme are not available");
    };
    const error = await expectRefusal(verifier({ keys: unavailable, audit }).check(call(check, bearer(token))), Reason.KEYS_UNAVAILABLE, Code.Unavailable);
    expect(error.decisionId).toMatch(UUID);
    expect(audit.events).toEqual([expect.objectContaining({ decision: AuditDecision.DENY, reason: Reason.KEYS_UNAVAILABLE })]);
  });

  it("lets a resolver fault escape as itself, never as a refusal blamed on the token", async () => {
    const broken: MandateKeyResolver = () => {
      throw new Error("cache corrupted");
    };
    const outcome = verifier({ keys: broken }).check(call(check, bearer(token)));
    await expect(outcome).rejects.toThrow("cache corrupted");
    await expect(outcome).rejects.not.toBeInstanceOf(MandateError);
  });
});

describe("traceIdOf", () => {
  it("reads the trace id of a W3C traceparent and nothing else", () => {
    expect(traceIdOf(TRACEPARENT)).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(traceIdOf(null)).toBe("");
    expect(traceIdOf("00-xyz-00f067aa0ba902b7-01")).toBe("");
    expect(traceIdOf(`${TRACEPARENT}\n`)).toBe("");
  });
});

function revocation(target: RevocationTarget): RevocationEntry {
  return { id: `rev-${target.kind}`, zone: "acme", target, expiresAtMs: T0 + 3_600_000 };
}
