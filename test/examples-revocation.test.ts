/**
 * Both example services on Caracal's NATS: a session revoked through
 * RevocationService stops working at both, by itself, within moments.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationService } from "../gen/caracal/revocation/v1/revocation_service_pb.js";
import { BillingService } from "../examples/gen/acme/billing/v1/billing_pb.js";
import { startBillingServer as startConnectBilling } from "../examples/connect-service/server.js";
import { startBillingServer as startGrpcBilling } from "../examples/grpc-js-service/server.js";
import { reasonOf } from "../interceptors/caracal-error.js";
import { mandateClientInterceptor } from "../interceptors/connect/mandate-client-interceptor.js";
import { startHarness, type CaracalHarness } from "./support/caracal-harness.js";

describe("the example services with revocations over NATS", () => {
  let caracal: CaracalHarness;
  const servers: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    caracal = await startHarness("postgres+nats");
  }, 120_000);

  afterAll(async () => {
    for (const server of servers) await server.close();
    await caracal?.stop();
  });

  it("refuses a revoked session's mandate at both services, and keeps serving other sessions", async () => {
    await caracal.admin.createZone({ zone: "acme" });
    await caracal.admin.createResource({ zone: "acme", resourceId: "billing-api", scopes: [{ name: "invoices.read" }] });
    const { clientSecret } = await caracal.admin.createApplication({ zone: "acme", clientId: "billing-agent" });
    await caracal.admin.createGrant({ zone: "acme", clientId: "billing-agent", resourceId: "billing-api", scopes: ["invoices.read"] });

    const connectBilling = await startConnectBilling({ caracalUrl: caracal.baseUrl, port: 0, nats: caracal.nats });
    const grpcBilling = await startGrpcBilling({ caracalUrl: caracal.baseUrl, port: 0, nats: caracal.nats });
    servers.push(connectBilling, grpcBilling);

    const agent = (label: string) => {
      const source = caracal.mandateSource("acme", "billing-agent", { clientSecret });
      const client = (baseUrl: string) => createClient(BillingService, createGrpcTransport({ baseUrl, interceptors: [mandateClientInterceptor(source)] }));
      return { source, label, clients: [client(connectBilling.url), client(`http://${grpcBilling.address}`)] };
    };
    const revoked = agent("revoked");
    const kept = agent("kept");
    for (const { clients } of [revoked, kept]) for (const billing of clients) await billing.listInvoices({});

    const sessionId = JSON.parse(Buffer.from((await revoked.source.sessionMandate()).split(".")[1]!, "base64url").toString()).sid as string;
    const revocations = createClient(
      RevocationService,
      createGrpcTransport({
        baseUrl: caracal.baseUrl,
        interceptors: [mandateClientInterceptor(caracal.mandateSource(caracal.profile.zone, caracal.profile.client_id, { clientSecret: caracal.profile.client_secret }))],
      }),
    );
    await revocations.revoke({ zone: "acme", reason: "example test", target: { target: { case: "sessionId", value: sessionId } } });

    for (const billing of revoked.clients) {
      const deadline = Date.now() + 5_000;
      let reason: Reason | undefined;
      while (Date.now() < deadline) {
        try {
          await billing.listInvoices({});
        } catch (error) {
          expect(ConnectError.from(error).code).toBe(Code.Unauthenticated);
          reason = reasonOf(error);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(reason).toBe(Reason.MANDATE_REVOKED);
    }
    for (const billing of kept.clients) await expect(billing.listInvoices({})).resolves.toBeDefined();
  }, 60_000);
});
