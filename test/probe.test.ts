import { randomUUID } from "node:crypto";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AuditService } from "../gen/caracal/audit/v1/audit_service_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { ProbeService } from "../gen/caracal/probe/v1/probe_service_pb.js";
import { errorDetailOf, reasonOf } from "../interceptors/caracal-error.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { refusal } from "./support/refusal.js";

describe.each(HARNESS_KINDS)("the built-in probe service and DeleteZone on %s", (kind) => {
  let caracal: CaracalHarness;
  let probe: Client<typeof ProbeService>;
  let audit: Client<typeof AuditService>;

  beforeAll(async () => {
    caracal = await startHarness(kind);
    probe = createClient(ProbeService, createGrpcTransport({ baseUrl: caracal.baseUrl }));
    audit = caracal.serviceClient(AuditService);
  }, 120_000);

  afterAll(async () => {
    await caracal?.stop();
  });

  it("admits a mandate of any zone for caracal-probe at its own edge, refuses a missing scope, and records both", async () => {
    const zone = `probe-${kind.startsWith("postgres") ? "pg" : "lite"}`;
    await caracal.admin.createZone({ zone });
    await caracal.admin.createResource({ zone, resourceId: "caracal-probe", scopes: [{ name: "probe.call" }, { name: "probe.write" }] });
    const { clientSecret } = await caracal.admin.createApplication({ zone, clientId: "prober" });
    await caracal.admin.createGrant({ zone, clientId: "prober", resourceId: "caracal-probe", scopes: ["probe.call", "probe.write"] });
    const session = await caracal.sts.startSession({ zone, clientId: "prober", credential: { case: "clientSecret", value: clientSecret } });
    const { mandate } = await caracal.sts.exchange({ subjectToken: session.sessionMandate, resources: ["caracal-probe"], scopes: ["probe.call"] });
    const headers = (requestId: string) => ({ authorization: `Bearer ${mandate}`, "x-request-id": requestId });

    const allowed = randomUUID();
    expect(await probe.probe({ note: "hello" }, { headers: headers(allowed) })).toMatchObject({ note: "hello", clientId: "prober", zone });
    const denied = await refusal(probe.probeSensitive({ note: "write" }, { headers: headers(randomUUID()) }));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(reasonOf(denied)).toBe(Reason.SCOPE_MISSING);
    expect(reasonOf(await refusal(probe.probe({}, { headers: { "x-request-id": randomUUID() } })))).toBe(Reason.MANDATE_MISSING);

    const story = await vi.waitFor(
      async () => {
        const answer = await audit.explain({ zone, id: { case: "decisionId", value: errorDetailOf(denied)!.decisionId } });
        expect(answer.steps).toHaveLength(2);
        return answer;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(story.summary).toBe("denied: scope probe.write not in mandate");

    // A probe mandate is no admin mandate.
    const asAdmin = caracal.adminClient(caracal.mandateSource(zone, "prober", { clientSecret }));
    expect(reasonOf(await refusal(asAdmin.listZones({})))).toBe(Reason.RESOURCE_NOT_FOUND);
  });

  it("deletes a zone and everything in it, after confirmation, never the admin zone; the ledger keeps its records", async () => {
    const zone = `gone-${kind.startsWith("postgres") ? "pg" : "lite"}`;
    await caracal.admin.createZone({ zone });
    await caracal.admin.createApplication({ zone, clientId: "agent" });
    const unconfirmed = await refusal(caracal.admin.deleteZone({ zone, confirm: "other" }));
    expect(errorDetailOf(unconfirmed)?.metadata.field).toBe("confirm");
    const admin = await refusal(caracal.admin.deleteZone({ zone: caracal.profile.zone, confirm: caracal.profile.zone }));
    expect(admin.code).toBe(Code.FailedPrecondition);

    await caracal.admin.deleteZone({ zone, confirm: zone });
    expect(reasonOf(await refusal(caracal.admin.getZone({ zone })))).toBe(Reason.ZONE_NOT_FOUND);
    expect(await caracal.sql("SELECT 1 FROM applications a JOIN zones z ON z.id = a.zone_id WHERE z.slug = $1", [zone])).toEqual([]);
    await vi.waitFor(async () => expect((await audit.query({ filter: { zone } })).records.map((r) => r.event?.action)).toContain("zone deleted"), {
      timeout: 10_000,
      interval: 100,
    });
  });
});
