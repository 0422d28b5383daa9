import { createHash } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditDecision, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { Decision, type PolicySourceSchema } from "../gen/caracal/policy/v1/policy_pb.js";
import { PolicyService } from "../gen/caracal/policy/v1/policy_service_pb.js";
import { TokenService } from "../gen/caracal/sts/v1/token_service_pb.js";
import { errorDetailOf, reasonOf } from "../interceptors/caracal-error.js";
import { SERVICE_NAMES } from "../services/config.js";
import { ActivePolicySets } from "../services/policy/active-policy-sets.js";
import { CedarEngine } from "../services/policy/cedar-engine.js";
import { startCaracalServer } from "../services/server/caracal-server.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { refusal } from "./support/refusal.js";

type Source = MessageInitShape<typeof PolicySourceSchema>;

const source = (...texts: string[]): Source => ({ documents: texts.map((text, i) => ({ name: `p${i}.cedar`, text })) });

const SESSIONS = '@id("sessions")\npermit(principal, action == Action::"StartSession", resource);';
const READ = '@id("read-invoices")\npermit(principal, action == Action::"invoices.read", resource == Resource::"billing-api");';
const REPORTS = '@id("reports")\npermit(principal, action == Action::"reports.read", resource);';
const NO_SANDBOX = '@id("no-sandbox")\nforbid(principal, action, resource) when { principal.labels has env && principal.labels.env == "sandbox" };';
const WRITE_STEP_UP = '@id("write-with-approval")\n@step_up("approval")\npermit(principal, action == Action::"invoices.write", resource == Resource::"billing-api");';

