import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../gen/caracal/admin/v1/admin_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { openNatsBus } from "../services/bus/nats-bus.js";
import { loadConfig } from "../services/config.js";
import { createLogger, serve, type RunningCaracal } from "../services/serve.js";
import { startCaracalServer, type CaracalServer } from "../services/server/caracal-server.js";
import { KeyEncryptionKey } from "../services/keys/key-encryption-key.js";
import { openStore } from "../services/store/open-store.js";
import type { Store } from "../services/store/store.js";
import type { Bus } from "../services/bus/bus.js";
import { captureLogs } from "./support/log-capture.js";
import { natsTestNamespace, testNatsUrl } from "./support/nats.js";
import { createTestDatabase } from "./support/postgres.js";

const protoRoot = fileURLToPath(new URL("../proto", import.meta.url));

/** A Health client built only from the .proto files, as an outside user would. */
function protoLoaderHealthCheck(port: number, service: string): Promise<{ status: string }> {
  const definition = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [protoRoot], enums: String });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const client = new loaded.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.Check({ service }, (error: grpc.ServiceError | null, response: { status: string }) => {
      client.close();
      if (error) reject(error);
      else resolve(response);
    });
  });
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

describe("caracal serve on the embedded default (PGlite, in-process bus)", () => {
  let dataDir: string;
  let caracal: RunningCaracal;
  let port: number;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "caracal-serve-"));
    const config = loadConfig({ CARACAL_LISTEN: "127.0.0.1:0", CARACAL_DATA_DIR: dataDir, CARACAL_LOG_LEVEL: "silent" });
    caracal = await serve(config, createLogger(config.logLevel));
    port = caracal.server.address.port;
  });

  afterAll(async () => {
    await caracal?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("answers SERVING to a grpc-js client built only from the .proto files", async () => {
    expect(await protoLoaderHealthCheck(port, "")).toEqual({ status: "SERVING" });
    expect(await protoLoaderHealthCheck(port, "caracal.sts.v1.TokenService")).toEqual({ status: "SERVING" });
  });

  it("answers the Connect protocol with JSON over HTTP/1.1, as curl sends it", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("answers gRPC-Web and Connect with binary protobuf over HTTP/1.1", async () => {
    for (const transport of [
      createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1", useBinaryFormat: true }),
    ]) {
      const health = createClient(Health, transport);
      expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    }
  });

  it("serves GET /healthz", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });
    expect((await fetch(`http://127.0.0.1:${port}/nothing-here`)).status).toBe(404);
  });

  it("refuses a malformed request body with INVALID_ARGUMENT and keeps serving", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"service": 42',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_argument");
    expect(await protoLoaderHealthCheck(port, "")).toEqual({ status: "SERVING" });
  });
});

describe("caracal server on Postgres and NATS JetStream", () => {
  const nats = natsTestNamespace();
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let store: Store;
  let bus: Bus;
  let server: CaracalServer;
  const logs = captureLogs();

  beforeAll(async () => {
    database = await createTestDatabase();
    store = await openStore({ databaseUrl: database.url, dataDir: "unused" });
    bus = await openNatsBus({ url: testNatsUrl, ...nats.prefix() });
    server = await startCaracalServer({
      config: { listen: { host: "127.0.0.1", port: 0 }, services: ["sts", "policy"], shutdownGraceMs: 2_000 },
      store,
      bus,
      kek: new KeyEncryptionKey(randomBytes(32)),
      log: logs.log,
    });
  });

  afterAll(async () => {
    await server?.close();
    await bus?.close();
    await store?.close();
    await database?.drop();
    await nats.cleanup();
  });

  it("serves only the services named with --only", async () => {
    const port = server.address.port;
    expect(await protoLoaderHealthCheck(port, "caracal.policy.v1.PolicyService")).toEqual({ status: "SERVING" });
    await expect(protoLoaderHealthCheck(port, "caracal.admin.v1.AdminService")).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    const admin = createClient(AdminService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    expect((await rejection(admin.listZones({}))).code).toBe(Code.Unimplemented);
  });

  it("logs each call with the caller's request id", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.address.port}` }));
    await health.check({}, { headers: { "x-request-id": "trace-me-1" } });
    expect(logs.lines.filter((line) => line.request_id === "trace-me-1")).toEqual([
      expect.objectContaining({ msg: "call finished", code: "ok", rpc: "grpc.health.v1.Health/Check" }),
    ]);
  });

  it("tells Watch streams NOT_SERVING and ends them when draining", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.address.port}` }));
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      for await (const res of health.watch({})) {
        seen.push(res.status);
        if (seen.length === 1) void server.close();
      }
    })();
    await watching;
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    const res = await fetch(`http://127.0.0.1:${server.address.port}/healthz`).catch((error: unknown) => error);
    expect(res).toBeInstanceOf(Error);
  });
});
