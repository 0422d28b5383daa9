/**
 * The servers of bench/interceptor, in their own process so that the load
 * generator does not share their event loop. Four servers, each answering
 * `grpc.health.v1.Health/Check` with SERVING and nothing else:
 * grpc-js without and with the grpc-js `edgeServerInterceptor`, and
 * connect-node (HTTP/2 h2c) without and with the Connect `edgeServerInterceptor`.
 * Prints one JSON line `{"token": "...", "addresses": {...}}` when ready, with
 * a mandate the protected servers accept; answers IPC "cpu" with its
 * `process.cpuUsage()`; exits on SIGTERM.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { edgeServerInterceptor as connectEdgeInterceptor } from "../../interceptors/connect/edge-server-interceptor.js";
import { edgeServerInterceptor as grpcEdgeInterceptor } from "../../interceptors/grpc-js/edge-server-interceptor.js";
import { grpcServiceDefinition } from "../../interceptors/grpc-js/service-definition.js";
import { AUDIT_SINK_NOTE, createBenchEdgeFixture } from "./bench-edge-fixture.js";

/** The ready line. */
export interface BenchEdgeServersReady {
  readonly token: string;
  readonly auditSink: string;
  readonly addresses: {
    readonly grpcJs: { readonly unprotected: string; readonly protected: string };
    readonly connect: { readonly unprotected: string; readonly protected: string };
  };
}

const fixture = await createBenchEdgeFixture();
const serving = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });

async function startGrpcJs(interceptors: grpc.ServerInterceptor[]): Promise<string> {
  const server = new grpc.Server({ interceptors });
  server.addService(grpcServiceDefinition(Health), {
    check: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => callback(null, serving),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
  );
  return `127.0.0.1:${port}`;
}

async function startConnect(interceptors: Interceptor[]): Promise<string> {
  const routes = (router: ConnectRouter) => router.service(Health, { check: () => serving });
  const server = http2.createServer(connectNodeAdapter({ routes, interceptors }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const ready: BenchEdgeServersReady = {
  token: fixture.token,
  auditSink: AUDIT_SINK_NOTE,
  addresses: {
    grpcJs: {
      unprotected: await startGrpcJs([]),
      protected: await startGrpcJs([grpcEdgeInterceptor({ ...fixture.verifierOptions(), services: [Health] })]),
    },
    connect: {
      unprotected: await startConnect([]),
      protected: await startConnect([connectEdgeInterceptor(fixture.verifierOptions())]),
    },
  },
};
process.stdout.write(JSON.stringify(ready) + "\n");

// The bench asks for this process's CPU time around each case (IPC "cpu"), so
// it can report server CPU per call, which a saturated client cannot hide.
process.on("message", (message) => {
  if (message === "cpu") process.send!(process.cpuUsage());
});
process.once("SIGTERM", () => process.exit(0));