describe.each(HARNESS_KINDS)("policy sets on %s", (kind) => {
  let caracal: CaracalHarness;
  let policy: Client<typeof PolicyService>;
  let zones = 0;

  beforeAll(async () => {
    caracal = await startHarness(kind);
    policy = caracal.serviceClient(PolicyService);
  }, 120_000);

  afterAll(async () => {
    await caracal?.stop();
  });

  /** A zone with billing-api and reports-api, and an agent granted everything on both. */
  async function zoneWithAgent(labels: Record<string, string> = {}): Promise<{ zone: string; secret: string }> {
    const zone = `pol-${kind.startsWith("postgres") ? "pg" : "lite"}-${++zones}`;
    await caracal.admin.createZone({ zone });
    await caracal.admin.createResource({ zone, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
    await caracal.admin.createResource({ zone, resourceId: "reports-api", scopes: [{ name: "reports.read" }] });
    const { clientSecret } = await caracal.admin.createApplication({ zone, clientId: "agent", labels });
    await caracal.admin.createGrant({ zone, clientId: "agent", resourceId: "billing-api", scopes: ["invoices.read", "invoices.write"] });
    await caracal.admin.createGrant({ zone, clientId: "agent", resourceId: "reports-api", scopes: ["reports.read"] });
    return { zone, secret: clientSecret };
  }

  const startSession = (zone: string, secret: string) =>
    caracal.sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: secret } });
  const exchange = (subjectToken: string, resource: string, scope: string) =>
    caracal.sts.exchange({ subjectToken, resources: [resource], scopes: [scope] });

  /** Stores `src` as a new version and activates it over whatever is active. */
  async function activate(zone: string, src: Source): Promise<number> {
    const { version } = await policy.createPolicySetVersion({ zone, source: src, message: "test" });
    const { versions, activeVersion } = await policy.listPolicySetVersions({ zone });
    expect(versions[0]?.version).toBe(version!.version);
    await policy.activatePolicySet({ zone, version: version!.version, expectedCurrentVersion: activeVersion, reason: "test" });
    return Number(version!.version);
  }

  describe("ValidatePolicySet", () => {
    it("reports each syntax and schema problem with document, policy id, line and column, and stores nothing", async () => {
      const { zone } = await zoneWithAgent();
      const before = await caracal.snapshot();
      const syntax = await policy.validatePolicySet({
        zone,
        source: { documents: [{ name: "ok.cedar", text: READ }, { name: "broken.cedar", text: "\n\npermit(principal, action, resource) when { principal. };" }] },
      });
      expect(syntax.valid).toBe(false);
      expect(syntax.problems).toHaveLength(1);
      expect(syntax.problems[0]).toMatchObject({ document: "broken.cedar", line: 3, schemaError: false });
      expect(syntax.problems[0]!.column).toBeGreaterThan(1);

      const schema = 'entity Application = { labels: { env: String } }; entity Resource; action "invoices.read" appliesTo { principal: Application, resource: Resource };';
      const typed = await policy.validatePolicySet({
        zone,
        source: {
          documents: [{ name: "typed.cedar", text: '@id("typo")\npermit(principal, action == Action::"invoices.read", resource) when { principal.lables.env == "prod" };' }],
          schema,
        },
      });
      expect(typed.valid).toBe(false);
      expect(typed.problems[0]).toMatchObject({ document: "typed.cedar", policyId: "typo", line: 2, schemaError: true });

      expect((await policy.validatePolicySet({ zone, source: source(READ, SESSIONS) })).valid).toBe(true);
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("refuses a malformed source with INVALID_ARGUMENT naming the field", async () => {
      const { zone } = await zoneWithAgent();
      const empty = await refusal(policy.validatePolicySet({ zone, source: { documents: [] } }));
      expect(empty.code).toBe(Code.InvalidArgument);
      expect(reasonOf(empty)).toBe(Reason.INVALID_ARGUMENT);
      expect(errorDetailOf(empty)?.metadata.field).toBe("source.documents");
      const twice = await refusal(policy.validatePolicySet({ zone, source: { documents: [{ name: "a.cedar", text: READ }, { name: "a.cedar", text: READ }] } }));
      expect(errorDetailOf(twice)?.metadata.field).toBe("source.documents.name");
      const missingZone = await refusal(policy.validatePolicySet({ zone: "no-such-zone", source: source(READ) }));
      expect(reasonOf(missingZone)).toBe(Reason.ZONE_NOT_FOUND);
    });
  });

  describe("versions", () => {
    it("numbers immutable versions per zone with content hash, author and message, newest first", async () => {
      const { zone } = await zoneWithAgent();
      const first = (await policy.createPolicySetVersion({ zone, source: source(READ), message: "first" })).version!;
      const second = (await policy.createPolicySetVersion({ zone, source: source(READ, REPORTS), message: "add reports" })).version!;
      expect([first.version, second.version]).toEqual([1n, 2n]);
      const canonical = JSON.stringify({ documents: [["p0.cedar", READ]], schema: "" });
      expect(first.contentHash).toBe(createHash("sha256").update(canonical).digest("hex"));
      expect(first).toMatchObject({ zone, author: caracal.profile.client_id, message: "first" });

      const listed = await policy.listPolicySetVersions({ zone, pageSize: 1 });
      expect(listed.versions.map((v) => v.version)).toEqual([2n]);
      expect(listed.versions[0]!.source).toBeUndefined();
      expect(listed.activeVersion).toBe(0n);
      const next = await policy.listPolicySetVersions({ zone, pageSize: 1, pageToken: listed.nextPageToken });
      expect(next.versions.map((v) => v.version)).toEqual([1n]);
      expect(next.nextPageToken).toBe("");

      // Immutable in the store itself, not only by the API's shape.
      await expect(caracal.sql("UPDATE policy_set_versions SET message = 'edited'")).rejects.toThrow(/immutable/);
    });

    it("refuses an invalid set with INVALID_ARGUMENT, REASON_POLICY_INVALID and the first problem's position, storing nothing", async () => {
      const { zone } = await zoneWithAgent();
      const before = await caracal.snapshot();
      const error = await refusal(policy.createPolicySetVersion({ zone, source: { documents: [{ name: "bad.cedar", text: "permit(" }] }, message: "" }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(reasonOf(error)).toBe(Reason.POLICY_INVALID);
      expect(errorDetailOf(error)?.metadata).toMatchObject({ document: "bad.cedar", line: "1", problems: "1" });
      expect(await caracal.snapshot()).toEqual(before);
    });
  });

  describe("ActivatePolicySet", () => {
    it("switches atomically under the expected version, records who and why, audits it, and rolls back", async () => {
      const { zone } = await zoneWithAgent();
      const v1 = (await policy.createPolicySetVersion({ zone, source: source(SESSIONS, READ), message: "v1" })).version!.version;
      const v2 = (await policy.createPolicySetVersion({ zone, source: source(SESSIONS, READ, REPORTS), message: "v2" })).version!.version;
      expect((await policy.getActivePolicySet({ zone })).version).toBeUndefined();

      const stale = await refusal(policy.activatePolicySet({ zone, version: v1, expectedCurrentVersion: 7n, reason: "go" }));
      expect(stale.code).toBe(Code.Aborted);
      expect(reasonOf(stale)).toBe(Reason.VERSION_CONFLICT);
      expect(errorDetailOf(stale)?.metadata).toMatchObject({ expected_current_version: "7", active_version: "0" });

      expect(await policy.activatePolicySet({ zone, version: v1, expectedCurrentVersion: 0n, reason: "first rollout" })).toMatchObject({
        activeVersion: v1,
        previousVersion: 0n,
      });
      // Two operators who both read "v1 is active": exactly one switch wins.
      const raced = await Promise.allSettled([
        policy.activatePolicySet({ zone, version: v2, expectedCurrentVersion: v1, reason: "operator a" }),
        policy.activatePolicySet({ zone, version: v2, expectedCurrentVersion: v1, reason: "operator b" }),
      ]);
      expect(raced.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const loser = raced.find((r) => r.status === "rejected") as PromiseRejectedResult;
      expect(reasonOf(loser.reason)).toBe(Reason.VERSION_CONFLICT);

      const active = await policy.getActivePolicySet({ zone });
      expect(active.version?.version).toBe(v2);
      expect(active.version?.source?.documents.map((d) => d.name)).toEqual(["p0.cedar", "p1.cedar", "p2.cedar"]);
      expect(active.activatedBy).toBe(caracal.profile.client_id);
      expect(["operator a", "operator b"]).toContain(active.reason);

      // Rollback is activating the older version.
      await policy.activatePolicySet({ zone, version: v1, expectedCurrentVersion: v2, reason: "roll back" });
      expect((await policy.getActivePolicySet({ zone })).version?.version).toBe(v1);
      expect((await policy.listPolicySetVersions({ zone })).activeVersion).toBe(v1);

      await caracal.audit.settle();
      const changes = caracal.audit.events.filter((e) => e.zone === zone && e.event.type === EventType.POLICY_CHANGE).map((e) => e.event);
      expect(changes.map((e) => e.action)).toEqual([
        "policy set version created",
        "policy set version created",
        "policy set activated",
        "policy set activated",
        "policy set activated",
      ]);
      expect(changes.at(-1)).toMatchObject({ actor: caracal.profile.client_id, policySetVersion: v1 });
      expect(changes.at(-1)?.attributes).toMatchObject({ previous_version: String(v2), reason: "roll back" });
    });

    it("refuses an unknown version with NOT_FOUND, and a missing reason with INVALID_ARGUMENT", async () => {
      const { zone } = await zoneWithAgent();
      const missing = await refusal(policy.activatePolicySet({ zone, version: 9n, expectedCurrentVersion: 0n, reason: "x" }));
      expect(missing.code).toBe(Code.NotFound);
      await policy.createPolicySetVersion({ zone, source: source(READ), message: "" });
      const noReason = await refusal(policy.activatePolicySet({ zone, version: 1n, expectedCurrentVersion: 0n, reason: " " }));
      expect(errorDetailOf(noReason)?.metadata.field).toBe("reason");
    });
  });

  describe("the STS consults the active set", () => {
    it("uses grants alone without an active set, and stamps version 0", async () => {
      const { zone, secret } = await zoneWithAgent();
      const session = await startSession(zone, secret);
      expect(session.info?.policySetVersion).toBe(0n);
      const granted = await exchange(session.sessionMandate, "reports-api", "reports.read");
      expect(granted.info?.policySetVersion).toBe(0n);
    });

    it("allows what the set permits, denies what it does not, and carries the version on mandates and audit events", async () => {
      const { zone, secret } = await zoneWithAgent();
      const version = await activate(zone, source(SESSIONS, READ));
      const session = await startSession(zone, secret);
      expect(session.info?.policySetVersion).toBe(BigInt(version));
      const allowed = await exchange(session.sessionMandate, "billing-api", "invoices.read");
      expect(allowed.info?.policySetVersion).toBe(BigInt(version));

      // Granted, but no policy permits it: policy narrows grants.
      const denied = await refusal(exchange(session.sessionMandate, "reports-api", "reports.read"));
      expect(denied.code).toBe(Code.PermissionDenied);
      expect(reasonOf(denied)).toBe(Reason.POLICY_DENIED);
      expect(errorDetailOf(denied)?.metadata).toMatchObject({ resource: "reports-api", scope: "reports.read" });

      await caracal.audit.settle();
      expect(caracal.audit.forDecision(allowed.decisionId)).toEqual([
        expect.objectContaining({ decision: AuditDecision.ALLOW, policySetVersion: BigInt(version), determiningPolicies: ["read-invoices"] }),
      ]);
      expect(caracal.audit.forDecision(errorDetailOf(denied)!.decisionId)).toEqual([
        expect.objectContaining({ decision: AuditDecision.DENY, reason: Reason.POLICY_DENIED, policySetVersion: BigInt(version), determiningPolicies: [] }),
      ]);
    });

    it("lets a forbid override a permit, naming the forbid in the audit event", async () => {
      const { zone, secret } = await zoneWithAgent({ env: "sandbox" });
      const version = await activate(zone, source(SESSIONS, READ, NO_SANDBOX));
      const error = await refusal(startSession(zone, secret));
      expect(reasonOf(error)).toBe(Reason.POLICY_DENIED);
      await caracal.audit.settle();
      expect(caracal.audit.forDecision(errorDetailOf(error)!.decisionId)).toEqual([
        expect.objectContaining({ type: EventType.START_SESSION, policySetVersion: BigInt(version), determiningPolicies: ["no-sandbox"] }),
      ]);
    });

    it("refuses a session when the set does not permit StartSession", async () => {
      const { zone, secret } = await zoneWithAgent();
      await activate(zone, source(READ));
      const error = await refusal(startSession(zone, secret));
      expect(error.code).toBe(Code.PermissionDenied);
      expect(reasonOf(error)).toBe(Reason.POLICY_DENIED);
      expect(errorDetailOf(error)?.metadata).toMatchObject({ resource: "caracal:sts", scope: "StartSession" });
    });

    it("holds a step-up request with FAILED_PRECONDITION and REASON_INTERACTION_REQUIRED, audited as a step-up", async () => {
      const { zone, secret } = await zoneWithAgent();
      await activate(zone, source(SESSIONS, READ, WRITE_STEP_UP));
      const session = await startSession(zone, secret);
      const held = await refusal(exchange(session.sessionMandate, "billing-api", "invoices.write"));
      expect(held.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(held)).toBe(Reason.INTERACTION_REQUIRED);
      expect(errorDetailOf(held)?.metadata.step_up).toBe("approval");
      await caracal.audit.settle();
      expect(caracal.audit.forDecision(errorDetailOf(held)!.decisionId)).toEqual([
        expect.objectContaining({ decision: AuditDecision.STEP_UP, reason: Reason.INTERACTION_REQUIRED, determiningPolicies: ["write-with-approval"] }),
      ]);
    });

    it("denies with REASON_POLICY_EVAL_FAILED when evaluation errors, never allows", async () => {
      const { zone, secret } = await zoneWithAgent();
      // Reads a label the agent does not have, without `has`: an evaluation error in a forbid.
      await activate(zone, source(SESSIONS, READ, 'forbid(principal, action == Action::"invoices.read", resource) when { principal.labels.env == "sandbox" };'));
      const session = await startSession(zone, secret);
      const error = await refusal(exchange(session.sessionMandate, "billing-api", "invoices.read"));
      expect(error.code).toBe(Code.PermissionDenied);
      expect(reasonOf(error)).toBe(Reason.POLICY_EVAL_FAILED);
      // The engine's error names policy internals: it is logged, not sent to the caller.
      expect(error.rawMessage).not.toContain("labels");
    });

    it("switches another replica to a new version within a second (bus notice, with the poll behind it)", async () => {
      const { zone, secret } = await zoneWithAgent();
      const replica = await startCaracalServer({
        config: { listen: { host: "127.0.0.1", port: 0 }, services: SERVICE_NAMES, shutdownGraceMs: 500 },
        store: caracal.store,
        bus: caracal.bus,
        kek: caracal.kek,
        log: pino({ level: "silent" }),
        now: caracal.clock.now,
      });
      try {
        const sts = createClient(TokenService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${replica.address.port}` }));
        await activate(zone, source(SESSIONS, READ));
        const session = await sts.startSession({ zone, clientId: "agent", credential: { case: "clientSecret", value: secret } });
        await sts.exchange({ subjectToken: session.sessionMandate, resources: ["billing-api"], scopes: ["invoices.read"] });

        // The replica has v1 cached; the switch happens on the harness server.
        const switched = Date.now();
        await activate(zone, source(SESSIONS, REPORTS));
        let refusedAfterMs = -1;
        while (Date.now() - switched < 1_000) {
          try {
            await sts.exchange({ subjectToken: session.sessionMandate, resources: ["billing-api"], scopes: ["invoices.read"] });
          } catch (error) {
            expect(reasonOf(error)).toBe(Reason.POLICY_DENIED);
            refusedAfterMs = Date.now() - switched;
            break;
          }
        }
        expect(refusedAfterMs).toBeGreaterThanOrEqual(0);
      } finally {
        await replica.close();
      }
    });

    it("falls back to polling the store when a notice is lost", async () => {
      const { zone } = await zoneWithAgent();
      const [zoneRow] = await caracal.sql<{ id: string }>("SELECT id FROM zones WHERE slug = $1", [zone]);
      let wall = 0;
      // Not following the bus: only the poll can show the switch.
      const sets = new ActivePolicySets(caracal.store, new CedarEngine(), { pollMs: 1_000, now: () => wall });
      const ref = { id: zoneRow!.id, slug: zone };
      const v1 = await activate(zone, source(SESSIONS));
      expect((await sets.active(ref)).version).toBe(v1);
      const v2 = await activate(zone, source(SESSIONS, READ));
      wall += 999;
      expect((await sets.active(ref)).version).toBe(v1);
      wall += 1;
      expect((await sets.active(ref)).version).toBe(v2);
    });
  });

  describe("Evaluate", () => {
    it("answers with decision, determining policies, reasons and version, for the active or a named version", async () => {
      const { zone } = await zoneWithAgent();
      const request = { clientId: "agent", resource: "billing-api", scope: "invoices.read" };
      const none = await policy.evaluate({ zone, request });
      expect(none).toMatchObject({ policySetVersion: 0n, outcome: { decision: Decision.ALLOW } });

      const v1 = await activate(zone, source(SESSIONS, READ));
      const v2 = await activate(zone, source(SESSIONS, READ, NO_SANDBOX));
      const allowed = await policy.evaluate({ zone, request });
      expect(allowed.policySetVersion).toBe(BigInt(v2));
      expect(allowed.outcome).toMatchObject({ decision: Decision.ALLOW, determiningPolicies: ["read-invoices"] });
      expect(allowed.outcome?.reasons.join()).toContain("read-invoices");

      const sandbox = { ...request, applicationLabels: { env: "sandbox" } };
      expect((await policy.evaluate({ zone, request: sandbox })).outcome).toMatchObject({ decision: Decision.DENY, determiningPolicies: ["no-sandbox"] });
      expect((await policy.evaluate({ zone, request: sandbox, version: BigInt(v1) })).outcome?.decision).toBe(Decision.ALLOW);

      const session = await policy.evaluate({ zone, request: { clientId: "agent", scope: "StartSession" } });
      expect(session.outcome).toMatchObject({ decision: Decision.ALLOW, determiningPolicies: ["sessions"] });

      const bad = await refusal(policy.evaluate({ zone, request: { ...request, scope: "Not A Scope" } }));
      expect(errorDetailOf(bad)?.metadata.field).toBe("request.scope");
      const unknown = await refusal(policy.evaluate({ zone, request, version: 99n }));
      expect(unknown.code).toBe(Code.NotFound);
    });
  });

  describe("the admin zone", () => {
    it("refuses a version that would lock the activating operator out of the admin plane", async () => {
      const zone = caracal.profile.zone;
      const { activeVersion } = await policy.listPolicySetVersions({ zone });
      const narrow = (await policy.createPolicySetVersion({ zone, source: source(SESSIONS), message: "forgets the admin plane" })).version!;
      const before = await caracal.snapshot();
      const refused = await refusal(policy.activatePolicySet({ zone, version: narrow.version, expectedCurrentVersion: activeVersion, reason: "oops" }));
      expect(refused.code).toBe(Code.FailedPrecondition);
      expect(reasonOf(refused)).toBe(Reason.POLICY_DENIED);
      expect(errorDetailOf(refused)?.metadata).toMatchObject({ scope: "policy.write", resource: "caracal-admin" });
      expect(await caracal.snapshot()).toEqual(before);

      // A set that keeps the operator in is accepted, and the admin plane keeps working under it.
      const admin = `@id("operators")\npermit(principal == Application::"${caracal.profile.client_id}", action, resource);`;
      const kept = (await policy.createPolicySetVersion({ zone, source: source(SESSIONS, admin), message: "operators keep the admin plane" })).version!;
      await policy.activatePolicySet({ zone, version: kept.version, expectedCurrentVersion: activeVersion, reason: "lock down the admin zone" });
      expect((await caracal.admin.listZones({})).zones.length).toBeGreaterThan(0);
    });
  });

  describe("SimulatePolicySet", () => {
    it("reports each request given in the call whose decision would change, before and after, grouped", async () => {
      const { zone } = await zoneWithAgent();
      await activate(zone, source(SESSIONS, READ, REPORTS));
      const requests = [
        { clientId: "agent", resource: "billing-api", scope: "invoices.read", applicationLabels: { env: "sandbox" } },
        { clientId: "agent", resource: "billing-api", scope: "invoices.read", applicationLabels: { env: "prod" } },
        { clientId: "agent", resource: "reports-api", scope: "reports.read", applicationLabels: { env: "sandbox" } },
        { clientId: "agent", resource: "billing-api", scope: "invoices.read", applicationLabels: { env: "sandbox" } },
      ];
      const result = await policy.simulatePolicySet({
        zone,
        candidate: { case: "candidateSource", value: source(SESSIONS, READ, REPORTS, NO_SANDBOX) },
        traffic: { case: "requests", value: { requests } },
      });
      expect(result).toMatchObject({ candidateVersion: 0n, evaluated: 4, changed: 3, changesTruncated: false });
      expect(result.changes.map((c) => [c.request?.resource, c.before?.decision, c.after?.decision, c.after?.determiningPolicies])).toEqual([
        ["billing-api", Decision.ALLOW, Decision.DENY, ["no-sandbox"]],
        ["reports-api", Decision.ALLOW, Decision.DENY, ["no-sandbox"]],
        ["billing-api", Decision.ALLOW, Decision.DENY, ["no-sandbox"]],
      ]);
      expect(result.changes[0]?.before?.determiningPolicies).toEqual(["read-invoices"]);
      expect(result.groups.map((g) => [g.resource, g.scope, g.count, g.beforePolicies, g.afterPolicies])).toEqual([
        ["billing-api", "invoices.read", 2, ["read-invoices"], ["no-sandbox"]],
        ["reports-api", "reports.read", 1, ["reports"], ["no-sandbox"]],
      ]);
    });

    it("replays the zone's recorded decisions against a stored candidate, naming the decision each came from", async () => {
      const { zone, secret } = await zoneWithAgent();
      // Recorded before any set is active: the default decided them.
      const session = await startSession(zone, secret);
      const read = await exchange(session.sessionMandate, "billing-api", "invoices.read");
      const reports = await exchange(session.sessionMandate, "reports-api", "reports.read");
      const candidate = (await policy.createPolicySetVersion({ zone, source: source(SESSIONS, READ), message: "no reports" })).version!.version;

      let result;
      for (let attempt = 0; attempt < 50; attempt++) {
        result = await policy.simulatePolicySet({ zone, candidate: { case: "candidateVersion", value: candidate }, traffic: { case: "recentDecisions", value: 10 } });
        if (result.evaluated === 3) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(result).toMatchObject({ baselineVersion: 0n, candidateVersion: candidate, evaluated: 3, changed: 3 });
      // Newest first; the default allowed everything, the candidate permits two of three with named policies.
      expect(result!.changes.map((c) => [c.sourceDecisionId, c.request?.scope, c.after?.decision, c.after?.determiningPolicies])).toEqual([
        [reports.decisionId, "reports.read", Decision.DENY, []],
        [read.decisionId, "invoices.read", Decision.ALLOW, ["read-invoices"]],
        [session.decisionId, "StartSession", Decision.ALLOW, ["sessions"]],
      ]);
      expect(result!.changes.every((c) => c.before?.decision === Decision.ALLOW)).toBe(true);
    });

    it("refuses traffic outside 1–10,000 recorded decisions and an invalid candidate", async () => {
      const { zone } = await zoneWithAgent();
      const zero = await refusal(policy.simulatePolicySet({ zone, candidate: { case: "candidateSource", value: source(READ) }, traffic: { case: "recentDecisions", value: 0 } }));
      expect(errorDetailOf(zero)?.metadata.field).toBe("recent_decisions");
      const invalid = await refusal(
        policy.simulatePolicySet({ zone, candidate: { case: "candidateSource", value: source("permit(") }, traffic: { case: "recentDecisions", value: 5 } }),
      );
      expect(reasonOf(invalid)).toBe(Reason.POLICY_INVALID);
    });
  });
});
