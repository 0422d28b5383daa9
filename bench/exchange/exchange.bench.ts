/**
 * bench/exchange: `TokenService.Exchange` over loopback gRPC (HTTP/2) against
 * the Postgres store and NATS JetStream, 32 concurrent callers on one grpc-js
 * channel, a fixed count. The server runs in its own process. Prints
 * exchanges/s, p50 and p99.
 *
 *   npx tsx bench/exchange/exchange.bench.ts [count]
 */
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { ExchangeRequestSchema, TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { grpcServiceDefinition } from "../../interceptors/grpc-js/service-definition.js";
import { mandateClientInterceptor } from "../../interceptors/connect/mandate-client-interceptor.js";
import { MandateSource } from "../../clients/mandate-source.js";
import { spawnBenchServer } from "../support/spawn-bench-server.js";

const CONCURRENCY = 32;
const COUNT = Number(process.argv[2] ?? 20_000);
const WARMUP = 2_000;

const server = await spawnBenchServer();
try {
  const { profile } = server;
  const sts = createClient(TokenService, createGrpcTransport({ baseUrl: server.address }));
  const source = new MandateSource({ sts, zone: profile.zone, clientId: profile.client_id, credential: { clientSecret: profile.client_secret } });
  const admin = createClient(AdminService, createGrpcTransport({ baseUrl: server.address, interceptors: [mandateClientInterceptor(source)] }));
  await admin.createZone({ zone: "bench" });
  await admin.createResource({ zone: "bench", resourceId: "billing-api", scopes: [{ name: "invoices.read" }] });
  const { clientSecret } = await admin.createApplication({ zone: "bench", clientId: "bench-agent" });
  await admin.createGrant({ zone: "bench", clientId: "bench-agent", resourceId: "billing-api", scopes: ["invoices.read"] });
  const session = await sts.startSession({ zone: "bench", clientId: "bench-agent", credential: { case: "clientSecret", value: clientSecret } });
  const request = create(ExchangeRequestSchema, { subjectToken: session.sessionMandate, resources: ["billing-api"], scopes: ["invoices.read"] });
  const GrpcTokenService = grpc.makeGenericClientConstructor(grpcServiceDefinition(TokenService), "TokenService");
  const channel = new GrpcTokenService(server.address.replace("http://", ""), grpc.credentials.createInsecure()) as unknown as {
    exchange(request: unknown, callback: (error: grpc.ServiceError | null) => void): void;
    close(): void;
  };
  const exchange = () => new Promise<void>((resolve, reject) => channel.exchange(request, (error) => (error ? reject(error) : resolve())));

  async function run(count: number): Promise<{ seconds: number; latencies: Float64Array }> {
    const latencies = new Float64Array(count);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = next++; i < count; i = next++) {
          const t0 = performance.now();
          await exchange();
          latencies[i] = performance.now() - t0;
        }
      }),
    );
    return { seconds: (performance.now() - started) / 1000, latencies };
  }

  await run(WARMUP);
  const { seconds, latencies } = await run(COUNT);
  latencies.sort();
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  channel.close();
  console.log(
    `exchange: ${COUNT} calls, ${CONCURRENCY} concurrent callers: ${(COUNT / seconds).toFixed(0)} exchanges/s, ` +
      `p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms`,
  );
} finally {
  await server.stop();
}
