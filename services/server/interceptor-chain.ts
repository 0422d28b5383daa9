import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { errorBoundary } from "./error-boundary.js";
import { requestLog } from "./request-log.js";

/**
 * The server's interceptors, outermost first. The order is pinned by a test:
 * the request log is outermost so every call, refused or not, is logged with
 * its request id and its final code; the error boundary sits inside it so the
 * log sees the concealed `INTERNAL` that the caller sees, and nothing inside
 * can leak a cause.
 */
export function serverInterceptors(log: Logger): Interceptor[] {
  return [requestLog(log), errorBoundary()];
}
