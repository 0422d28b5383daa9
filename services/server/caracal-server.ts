import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { Bus } from "../bus/bus.js";
import { SERVICE_CATALOG } from "../catalog.js";
import type { Config } from "../config.js";
import { createHealthService } from "../health/health-service.js";
import { HealthStatus } from "../health/health-status.js";
import type { Store } from "../store/store.js";
import { serverInterceptors } from "./interceptor-chain.js";
import { type HttpHandler, listenOnePort } from "./one-port-listener.js";
import { withUnimplemented } from "./unimplemented.js";

/** What the server needs to run. */
export interface CaracalServerOptions {
  readonly config: Pick<Config, "listen" | "services" | "shutdownGraceMs">;
  readonly store: Store;
  readonly bus: Bus;
  readonly log: Logger;
}

/** A running Caracal server. */
export interface CaracalServer {
  /** The bound address. */
  readonly address: { readonly host: string; readonly port: number };
  /** Serving status per service, as the health service reports it. */
  readonly health: HealthStatus;
  /**
   * Drains: reports NOT_SERVING, stops accepting, lets in-flight calls finish
   * within the grace period, ends long-lived streams, then closes. Idempotent.
   * The store and bus belong to the caller and stay open.
   */
  close(): Promise<void>;
}

// Tokens are capped at 8 KiB and no request needs more than policy sources;
// a hard cap keeps a hostile body from costing memory.
const READ_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Starts Caracal on one address: gRPC (HTTP/2 cleartext), gRPC-Web and
 * Connect (HTTP/1.1 or HTTP/2), `grpc.health.v1.Health`, and `GET /healthz`.
 *
 * @example
 * const server = await startCaracalServer({ config, store, bus, log });
 * process.once("SIGTERM", () => server.close());
 */
export async function startCaracalServer(options: CaracalServerOptions): Promise<CaracalServer> {
  const { config, log } = options;
  const served = config.services.map((name) => SERVICE_CATALOG[name]);
  const health = new HealthStatus(served.map((service) => service.typeName));
  const draining = new AbortController();

  const routes = (router: ConnectRouter) => {
    router.service(Health, createHealthService(health, draining.signal));
    for (const service of served) router.service(service, withUnimplemented(service, {}));
  };

  const handler = connectNodeAdapter({
    routes,
    interceptors: serverInterceptors(log),
    readMaxBytes: READ_MAX_BYTES,
    fallback: (req, res) => serveHttp(req, res, health),
  });
  const listener = await listenOnePort(handler, config.listen.host, config.listen.port, log);
  log.info({ address: `${listener.address.host}:${listener.address.port}`, services: config.services }, "listening");

  let closing: Promise<void> | undefined;
  return {
    address: listener.address,
    health,
    close() {
      closing ??= (async () => {
        health.stopServing();
        // Long-lived streams (Watch, Tail) never end by themselves; tell them to.
        draining.abort();
        await listener.close(config.shutdownGraceMs);
      })();
      return closing;
    },
  };
}

/** Plain HTTP routes beside the RPCs. */
function serveHttp(...[req, res, health]: [...Parameters<HttpHandler>, HealthStatus]): void {
  const path = new URL(req.url ?? "/", "http://caracal").pathname;
  if (req.method === "GET" && path === "/healthz") {
    const serving = health.get("") === 1;
    sendJson(res, serving ? 200 : 503, { status: serving ? "SERVING" : "NOT_SERVING" });
    return;
  }
  sendJson(res, 404, { error: "not found" });
}

function sendJson(res: Parameters<HttpHandler>[1], status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
