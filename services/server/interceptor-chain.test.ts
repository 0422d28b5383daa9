import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { caracalError, reasonOf } from "../../interceptors/caracal-error.js";
import { captureLogs } from "../../test/support/log-capture.js";
import { serverInterceptors } from "./interceptor-chain.js";
import { requestContextKey } from "./request-context.js";

function healthClient(check: () => never | { status: HealthCheckResponse_ServingStatus }, log = captureLogs()) {
  const transport = createRouterTransport(
    (router) =>
      router.service(Health, {
        check: (_req, ctx) => {
          ctx.values.get(requestContextKey)?.log.info("inside the handler");
          return check();
        },
        list: () => ({}),
        async *watch() {
          yield { status: HealthCheckResponse_ServingStatus.SERVING };
          throw new Error("stream broke: /secret/path");
        },
      }),
    { router: { interceptors: serverInterceptors(log.log) } },
  );
  return { client: createClient(Health, transport), lines: log.lines };
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

describe("server interceptor chain", () => {
  it("conceals an unexpected error as INTERNAL with REASON_INTERNAL and logs the cause", async () => {
    const { client, lines } = healthClient(() => {
      throw new Error("relation zones does not exist at /srv/caracal/secret.ts");
    });
    const error = await rejection(client.check({}));
    expect(error.code).toBe(Code.Internal);
    expect(reasonOf(error)).toBe(Reason.INTERNAL);
    expect(error.rawMessage).toBe("internal error");
    expect(error.message).not.toContain("secret");
    const logged = lines.find((line) => line.msg === "internal error");
    expect(JSON.stringify(logged)).toContain("relation zones does not exist");
  });

  it("conceals an error thrown midway through a server stream", async () => {
    const { client } = healthClient(() => ({ status: HealthCheckResponse_ServingStatus.SERVING }));
    const received: HealthCheckResponse_ServingStatus[] = [];
    const error = await rejection(
      (async () => {
        for await (const res of client.watch({})) received.push(res.status);
      })(),
    );
    expect(received).toEqual([HealthCheckResponse_ServingStatus.SERVING]);
    expect(error.code).toBe(Code.Internal);
    expect(error.rawMessage).toBe("internal error");
  });

  it("passes a deliberate Caracal error through unchanged", async () => {
    const { client } = healthClient(() => {
      throw caracalError(Code.InvalidArgument, Reason.INVALID_ARGUMENT, "service is too long", {
        metadata: { field: "service" },
      });
    });
    const error = await rejection(client.check({}));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(reasonOf(error)).toBe(Reason.INVALID_ARGUMENT);
    expect(error.rawMessage).toBe("service is too long");
  });

  it("logs every line of a call with its request id, outermost, so the final code is the concealed one", async () => {
    const { client, lines } = healthClient(() => {
      throw new Error("boom");
    });
    await rejection(client.check({}, { headers: { "x-request-id": "req-42" } }));
    const ofCall = lines.filter((line) => line.request_id === "req-42");
    expect(ofCall.map((line) => line.msg)).toEqual(["inside the handler", "internal error", "call finished"]);
    // Were the boundary outside the log, the log would see the raw error as "unknown".
    expect(ofCall.at(-1)).toMatchObject({ code: "Internal", rpc: "grpc.health.v1.Health/Check" });
  });

  it("replaces a malformed request id with a fresh one instead of echoing it into logs", async () => {
    const { client, lines } = healthClient(() => ({ status: HealthCheckResponse_ServingStatus.SERVING }));
    let echoed: string | null = null;
    await client.check({}, { headers: { "x-request-id": "evil id; with spaces and a very long tail" }, onHeader: (h) => (echoed = h.get("x-request-id")) });
    expect(echoed).toMatch(/^[0-9a-f-]{36}$/);
    expect(lines.find((line) => line.msg === "call finished")).toMatchObject({ request_id: echoed, code: "ok" });
  });
});
