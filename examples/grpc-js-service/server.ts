/**
 * An example grpc-js service protected by Caracal: `acme.billing.v1.BillingService`,
 * whose proto declares on each method the resource and scope a caller's
 * mandate must carry. The server verifies mandates at its own edge, with the
 * zone keys from Caracal's JWKS endpoint; no call to Caracal per request.
 *
 *   npx tsx examples/grpc-js-service/server.ts     # CARACAL_URL, PORT (default 50051)
 */
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { edgeServerInterceptor, verifiedMandate } from "../../interceptors/grpc-js/edge-server-interceptor.js";
import { grpcServiceDefinition, UNDECODABLE } from "../../interceptors/grpc-js/service-definition.js";
import type { MandateClaims } from "../../interceptors/mandate-claims.js";
import {
  BillingService,
  CreateInvoiceResponseSchema,
  ListInvoicesResponseSchema,
  PingResponseSchema,
  WatchInvoicesResponseSchema,
  type CreateInvoiceRequest,
  type CreateInvoiceResponse,
  type ListInvoicesRequest,
  type ListInvoicesResponse,
  type PingRequest,
  type PingResponse,
  type WatchInvoicesRequest,
  type WatchInvoicesResponse,
} from "../gen/acme/billing/v1/billing_pb.js";
import { caracalEdge, type CaracalNats } from "../caracal-edge.js";
import { InvoiceBook } from "../invoice-book.js";

/** Options of {@link startBillingServer}. */
export interface BillingServerOptions {
  /** Where Caracal serves its JWKS, e.g. `http://127.0.0.1:7070`. */
  readonly caracalUrl: string;
  /** Port to listen on, on 127.0.0.1; 0 picks a free one. */
  readonly port: number;
  /** Caracal's NATS, for revocations and the audit ledger; without it the server checks signatures and claims only. */
  readonly nats?: CaracalNats;
  /** Told about every call a handler serves, with the caller's verified mandate (undefined on `Ping`). */
  readonly onCall?: (method: string, mandate: MandateClaims | undefined) => void;
}

/** A running billing server. */
export interface BillingServer {
  /** `127.0.0.1:<port>`, for grpc-js clients. */
  readonly address: string;
  /** Stops accepting calls, ends the open ones, stops refreshing keys. */
  close(): Promise<void>;
}

/**
 * Starts the billing service on grpc-js with Caracal's edge interceptor.
 *
 * @example
 * const billing = await startBillingServer({ caracalUrl: "http://127.0.0.1:7070", port: 50051 });
 */
export async function startBillingServer(options: BillingServerOptions): Promise<BillingServer> {
  // Caracal: the zone keys, the interceptor that checks every call against the
  // method's `requires` option, and the service built from the protobuf-es descriptor.
  const caracal = await caracalEdge(options.caracalUrl, options.nats);
  const server = new grpc.Server({ interceptors: [edgeServerInterceptor({ services: [BillingService], ...caracal.verifier })] });
  server.addService(grpcServiceDefinition(BillingService), billingHandlers(new InvoiceBook(), options.onCall ?? (() => {})));

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    async close() {
      await caracal.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

const undecodable = { code: grpc.status.INVALID_ARGUMENT, details: "the request could not be decoded" };

/**
 * The handlers. Each one may trust that the interceptor admitted the call:
 * `verifiedMandate(call)` is the caller's checked mandate.
 */
function billingHandlers(book: InvoiceBook, onCall: NonNullable<BillingServerOptions["onCall"]>): grpc.UntypedServiceImplementation {
  return {
    ping(call: grpc.ServerUnaryCall<PingRequest, PingResponse>, callback: grpc.sendUnaryData<PingResponse>) {
      onCall("Ping", verifiedMandate(call));
      callback(null, create(PingResponseSchema, { status: "ok" }));
    },

    listInvoices(call: grpc.ServerUnaryCall<ListInvoicesRequest, ListInvoicesResponse>, callback: grpc.sendUnaryData<ListInvoicesResponse>) {
      onCall("ListInvoices", verifiedMandate(call));
      callback(null, create(ListInvoicesResponseSchema, { invoices: book.list() }));
    },

    createInvoice(call: grpc.ServerUnaryCall<CreateInvoiceRequest, CreateInvoiceResponse>, callback: grpc.sendUnaryData<CreateInvoiceResponse>) {
      if ((call.request as unknown) === UNDECODABLE) return callback(undecodable);
      const mandate = verifiedMandate(call)!;
      onCall("CreateInvoice", mandate);
      const invoice = book.add(call.request.customer, call.request.amountCents, mandate.client_id);
      callback(null, create(CreateInvoiceResponseSchema, { invoice }));
    },

    async watchInvoices(call: grpc.ServerWritableStream<WatchInvoicesRequest, WatchInvoicesResponse>) {
      if ((call.request as unknown) === UNDECODABLE) return void call.emit("error", undecodable);
      onCall("WatchInvoices", verifiedMandate(call));
      const cancelled = new AbortController();
      call.once("cancelled", () => cancelled.abort());
      for await (const invoice of book.watch(call.request.follow, cancelled.signal)) call.write(create(WatchInvoicesResponseSchema, { invoice }));
      call.end();
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const caracalUrl = process.env.CARACAL_URL ?? "http://127.0.0.1:7070";
  const billing = await startBillingServer({
    caracalUrl,
    port: Number(process.env.PORT ?? 50051),
    onCall: (method, mandate) => console.log(`${method} from ${mandate ? `${mandate.client_id} (session ${mandate.sid})` : "anyone"}`),
  });
  console.log(`billing (grpc-js) on ${billing.address}, keys from ${caracalUrl}`);
  process.once("SIGINT", () => void billing.close());
  process.once("SIGTERM", () => void billing.close());
}
