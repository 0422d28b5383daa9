/**
 * An example Connect client of the billing service. It proves who it is to
 * Caracal's STS once (StartSession), trades the session for a resource
 * mandate per (resource, scopes) a method declares (Exchange), and attaches
 * it to each call; the mandates are cached until shortly before they expire.
 *
 *   npx tsx examples/connect-service/client.ts
 *   # CARACAL_URL, BILLING_URL (default http://127.0.0.1:8080), CARACAL_ZONE (acme),
 *   # CARACAL_CLIENT_ID (billing-agent), CARACAL_CLIENT_SECRET (required)
 */
import { pathToFileURL } from "node:url";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { MandateSource } from "../../clients/mandate-source.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { reasonOf } from "../../interceptors/caracal-error.js";
import { mandateClientInterceptor } from "../../interceptors/connect/mandate-client-interceptor.js";
import { BillingService, type Invoice } from "../gen/acme/billing/v1/billing_pb.js";

/** Options of {@link openBillingClient}. */
export interface BillingClientOptions {
  /** Caracal, e.g. `http://127.0.0.1:7070`. */
  readonly caracalUrl: string;
  /** The billing service, e.g. `http://127.0.0.1:8080`. */
  readonly billingUrl: string;
  /** The zone the application lives in. */
  readonly zone: string;
  /** The application's client id. */
  readonly clientId: string;
  /** Its client secret. */
  readonly clientSecret: string;
}

/** A billing client and what it owns. */
export interface OpenBillingClient {
  readonly billing: Client<typeof BillingService>;
  /** Where its mandates come from. */
  readonly mandates: MandateSource;
  /** Closes the HTTP/2 connections to the billing service and to Caracal. */
  close(): void;
}

/**
 * A Connect billing client (Connect protocol over HTTP/2) whose calls carry a
 * mandate for exactly what each method declares in its proto.
 *
 * @example
 * const { billing, close } = openBillingClient({ caracalUrl, billingUrl: "http://127.0.0.1:8080", zone: "acme", clientId, clientSecret });
 * const { invoices } = await billing.listInvoices({});
 */
export function openBillingClient(options: BillingClientOptions): OpenBillingClient {
  // Caracal: an STS client, a mandate source for this application, and the
  // interceptor that attaches a mandate to every call that needs one.
  const sts = new Http2SessionManager(options.caracalUrl);
  const mandates = new MandateSource({
    sts: createClient(TokenService, createGrpcTransport({ baseUrl: options.caracalUrl, sessionManager: sts })),
    zone: options.zone,
    clientId: options.clientId,
    credential: { clientSecret: options.clientSecret },
  });
  const service = new Http2SessionManager(options.billingUrl);
  const billing = createClient(
    BillingService,
    createConnectTransport({ baseUrl: options.billingUrl, httpVersion: "2", sessionManager: service, interceptors: [mandateClientInterceptor(mandates)] }),
  );
  return { billing, mandates, close: () => (service.abort(), sts.abort()) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const clientSecret = process.env.CARACAL_CLIENT_SECRET;
  if (!clientSecret) throw new Error("set CARACAL_CLIENT_SECRET to the application's client secret");
  const { billing, close } = openBillingClient({
    caracalUrl: process.env.CARACAL_URL ?? "http://127.0.0.1:7070",
    billingUrl: process.env.BILLING_URL ?? "http://127.0.0.1:8080",
    zone: process.env.CARACAL_ZONE ?? "acme",
    clientId: process.env.CARACAL_CLIENT_ID ?? "billing-agent",
    clientSecret,
  });
  const show = (invoice: Invoice | undefined) => `${invoice?.invoiceId} ${invoice?.customer} ${invoice?.amountCents} (by ${invoice?.createdBy})`;
  try {
    console.log(`Ping: ${(await billing.ping({})).status}`);
    let decisionId: string | null = null;
    const { invoices } = await billing.listInvoices({}, { onHeader: (header) => (decisionId = header.get("x-caracal-decision-id")) });
    console.log(`ListInvoices (decision ${decisionId}):`);
    for (const invoice of invoices) console.log(`  ${show(invoice)}`);
    console.log("WatchInvoices:");
    for await (const event of billing.watchInvoices({})) console.log(`  ${show(event.invoice)}`);
    try {
      const { invoice } = await billing.createInvoice({ customer: "umbrella", amountCents: 9_900n });
      console.log(`CreateInvoice: ${show(invoice)}`);
    } catch (error) {
      const refusal = ConnectError.from(error);
      console.log(`CreateInvoice refused: ${Code[refusal.code]} REASON_${Reason[reasonOf(refusal)]}`);
    }
  } finally {
    close();
  }
}
