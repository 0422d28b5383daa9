/**
 * An example Connect service protected by Caracal: `acme.billing.v1.BillingService`
 * on connect-node, over HTTP/2 without TLS (h2c), so gRPC, gRPC-Web and Connect
 * clients can all call it. The server verifies mandates at its own edge, with
 * the zone keys from Caracal's JWKS endpoint; no call to Caracal per request.
 *
 *   npx tsx examples/connect-service/server.ts     # CARACAL_URL, PORT (default 8080)
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { edgeServerInterceptor, verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import type { MandateClaims } from "../../interceptors/mandate-claims.js";
import { BillingService } from "../gen/acme/billing/v1/billing_pb.js";
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
  /** `http://127.0.0.1:<port>`, for Connect clients. */
  readonly url: string;
  /** Stops accepting calls, ends the open ones, stops refreshing keys. */
  close(): Promise<void>;
}

/**
 * Starts the billing service on connect-node with Caracal's edge interceptor.
 *
 * @example
 * const billing = await startBillingServer({ caracalUrl: "http://127.0.0.1:7070", port: 8080 });
 */
export async function startBillingServer(options: BillingServerOptions): Promise<BillingServer> {
  // Caracal: the zone keys, and the interceptor that checks every call against
  // the method's `requires` option.
  const caracal = await caracalEdge(options.caracalUrl, options.nats);
  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => router.service(BillingService, billingHandlers(new InvoiceBook(), options.onCall ?? (() => {}))),
    interceptors: [edgeServerInterceptor(caracal.verifier)],
  });

  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => (sessions.add(session), session.once("close", () => sessions.delete(session))));
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(options.port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await caracal.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      await closed;
    },
  };
}

/**
 * The handlers. Each one may trust that the interceptor admitted the call:
 * `ctx.values.get(verifiedMandateKey)` is the caller's checked mandate.
 */
function billingHandlers(book: InvoiceBook, onCall: NonNullable<BillingServerOptions["onCall"]>): ServiceImpl<typeof BillingService> {
  return {
    ping(_request, ctx) {
      onCall("Ping", ctx.values.get(verifiedMandateKey));
      return { status: "ok" };
    },

    listInvoices(_request, ctx) {
      onCall("ListInvoices", ctx.values.get(verifiedMandateKey));
      return { invoices: book.list() };
    },

    createInvoice(request, ctx) {
      const mandate = ctx.values.get(verifiedMandateKey)!;
      onCall("CreateInvoice", mandate);
      return { invoice: book.add(request.customer, request.amountCents, mandate.client_id) };
    },

    async *watchInvoices(request, ctx) {
      onCall("WatchInvoices", ctx.values.get(verifiedMandateKey));
      for await (const invoice of book.watch(request.follow, ctx.signal)) yield { invoice };
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const caracalUrl = process.env.CARACAL_URL ?? "http://127.0.0.1:7070";
  const billing = await startBillingServer({
    caracalUrl,
    port: Number(process.env.PORT ?? 8080),
    onCall: (method, mandate) => console.log(`${method} from ${mandate ? `${mandate.client_id} (session ${mandate.sid})` : "anyone"}`),
  });
  console.log(`billing (Connect) on ${billing.url}, keys from ${caracalUrl}`);
  process.once("SIGINT", () => void billing.close());
  process.once("SIGTERM", () => void billing.close());
}
