/**
 * An example grpc-js client of the billing service. It proves who it is to
 * Caracal's STS once (StartSession), trades the session for a resource
 * mandate per (resource, scopes) a method declares (Exchange), and attaches
 * it to each call; the mandates are cached until shortly before they expire.
 *
 *   npx tsx examples/grpc-js-service/client.ts
 *   # CARACAL_URL, BILLING_ADDRESS (default 127.0.0.1:50051), CARACAL_ZONE (acme),
 *   # CARACAL_CLIENT_ID (billing-agent), CARACAL_CLIENT_SECRET (required)
 */
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { MandateSource } from "../../clients/mandate-source.js";
import { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { grpcReasonOf } from "../../interceptors/grpc-js/grpc-status.js";
import { mandateClientInterceptor } from "../../interceptors/grpc-js/mandate-client-interceptor.js";
import { grpcServiceDefinition } from "../../interceptors/grpc-js/service-definition.js";
import {
  BillingService,
  CreateInvoiceRequestSchema,
  ListInvoicesRequestSchema,
  PingRequestSchema,
  WatchInvoicesRequestSchema,
  type CreateInvoiceRequest,
  type CreateInvoiceResponse,
  type Invoice,
  type ListInvoicesRequest,
  type ListInvoicesResponse,
  type PingRequest,
  type PingResponse,
  type WatchInvoicesRequest,
  type WatchInvoicesResponse,
} from "../gen/acme/billing/v1/billing_pb.js";

/** A unary method of a grpc-js client. Requests must be made with `create(Schema, …)`. */
type UnaryMethod<I, O> = {
  (request: I, callback: grpc.requestCallback<O>): grpc.ClientUnaryCall;
  (request: I, metadata: grpc.Metadata, callback: grpc.requestCallback<O>): grpc.ClientUnaryCall;
  (request: I, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<O>): grpc.ClientUnaryCall;
};

/** The billing service as a grpc-js client: method names are the protobuf-es `localName`s. */
export interface BillingClient extends grpc.Client {
  ping: UnaryMethod<PingRequest, PingResponse>;
  listInvoices: UnaryMethod<ListInvoicesRequest, ListInvoicesResponse>;
  createInvoice: UnaryMethod<CreateInvoiceRequest, CreateInvoiceResponse>;
  watchInvoices(request: WatchInvoicesRequest, metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<WatchInvoicesResponse>;
}

/** The grpc-js client class of the billing service, built from the protobuf-es descriptor. */
export const BillingClient = grpc.makeGenericClientConstructor(grpcServiceDefinition(BillingService), "BillingService") as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => BillingClient;

/** Options of {@link openBillingClient}. */
export interface BillingClientOptions {
  /** Caracal, e.g. `http://127.0.0.1:7070`. */
  readonly caracalUrl: string;
  /** The billing service, `host:port`. */
  readonly billingAddress: string;
  /** The zone the application lives in. */
  readonly zone: string;
  /** The application's client id. */
  readonly clientId: string;
  /** Its client secret. */
  readonly clientSecret: string;
}

/** A billing client and what it owns. */
export interface OpenBillingClient {
  readonly billing: BillingClient;
  /** Where its mandates come from. */
  readonly mandates: MandateSource;
  /** Closes the billing channel and the connection to Caracal. */
  close(): void;
}

/**
 * A grpc-js billing client whose calls carry a mandate for exactly what each
 * method declares in its proto.
 *
 * @example
 * const { billing, close } = openBillingClient({ caracalUrl, billingAddress: "127.0.0.1:50051", zone: "acme", clientId, clientSecret });
 * billing.listInvoices(create(ListInvoicesRequestSchema), (error, response) => …);
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
  const billing = new BillingClient(options.billingAddress, grpc.credentials.createInsecure(), {
    interceptors: [mandateClientInterceptor(mandates, { services: [BillingService] })],
  });
  return { billing, mandates, close: () => (billing.close(), sts.abort()) };
}

/** A unary call's response and the `x-caracal-decision-id` the service answered with. */
export interface Answered<O> {
  readonly response: O;
  readonly decisionId: string | undefined;
}

/**
 * Calls a unary method as a promise, keeping the decision id the service
 * answered, which joins this call to Caracal's audit ledger.
 *
 * @example
 * const { response, decisionId } = await unary((callback) => billing.listInvoices(create(ListInvoicesRequestSchema), callback));
 */
export function unary<O>(start: (callback: grpc.requestCallback<O>) => grpc.ClientUnaryCall): Promise<Answered<O>> {
  return new Promise((resolve, reject) => {
    let decisionId: string | undefined;
    const call = start((error, response) => (error ? reject(error) : resolve({ response: response!, decisionId })));
    call.on("metadata", (metadata: grpc.Metadata) => (decisionId = metadata.get("x-caracal-decision-id")[0]?.toString()));
  });
}


if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const clientSecret = process.env.CARACAL_CLIENT_SECRET;
  if (!clientSecret) throw new Error("set CARACAL_CLIENT_SECRET to the application's client secret");
  const { billing, close } = openBillingClient({
    caracalUrl: process.env.CARACAL_URL ?? "http://127.0.0.1:7070",
    billingAddress: process.env.BILLING_ADDRESS ?? "127.0.0.1:50051",
    zone: process.env.CARACAL_ZONE ?? "acme",
    clientId: process.env.CARACAL_CLIENT_ID ?? "billing-agent",
    clientSecret,
  });
  const show = (invoice: Invoice | undefined) => `${invoice?.invoiceId} ${invoice?.customer} ${invoice?.amountCents} (by ${invoice?.createdBy})`;
  try {
    const ping = await unary<PingResponse>((callback) => billing.ping(create(PingRequestSchema), callback));
    console.log(`Ping: ${ping.response.status}`);
    const list = await unary<ListInvoicesResponse>((callback) => billing.listInvoices(create(ListInvoicesRequestSchema), callback));
    console.log(`ListInvoices (decision ${list.decisionId}):`);
    for (const invoice of list.response.invoices) console.log(`  ${show(invoice)}`);
    console.log("WatchInvoices:");
    for await (const event of billing.watchInvoices(create(WatchInvoicesRequestSchema)) as AsyncIterable<WatchInvoicesResponse>) {
      console.log(`  ${show(event.invoice)}`);
    }
    const created = await unary<CreateInvoiceResponse>((callback) =>
      billing.createInvoice(create(CreateInvoiceRequestSchema, { customer: "umbrella", amountCents: 9_900n }), callback),
    ).catch((error: grpc.ServiceError) => error);
    if (created instanceof Error) console.log(`CreateInvoice refused: ${grpc.status[created.code]} REASON_${Reason[grpcReasonOf(created)]}`);
    else console.log(`CreateInvoice: ${show(created.response.invoice)}`);
  } finally {
    close();
  }
}
