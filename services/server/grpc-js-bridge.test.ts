import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { caracalError, reasonOf } from "../../interceptors/caracal-error.js";
import { addBridgedService } from "./grpc-js-bridge.js";

const order: string[] = [];
const tag = (name: string): Interceptor => (next) => async (req) => {
  order.push(`${name} in`);
  const res = await next(req);
  order.push(`${name} out`);
  res.header.set(`x-${name}`, "seen");
  return res;
};

let server: grpc.Server;
let baseUrl: string;

beforeAll(async () => {
  server = new grpc.Server();
  addBridgedService(
    server,
    Health,
    {
      check(request, ctx) {
        if (request.service === "refuse") {
          throw caracalError(Code.PermissionDenied, Reason.SCOPE_MISSING, "scope x not in mandate", { decisionId: "d-1", metadata: { scope: "x" } });
        }
        if (request.service === "crash") throw new Error("boom");
        ctx.responseHeader.set("x-decision", ctx.requestHeader.get("x-request") ?? "none");
        return { status: ServingStatus.SERVING };
      },
      list: () => ({}),
      async *watch() {
        yield { status: ServingStatus.SERVING };
        yield { status: ServingStatus.NOT_SERVING };
        throw caracalError(Code.Unavailable, Reason.SHUTTING_DOWN, "draining");
      },
    },
    [tag("outer"), tag("inner")],
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  baseUrl = `http://127.0.0.1:${port}`;
});

afterAll(() => server.forceShutdown());

const client = () => createClient(Health, createGrpcTransport({ baseUrl }));

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

describe("the grpc-js bridge", () => {
  it("runs a Connect implementation with request and response headers", async () => {
    let header: Headers | undefined;
    const res = await client().check({ service: "" }, { headers: { "x-request": "r-1" }, onHeader: (h) => (header = h) });
    expect(res.status).toBe(ServingStatus.SERVING);
    expect(header?.get("x-decision")).toBe("r-1");
  });

  it("runs the interceptors outermost first, as Connect does", async () => {
    order.length = 0;
    let header: Headers | undefined;
    await client().check({}, { onHeader: (h) => (header = h) });
    expect(order).toEqual(["outer in", "inner in", "inner out", "outer out"]);
    expect(header?.get("x-outer")).toBe("seen");
  });

  it("sends a Caracal error with its code, message and ErrorDetail", async () => {
    const error = await rejection(client().check({ service: "refuse" }));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe("scope x not in mandate");
    expect(reasonOf(error)).toBe(Reason.SCOPE_MISSING);
  });

  it("answers a request that is not protobuf with INVALID_ARGUMENT", async () => {
    const raw = grpc.makeGenericClientConstructor(
      { check: { path: "/grpc.health.v1.Health/Check", requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } },
      "Raw",
    );
    const stub = new raw(baseUrl.slice("http://".length), grpc.credentials.createInsecure()) as unknown as {
      check(request: Buffer, callback: (error: grpc.ServiceError | null) => void): void;
      close(): void;
    };
    const error = await new Promise<grpc.ServiceError | null>((resolve) => stub.check(Buffer.from([0xff, 0xff, 0xff]), resolve));
    stub.close();
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("streams messages, then ends the stream with the error's code and reason", async () => {
    const seen: ServingStatus[] = [];
    const error = await rejection(
      (async () => {
        for await (const res of client().watch({})) seen.push(res.status);
      })(),
    );
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(error.code).toBe(Code.Unavailable);
    expect(reasonOf(error)).toBe(Reason.SHUTTING_DOWN);
  });
});
