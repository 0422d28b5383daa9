/**
 * The "tried as a new user would" path, end to end with real
 * processes: `caracal serve` on the embedded default, the CLI to set up a
 * zone, and a grpc-js client built only from the .proto files.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { reasonOf } from "../interceptors/caracal-error.js";

const caracalBin = fileURLToPath(new URL("../bin/caracal.js", import.meta.url));
const protoRoot = fileURLToPath(new URL("../proto", import.meta.url));

type Callback<T> = (error: grpc.ServiceError | null, response: T) => void;
interface TokenServiceStub extends grpc.Client {
  StartSession(request: object, callback: Callback<{ session_mandate: string }>): void;
  Exchange(request: object, callback: Callback<{ mandate: string; decision_id: string }>): void;
}

function call<T>(invoke: (callback: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => invoke((error, response) => (error ? reject(error) : resolve(response))));
}

describe("a new user on the embedded default", () => {
  let dataDir: string;
  let server: ChildProcess;
  let address: string;
  let sts: TokenServiceStub;

  const env = () => ({
    ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("CARACAL_"))),
    CARACAL_DATA_DIR: dataDir,
  });

  /** Runs the CLI as a shell would; resolves with its exit code and output. */
  function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [caracalBin, ...args], { env: { ...env(), ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    return new Promise((resolve) => child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr })));
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "caracal-new-user-"));
    server = spawn(process.execPath, [caracalBin, "serve", "--listen", "127.0.0.1:0"], { env: env(), stdio: ["ignore", "pipe", "inherit"] });
    for await (const line of createInterface({ input: server.stdout! })) {
      const entry = JSON.parse(line) as { msg: string; address?: string };
      if (entry.msg === "listening") {
        address = entry.address!;
        break;
      }
    }
    const definition = protoLoader.loadSync("caracal/sts/v1/token_service.proto", { includeDirs: [protoRoot], longs: String, keepCase: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      caracal: { sts: { v1: { TokenService: new (address: string, credentials: grpc.ChannelCredentials) => TokenServiceStub } } };
    };
    sts = new loaded.caracal.sts.v1.TokenService(address, grpc.credentials.createInsecure());
  }, 60_000);

  afterAll(async () => {
    sts?.close();
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGTERM");
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
  });

  it("sets up a zone with the CLI, gets mandates from a proto-only grpc-js client, and verifies them with jose across a key rotation", async () => {
    for (const args of [
      ["zone", "create", "acme"],
      ["resource", "create", "billing-api", "--zone", "acme", "--scope", "invoices.read", "invoices.write"],
    ]) {
      expect((await cli(args)).code).toBe(0);
    }
    const created = await cli(["app", "create", "billing-agent", "--zone", "acme", "--json"]);
    expect(created.code).toBe(0);
    const secret = (JSON.parse(created.stdout) as { clientSecret: string }).clientSecret;
    expect((await cli(["grant", "billing-agent", "billing-api", "--zone", "acme", "--scope", "invoices.read"])).code).toBe(0);

    const session = await call<{ session_mandate: string }>((cb) =>
      sts.StartSession({ zone: "acme", client_id: "billing-agent", client_secret: secret }, cb),
    );
    const exchange = () =>
      call<{ mandate: string }>((cb) =>
        sts.Exchange({ subject_token: session.session_mandate, resources: ["billing-api"], scopes: ["invoices.read"] }, cb),
      );
    const before = (await exchange()).mandate;

    const jwksUrl = new URL(`http://${address}/.well-known/jwks.json?zone=acme`);
    const options = { algorithms: ["ES256"], typ: "caracal-mandate+jwt", issuer: "urn:caracal:zone:acme", audience: "billing-api" };
    expect((await jwtVerify(before, createRemoteJWKSet(jwksUrl), options)).payload.scope).toBe("invoices.read");

    expect((await cli(["key", "rotate", "--zone", "acme"])).code).toBe(0);
    const after = (await exchange()).mandate;
    expect(decodeProtectedHeader(after).kid).not.toBe(decodeProtectedHeader(before).kid);
    const jwks = createRemoteJWKSet(jwksUrl);
    await expect(jwtVerify(before, jwks, options)).resolves.toBeDefined();
    await expect(jwtVerify(after, jwks, options)).resolves.toBeDefined();

    const refused = await call((cb) =>
      sts.Exchange({ subject_token: session.session_mandate, resources: ["billing-api"], scopes: ["invoices.write"] }, cb),
    ).catch((error: grpc.ServiceError) => error);
    expect((refused as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    // The reason travels in grpc-status-details-bin, readable by any gRPC client.
    const trailer = new Headers({ "grpc-status": String(grpc.status.PERMISSION_DENIED) });
    for (const [key, value] of Object.entries((refused as grpc.ServiceError).metadata.getMap())) {
      trailer.set(key, Buffer.isBuffer(value) ? value.toString("base64") : value);
    }
    expect(reasonOf(findTrailerError(trailer))).toBe(Reason.SCOPE_NOT_GRANTED);
  }, 60_000);
});
