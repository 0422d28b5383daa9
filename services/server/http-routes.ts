import type { Logger } from "pino";
import type { HealthStatus } from "../health/health-status.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ZONE_PATTERN } from "../../interceptors/mandate-claims.js";
import { JWKS_MAX_AGE_SECONDS, zoneJwks } from "../sts/get-jwks.js";
import type { StsDeps } from "../sts/sts-deps.js";
import type { HttpHandler } from "./one-port-listener.js";

type Request = Parameters<HttpHandler>[0];
type Response = Parameters<HttpHandler>[1];

/** The plain HTTP routes beside the RPCs: `/healthz` and, with the STS, `/.well-known/jwks.json?zone=…`. */
export async function serveHttp(
  req: Request,
  res: Response,
  context: { health: HealthStatus; sts: StsDeps | undefined; log: Logger },
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://caracal");
  try {
    if (req.method === "GET" && url.pathname === "/healthz") {
      const serving = context.health.get("") === ServingStatus.SERVING;
      return sendJson(res, serving ? 200 : 503, { status: serving ? "SERVING" : "NOT_SERVING" });
    }
    if (req.method === "GET" && url.pathname === "/.well-known/jwks.json" && context.sts) {
      const zone = url.searchParams.get("zone") ?? "";
      if (!ZONE_PATTERN.test(zone)) return sendJson(res, 400, { error: "give ?zone=<zone slug>" });
      const jwks = await zoneJwks(context.sts, zone);
      if (!jwks) return sendJson(res, 404, { error: `zone ${zone} does not exist` });
      return sendJson(res, 200, jwks, { "cache-control": `public, max-age=${JWKS_MAX_AGE_SECONDS}` });
    }
    sendJson(res, 404, { error: "not found" });
  } catch (error) {
    context.log.error({ err: error, path: url.pathname }, "http route failed");
    if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
  }
}

function sendJson(res: Response, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}
