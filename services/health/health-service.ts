import { Code, type ServiceImpl } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import type { HealthStatus } from "./health-status.js";

/**
 * `grpc.health.v1.Health` as the public spec defines it: `Check` answers
 * NOT_FOUND for an unknown service, `Watch` answers SERVICE_UNKNOWN and keeps
 * the stream open, sending each change until the call or the server ends.
 */
export function createHealthService(status: HealthStatus, draining: AbortSignal): ServiceImpl<typeof Health> {
  return {
    check(request) {
      const current = status.get(request.service);
      if (current === undefined) {
        throw caracalError(Code.NotFound, Reason.NOT_FOUND, `unknown service ${JSON.stringify(request.service)}`);
      }
      return { status: current };
    },
    list() {
      return { statuses: Object.fromEntries(status.entries().map(([name, current]) => [name, { status: current }])) };
    },
    async *watch(request, ctx) {
      const read = () => status.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
      const stop = AbortSignal.any([ctx.signal, draining]);
      // `changed` is set by the listener and cleared by the loop, so a change
      // that lands while the client is still reading the last answer is not lost.
      let changed = false;
      let wake = () => {};
      const onChange = () => {
        changed = true;
        wake();
      };
      const unsubscribe = status.onChange(onChange);
      stop.addEventListener("abort", onChange, { once: true });
      try {
        let last = read();
        yield { status: last };
        while (!stop.aborted) {
          if (!changed) await new Promise<void>((resolve) => (wake = resolve));
          changed = false;
          const current = read();
          if (current !== last) {
            last = current;
            yield { status: current };
          }
        }
      } finally {
        unsubscribe();
        stop.removeEventListener("abort", onChange);
      }
    },
  };
}
