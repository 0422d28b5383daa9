/**
 * Both server adapters — the Connect interceptor and the grpc-js
 * ServerInterceptor — over real loopback servers serving the same trivial
 * service (`grpc.health.v1.Health`, its requirements from a map), and both
 * client interceptors against both. The attack-vector table that
 * `verify-mandate.test.ts` runs against the pure verifier runs here again,
 * end to end, against each adapter: same code, same reason on the wire.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  AdminService,
  GetZoneRequestSchema,
  GetZoneResponseSchema,
  type GetZoneResponse,
} from "../gen/caracal/admin/v1/admin_service_pb.js";
import { AuditDecision } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListResponse,
} from "../gen/grpc/health/v1/health_pb.js";
import { MemoryAuditSink } from "../interceptors/audit-sink.js";
import { caracalError, errorDetailOf, reasonOf } from "../interceptors/caracal-error.js";
import { edgeServerInterceptor as connectEdgeServerInterceptor, verifiedMandateKey } from "../interceptors/connect/edge-server-interceptor.js";
import { mandateClientInterceptor as connectMandateClientInterceptor } from "../interceptors/connect/mandate-client-interceptor.js";
import { EdgeVerifier, type EdgeVerifierOptions } from "../interceptors/edge-verifier.js";
import { edgeServerInterceptor as grpcEdgeServerInterceptor, verifiedMandate } from "../interceptors/grpc-js/edge-server-interceptor.js";
import { mandateClientInterceptor as grpcMandateClientInterceptor } from "../interceptors/grpc-js/mandate-client-interceptor.js";
import { grpcServiceDefinition, UNDECODABLE } from "../interceptors/grpc-js/service-definition.js";
import type { MandateClaims } from "../interceptors/mandate-claims.js";
import type { MandateProvider } from "../interceptors/mandate-provider.js";
import type { RequirementMap } from "../interceptors/method-requirement.js";
import { MandateError } from "../interceptors/mandate-error.js";
import { InMemoryRevocationView, staleRevocationView } from "../interceptors/revocation-view.js";
import type { MandateKeyResolver, VerifyMandateOptions } from "../interceptors/verify-mandate.js";
import {
  attackEdgeOptions,
  buildAttackToken,
  createAttackFixture,
  mintMandate,
  TEST_RESOURCE,
  TEST_SCOPE,
  type AttackFixture,
  type AttackVector,
} from "./support/mandates.js";

const vectors: AttackVector[] = JSON.parse(readFileSync(new URL("../interceptors/attack-vectors.json", import.meta.url), "utf8"));

// 2030-01-01T12:00:00Z: the verifiers' clock, frozen unless a test moves it.
const T0 = Date.UTC(2030, 0, 1, 12);
const clock = { ms: T0 };
const now = () => clock.ms;

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const DECISION_HEADER = "x-caracal-decision-id";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type StackName = "connect" | "grpc-js";
const STACKS: readonly StackName[] = ["connect", "grpc-js"];

/** What a handler saw of one call, filed under the call's `x-test-id`. */
interface Seen {
  readonly claims: MandateClaims | undefined;
  readonly authorization: string | null;
  readonly traceparent: string | null;
}

/** A protected Health service on both stacks, and how the tests reach it. */
interface Stacks {
  readonly connect: Server;
  readonly "grpc-js": Server;
  readonly audit: MemoryAuditSink;
  readonly revocations: InMemoryRevocationView;
}

interface Server {
  /** `http://127.0.0.1:<port>`, speaking gRPC over h2c. */
  readonly baseUrl: string;
  readonly address: string;
  /** A Connect gRPC client (the same client code for both servers). */
  readonly client: Client<typeof Health>;
  readonly transport: Transport;
  readonly close: () => Promise<void>;
}

const seen = new Map<string, Seen>();
const closers: (() => Promise<void>)[] = [];
let fixture: AttackFixture;

beforeAll(async () => {
  fixture = await createAttackFixture(now);
});

beforeEach(() => {
  clock.ms = T0;
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function record(id: string | null | undefined, entry: Seen): void {
  if (id) seen.set(id, entry);
}

// -- Servers -----------------------------------------------------------------

/** The requirements of the test service: Check and Watch need the fixture's resource and scope, List is public. */
function healthRequirements(resource = TEST_RESOURCE, scopes: readonly string[] = [TEST_SCOPE]): RequirementMap {
  return {
    "grpc.health.v1.Health/Check": { resource, scopes },
    "grpc.health.v1.Health/Watch": { resource, scopes },
    "grpc.health.v1.Health/List": { public: true },
  };
}

async function startConnectServer(options: EdgeVerifierOptions): Promise<Server> {
  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(Health, {
        check(_request, ctx) {
          record(ctx.requestHeader.get("x-test-id"), {
            claims: ctx.values.get(verifiedMandateKey),
            authorization: ctx.requestHeader.get("authorization"),
            traceparent: ctx.requestHeader.get("traceparent"),
          });
          return { status: ServingStatus.SERVING };
        },
        list(_request, ctx) {
          record(ctx.requestHeader.get("x-test-id"), {
            claims: ctx.values.get(verifiedMandateKey),
            authorization: ctx.requestHeader.get("authorization"),
            traceparent: ctx.requestHeader.get("traceparent"),
          });
          return {};
        },
        async *watch(_request, ctx) {
          record(ctx.requestHeader.get("x-test-id"), {
            claims: ctx.values.get(verifiedMandateKey),
            authorization: ctx.requestHeader.get("authorization"),
            traceparent: ctx.requestHeader.get("traceparent"),
          });
          yield { status: ServingStatus.SERVING };
          yield { status: ServingStatus.NOT_SERVING };
        },
      }),
    interceptors: [connectEdgeServerInterceptor(options)],
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return withClient(address, async () => {
    for (const session of sessions) session.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}

function grpcMetadataValue(metadata: grpc.Metadata, key: string): string | null {
  const value = metadata.get(key)[0];
  return typeof value === "string" ? value : null;
}

async function startGrpcServer(options: EdgeVerifierOptions): Promise<Server> {
  const server = new grpc.Server({ interceptors: [grpcEdgeServerInterceptor({ ...options, services: [Health] })] });
  const note = (call: { metadata: grpc.Metadata }) =>
    record(grpcMetadataValue(call.metadata, "x-test-id"), {
      claims: verifiedMandate(call),
      authorization: grpcMetadataValue(call.metadata, "authorization"),
      traceparent: grpcMetadataValue(call.metadata, "traceparent"),
    });
  server.addService(grpcServiceDefinition(Health), {
    check(call: grpc.ServerUnaryCall<HealthCheckRequest | typeof UNDECODABLE, HealthCheckResponse>, callback: grpc.sendUnaryData<HealthCheckResponse>) {
      if (call.request === UNDECODABLE) return callback({ code: grpc.status.INVALID_ARGUMENT, details: "undecodable request" });
      note(call);
      callback(null, create(HealthCheckResponseSchema, { status: ServingStatus.SERVING }));
    },
    list(call: grpc.ServerUnaryCall<unknown, HealthListResponse>, callback: grpc.sendUnaryData<HealthListResponse>) {
      note(call);
      callback(null, create(HealthListResponseSchema, {}));
    },
    watch(call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) {
      note(call);
      call.write(create(HealthCheckResponseSchema, { status: ServingStatus.SERVING }));
      call.write(create(HealthCheckResponseSchema, { status: ServingStatus.NOT_SERVING }));
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return withClient(`127.0.0.1:${port}`, async () => {
    server.forceShutdown();
  });
}

function withClient(address: string, closeServer: () => Promise<void>): Server {
  const baseUrl = `http://${address}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  const close = async () => {
    sessionManager.abort();
    await closeServer();
  };
  closers.push(close);
  return { baseUrl, address, transport, client: createClient(Health, transport), close };
}

/** Starts both servers on one verifier configuration (each with its own verifier, as separate services would have). */
async function startStacks(options: Partial<EdgeVerifierOptions> = {}): Promise<Stacks> {
  const audit = new MemoryAuditSink();
  const revocations = new InMemoryRevocationView({ now });
  const base: EdgeVerifierOptions = {
    keys: fixture.keyring.resolve,
    requirements: healthRequirements(),
    allowedZones: ["acme"],
    revocations,
    audit,
    now,
    ...options,
  };
  const [connect, grpcJs] = await Promise.all([startConnectServer(base), startGrpcServer(base)]);
  // A test that brings its own revocation view keeps its own handle on it.
  return { connect, "grpc-js": grpcJs, audit: base.audit as MemoryAuditSink, revocations };
}

// -- Calls -------------------------------------------------------------------

interface Outcome {
  readonly ok: boolean;
  readonly error?: ConnectError;
  readonly header?: Headers;
  readonly messages: number;
}

function headersFor(token: string | null, id: string, extra: Record<string, string> = {}): Record<string, string> {
  return { "x-test-id": id, ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...extra };
}

async function callCheck(server: Server, token: string | null, extra: Record<string, string> = {}): Promise<Outcome & { id: string }> {
  const id = randomUUID();
  let header: Headers | undefined;
  try {
    await server.client.check({ service: "" }, { headers: headersFor(token, id, extra), onHeader: (h) => (header = h) });
    return { id, ok: true, header, messages: 1 };
  } catch (error) {
    return { id, ok: false, error: ConnectError.from(error), header, messages: 0 };
  }
}

async function callWatch(server: Server, token: string | null): Promise<Outcome & { id: string }> {
  const id = randomUUID();
  let header: Headers | undefined;
  let messages = 0;
  try {
    for await (const _message of server.client.watch({ service: "" }, { headers: headersFor(token, id), onHeader: (h) => (header = h) })) {
      messages += 1;
    }
    return { id, ok: true, header, messages };
  } catch (error) {
    return { id, ok: false, error: ConnectError.from(error), header, messages };
  }
}

/** `Code.PermissionDenied` → `PERMISSION_DENIED`, as the table spells codes. */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function reasonName(reason: Reason): string {
  return `REASON_${Reason[reason]}`;
}

function expectRefused(outcome: Outcome, code: Code, reason: Reason): ConnectError {
  expect(outcome.ok, "the call was admitted").toBe(false);
  expect({ code: codeName(outcome.error!.code), reason: reasonName(reasonOf(outcome.error)) }).toEqual({
    code: codeName(code),
    reason: reasonName(reason),
  });
  return outcome.error!;
}

function mint(claims: Record<string, unknown> = {}): Promise<string> {
  return mintMandate({ key: fixture.zoneKey, now, claims });
}

// -- The attack-vector table, on both adapters -------------------------------

/**
 * The edge a vector is presented at, as server options. An edge only ever
 * admits resource mandates; the two vectors about a session-mandate edge
 * (`use: "session"`) describe the STS's `Exchange`, which is not one of these
 * adapters, and are left to `verify-mandate.test.ts` and the STS suite.
 */
function edgeOptionsOf(vector: AttackVector): Partial<EdgeVerifierOptions> | undefined {
  const options = attackEdgeOptions(vector, fixture) as VerifyMandateOptions;
  if (options.use !== "resource") return undefined;
  return {
    keys: options.keys,
    now: options.now,
    requirements: healthRequirements(options.resource, options.scopes ?? []),
    allowedZones: options.allowedZones,
    clockToleranceSeconds: options.clockToleranceSeconds,
    maxTokenBytes: options.maxTokenBytes,
  };
}

function needsSessionEdge(vector: AttackVector): boolean {
  return (vector.edge?.use ?? "resource") !== "resource";
}

const stacksByEdge = new Map<string, Promise<Stacks>>();
function stacksFor(options: Partial<EdgeVerifierOptions>): Promise<Stacks> {
  const key = JSON.stringify(options, (_name, value) => (typeof value === "function" ? undefined : value === undefined ? null : value));
  let stacks = stacksByEdge.get(key);
  if (!stacks) stacksByEdge.set(key, (stacks = startStacks(options)));
  return stacks;
}

describe("the attack-vector table at the edge", () => {
  it("runs every vector except the two that need a session-mandate edge", () => {
    const skipped = vectors.filter((vector) => edgeOptionsOf(vector) === undefined).map((vector) => vector.name);
    expect(vectors.filter(needsSessionEdge).map((vector) => vector.name)).toEqual(skipped);
    expect(skipped).toEqual([
      "accepts a session mandate where a session mandate is required",
      "rejects a resource mandate where a session mandate is required",
    ]);
  });

  for (const stack of STACKS) {
    describe(`on the ${stack} server adapter`, () => {
      for (const vector of vectors) {
        it.skipIf(needsSessionEdge(vector))(vector.name, async () => {
          const stacks = await stacksFor(edgeOptionsOf(vector)!);
          const token = await buildAttackToken(vector, fixture);
          const outcome = await callCheck(stacks[stack], token);
          if (vector.expect.code === "OK") {
            expect(outcome.error?.message).toBeUndefined();
            expect(outcome.header?.get(DECISION_HEADER)).toMatch(UUID);
            expect(seen.get(outcome.id)?.claims).toMatchObject({ zone: "acme", use: "resource" });
            return;
          }
          expect(outcome.ok, "the call was admitted").toBe(false);
          expect({ code: codeName(outcome.error!.code), reason: reasonName(reasonOf(outcome.error)) }).toEqual({
            code: vector.expect.code,
            reason: vector.expect.reason,
          });
          const detail = errorDetailOf(outcome.error);
          expect(detail?.decisionId).toMatch(UUID);
          if (vector.expect.metadata) expect(detail?.metadata).toEqual(vector.expect.metadata);
          expect(seen.has(outcome.id), "the handler ran").toBe(false);
        });
      }
    });
  }
});

// Revocation is the verifier's, not the token's: these rows need a revocation view, so they live here.
const revokedVectors: { name: string; claims: Record<string, unknown> }[] = [
  { name: "rejects a mandate whose jti was revoked", claims: { jti: "revoked-jti" } },
  { name: "rejects a mandate whose session was revoked", claims: { sid: "revoked-session" } },
  { name: "rejects a mandate whose root session was revoked", claims: { root_sid: "revoked-root" } },
  { name: "rejects a mandate issued to an application before its cut-off", claims: { client_id: "revoked-app", sub: "revoked-app" } },
];

describe("revoked mandates at the edge", () => {
  let stacks: Stacks;
  beforeAll(async () => {
    stacks = await startStacks();
    const expiresAtMs = T0 + 3_600_000;
    stacks.revocations.add({ id: "r1", zone: "acme", target: { kind: "mandate", mandateId: "revoked-jti" }, expiresAtMs });
    stacks.revocations.add({ id: "r2", zone: "acme", target: { kind: "session", sessionId: "revoked-session" }, expiresAtMs });
    stacks.revocations.add({ id: "r3", zone: "acme", target: { kind: "session", sessionId: "revoked-root" }, expiresAtMs });
    stacks.revocations.add({
      id: "r4",
      zone: "acme",
      target: { kind: "application", clientId: "revoked-app", issuedBeforeMs: T0 + 1_000 },
      expiresAtMs,
    });
  });

  for (const stack of STACKS) {
    describe(`on the ${stack} server adapter`, () => {
      for (const { name, claims } of revokedVectors) {
        it(name, async () => {
          expectRefused(await callCheck(stacks[stack], await mint(claims)), Code.Unauthenticated, Reason.MANDATE_REVOKED);
        });
      }

      it("refuses a mandate it admitted a moment ago once it is revoked", async () => {
        const token = await mint({ sid: `sess-${stack}-live` });
        const first = await callCheck(stacks[stack], token);
        expect(first.ok).toBe(true);
        stacks.revocations.add({
          id: `live-${stack}`,
          zone: "acme",
          target: { kind: "session", sessionId: `sess-${stack}-live` },
          expiresAtMs: T0 + 3_600_000,
        });
        expectRefused(await callCheck(stacks[stack], token), Code.Unauthenticated, Reason.MANDATE_REVOKED);
      });
    });
  }
});

// -- What the adapters add to the core ---------------------------------------

describe.each(STACKS)("the %s server adapter", (stack) => {
  let stacks: Stacks;
  beforeAll(async () => {
    stacks = await startStacks();
  });

  it("answers a successful call with x-caracal-decision-id, the id of its audit event", async () => {
    const outcome = await callCheck(stacks[stack], await mint(), { traceparent: TRACEPARENT });
    const decisionId = outcome.header?.get(DECISION_HEADER);
    expect(decisionId).toMatch(UUID);
    expect(stacks.audit.events.find((event) => event.decisionId === decisionId)).toMatchObject({
      decision: AuditDecision.ALLOW,
      edgeService: "grpc.health.v1.Health",
      edgeMethod: "Check",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      clientId: "agent-billing",
      sessionId: "sess-1",
    });
  });

  it("gives a refusal the decision id of its audit event", async () => {
    const error = expectRefused(await callCheck(stacks[stack], await mint({ scope: "invoices.list" })), Code.PermissionDenied, Reason.SCOPE_MISSING);
    const decisionId = errorDetailOf(error)?.decisionId;
    expect(decisionId).toMatch(UUID);
    expect(stacks.audit.events.find((event) => event.decisionId === decisionId)).toMatchObject({
      decision: AuditDecision.DENY,
      reason: Reason.SCOPE_MISSING,
    });
  });

  it("hands the handler the verified mandate", async () => {
    const token = await mint({ jti: `jti-${stack}` });
    const outcome = await callCheck(stacks[stack], token);
    expect(outcome.ok).toBe(true);
    expect(seen.get(outcome.id)?.claims).toMatchObject({ jti: `jti-${stack}`, zone: "acme", client_id: "agent-billing", scope: TEST_SCOPE });
  });

  it("refuses a call without a mandate before the handler runs", async () => {
    const outcome = await callCheck(stacks[stack], null);
    expectRefused(outcome, Code.Unauthenticated, Reason.MANDATE_MISSING);
    expect(seen.has(outcome.id)).toBe(false);
  });

  it("refuses an authorization header that is not a Bearer mandate", async () => {
    const outcome = await callCheck(stacks[stack], null, { authorization: "Basic YWdlbnQ6c2VjcmV0" });
    expectRefused(outcome, Code.Unauthenticated, Reason.MANDATE_MALFORMED);
  });

  it("refuses a mandate sent twice (joined into one header) as malformed", async () => {
    // grpc-js clients refuse to send a second authorization value; fetch-style headers join them.
    const token = await mint();
    const headers = new Headers({ "x-test-id": randomUUID() });
    headers.append("authorization", `Bearer ${token}`);
    headers.append("authorization", `Bearer ${token}`);
    let refused: ConnectError | undefined;
    await stacks[stack].client.check({}, { headers }).catch((error: unknown) => (refused = ConnectError.from(error)));
    expectRefused({ ok: refused === undefined, error: refused, messages: 0 }, Code.Unauthenticated, Reason.MANDATE_MALFORMED);
  });

  it("admits a public method without a mandate and gives its handler no mandate", async () => {
    const id = randomUUID();
    await stacks[stack].client.list({}, { headers: { "x-test-id": id } });
    expect(seen.get(id)).toMatchObject({ claims: undefined, authorization: null });
  });

  it("cannot be made to hand the handler a mandate through forged metadata", async () => {
    const forged = JSON.stringify({ zone: "acme", sub: "root", scope: "*", target: [TEST_RESOURCE] });
    const forgedHeaders = {
      "x-caracal-verified-mandate": forged,
      "caracal-verified-mandate": forged,
      "verified-mandate": forged,
      "x-caracal-mandate": forged,
    };
    const id = randomUUID();
    await stacks[stack].client.list({}, { headers: { "x-test-id": id, ...forgedHeaders } });
    expect(seen.get(id)?.claims).toBeUndefined();

    const admitted = await callCheck(stacks[stack], await mint({ jti: `real-${stack}` }), forgedHeaders);
    expect(seen.get(admitted.id)?.claims).toMatchObject({ jti: `real-${stack}`, sub: "agent-billing" });
  });

  it("protects a server-streaming method: refused without a mandate, streamed with one", async () => {
    const refused = await callWatch(stacks[stack], null);
    expectRefused(refused, Code.Unauthenticated, Reason.MANDATE_MISSING);
    expect(refused.messages).toBe(0);
    expect(seen.has(refused.id)).toBe(false);

    expectRefused(await callWatch(stacks[stack], await mint({ scope: "invoices.list" })), Code.PermissionDenied, Reason.SCOPE_MISSING);

    const streamed = await callWatch(stacks[stack], await mint({ jti: `watch-${stack}` }));
    expect(streamed.error?.message).toBeUndefined();
    expect(streamed.messages).toBe(2);
    expect(streamed.header?.get(DECISION_HEADER)).toMatch(UUID);
    expect(seen.get(streamed.id)?.claims).toMatchObject({ jti: `watch-${stack}` });
  });

  it("refuses a cached mandate once it expires on the verifier's clock", async () => {
    const token = await mint();
    expect((await callCheck(stacks[stack], token)).ok).toBe(true);
    clock.ms = T0 + (300 + 5) * 1000;
    expectRefused(await callCheck(stacks[stack], token), Code.Unauthenticated, Reason.MANDATE_EXPIRED);
  });
});

describe.each(STACKS)("the %s server adapter with other verifier settings", (stack) => {
  it("refuses a method with no declared requirement (deny by default)", async () => {
    const stacks = await startStacks({ requirements: { "grpc.health.v1.Health/List": { public: true } } });
    expectRefused(await callCheck(stacks[stack], await mint()), Code.PermissionDenied, Reason.METHOD_NOT_DECLARED);
  });

  it("refuses an allowed call with UNAVAILABLE REASON_AUDIT_UNAVAILABLE when the audit sink is full", async () => {
    const stacks = await startStacks({ audit: new MemoryAuditSink(0) });
    const error = expectRefused(await callCheck(stacks[stack], await mint()), Code.Unavailable, Reason.AUDIT_UNAVAILABLE);
    expect(errorDetailOf(error)?.decisionId).toMatch(UUID);
  });

  it("lets an allowed call through a full audit sink when requireAudit is false", async () => {
    const stacks = await startStacks({ audit: new MemoryAuditSink(0), requireAudit: false });
    const outcome = await callCheck(stacks[stack], await mint());
    expect(outcome.error?.message).toBeUndefined();
  });

  it("refuses with UNAVAILABLE REASON_KEYS_UNAVAILABLE when the verifier has no keys", async () => {
    const keys: MandateKeyResolver = () => {
      throw new MandateError(Reason.KEYS_UNAVAILABLE, "keys of zone acme are not available");
    };
    const stacks = await startStacks({ keys });
    expectRefused(await callCheck(stacks[stack], await mint()), Code.Unavailable, Reason.KEYS_UNAVAILABLE);
  });

  it("answers a verifier fault with INTERNAL and never says why", async () => {
    const keys: MandateKeyResolver = () => {
      throw new Error("key cache corrupted at /var/lib/secret");
    };
    const stacks = await startStacks({ keys });
    const error = expectRefused(await callCheck(stacks[stack], await mint()), Code.Internal, Reason.INTERNAL);
    expect(error.rawMessage).toBe("internal error");
  });

  it("refuses every call with UNAVAILABLE REASON_REVOCATION_STALE while the revocation view is stale", async () => {
    const stacks = await startStacks({
      revocations: {
        assertFresh: () => {
          throw staleRevocationView(60_000, 5_000);
        },
        isRevoked: () => false,
        onRevocation: () => () => {},
      },
    });
    expectRefused(await callCheck(stacks[stack], await mint()), Code.Unavailable, Reason.REVOCATION_STALE);
  });
});

describe("the Connect server adapter over HTTP/1.1 (Connect protocol)", () => {
  let client: Client<typeof Health>;
  let audit: MemoryAuditSink;
  beforeAll(async () => {
    audit = new MemoryAuditSink();
    const server = http.createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.service(Health, {
            check(_request, ctx) {
              record(ctx.requestHeader.get("x-test-id"), { claims: ctx.values.get(verifiedMandateKey), authorization: null, traceparent: null });
              return { status: ServingStatus.SERVING };
            },
            list: () => ({}),
            async *watch() {
              yield { status: ServingStatus.SERVING };
            },
          }),
        interceptors: [
          connectEdgeServerInterceptor(new EdgeVerifier({ keys: fixture.keyring.resolve, requirements: healthRequirements(), allowedZones: ["acme"], audit, now })),
        ],
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = createClient(Health, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  });

  it("admits a valid mandate with a decision id and hands the handler its claims", async () => {
    const id = randomUUID();
    let header: Headers | undefined;
    await client.check({}, { headers: headersFor(await mint({ jti: "http1" }), id), onHeader: (h) => (header = h) });
    expect(header?.get(DECISION_HEADER)).toMatch(UUID);
    expect(seen.get(id)?.claims).toMatchObject({ jti: "http1" });
  });

  it("refuses with the same codes and reasons as over gRPC", async () => {
    const refuse = async (token: string | null) => {
      try {
        await client.check({}, { headers: headersFor(token, randomUUID()) });
      } catch (error) {
        return { ok: false, error: ConnectError.from(error), messages: 0 };
      }
      return { ok: true, messages: 1 };
    };
    expectRefused(await refuse(null), Code.Unauthenticated, Reason.MANDATE_MISSING);
    expectRefused(await refuse(await mint({ scope: "other" })), Code.PermissionDenied, Reason.SCOPE_MISSING);
    expectRefused(await refuse(await mintMandate({ key: fixture.otherZoneKey, now })), Code.PermissionDenied, Reason.WRONG_ZONE);
  });
});

// -- Client interceptors, end to end -----------------------------------------

/** Mints what it is asked for, as the STS would, and remembers each request. */
class MintingProvider implements MandateProvider {
  readonly requests: string[] = [];
  async mandateFor(resource: string, scopes: readonly string[]): Promise<string> {
    this.requests.push(`${resource} ${scopes.join(" ")}`);
    return mint({ aud: [resource], target: [resource], scope: scopes.join(" ") });
  }
}

/** A provider that answers only when the test says so. */
class GatedProvider implements MandateProvider {
  readonly asked: Promise<void>;
  #asked!: () => void;
  #release: ((mandate: Promise<string>) => void) | undefined;
  constructor() {
    this.asked = new Promise((resolve) => (this.#asked = resolve));
  }
  mandateFor(): Promise<string> {
    this.#asked();
    return new Promise((resolve) => (this.#release = (mandate) => resolve(mandate)));
  }
  release(mandate: Promise<string>): void {
    this.#release!(mandate);
  }
}

interface HealthStub extends grpc.Client {
  check(
    request: HealthCheckRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<HealthCheckResponse>,
  ): grpc.ClientUnaryCall;
  list(request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<HealthListResponse>): grpc.ClientUnaryCall;
  watch(request: HealthCheckRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<HealthCheckResponse>;
}
const HealthClient = grpc.makeGenericClientConstructor(grpcServiceDefinition(Health), "Health") as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => HealthStub;

function grpcClient(address: string, interceptors: grpc.Interceptor[]): HealthStub {
  const client = new HealthClient(address, grpc.credentials.createInsecure(), { interceptors });
  closers.push(async () => client.close());
  return client;
}

/** A ConnectError from a grpc-js client's error: code, message and the ErrorDetail in its trailers. */
function fromGrpcError(error: grpc.ServiceError): ConnectError {
  const trailer = new Headers({ "grpc-status": String(error.code), "grpc-message": encodeURIComponent(error.details) });
  for (const [key, value] of Object.entries(error.metadata.getMap())) {
    trailer.set(key, Buffer.isBuffer(value) ? value.toString("base64") : value);
  }
  return findTrailerError(trailer) ?? new ConnectError(error.details, Code.Unknown);
}

function grpcCheck(
  client: HealthStub,
  id: string,
  options: grpc.CallOptions = {},
): { call: grpc.ClientUnaryCall; result: Promise<Outcome> } {
  const metadata = new grpc.Metadata();
  metadata.set("x-test-id", id);
  let header: Headers | undefined;
  let call!: grpc.ClientUnaryCall;
  const result = new Promise<Outcome>((resolve) => {
    call = client.check(create(HealthCheckRequestSchema, { service: "" }), metadata, options, (error) => {
      resolve(error ? { ok: false, error: fromGrpcError(error), header, messages: 0 } : { ok: true, header, messages: 1 });
    });
    call.on("metadata", (received: grpc.Metadata) => (header = metadataHeaders(received)));
  });
  return { call, result };
}

function grpcWatch(client: HealthStub, id: string): Promise<Outcome> {
  const metadata = new grpc.Metadata();
  metadata.set("x-test-id", id);
  let header: Headers | undefined;
  let messages = 0;
  return new Promise((resolve) => {
    const stream = client.watch(create(HealthCheckRequestSchema, { service: "" }), metadata);
    stream.on("metadata", (received: grpc.Metadata) => (header = metadataHeaders(received)));
    stream.on("data", () => (messages += 1));
    stream.on("error", (error: grpc.ServiceError) => resolve({ ok: false, error: fromGrpcError(error), header, messages }));
    stream.on("end", () => resolve({ ok: true, header, messages }));
  });
}

function metadataHeaders(metadata: grpc.Metadata): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(metadata.getMap())) if (typeof value === "string") headers.set(key, value);
  return headers;
}

describe.each(STACKS)("client interceptors against the %s server", (stack) => {
  let stacks: Stacks;
  beforeAll(async () => {
    stacks = await startStacks();
  });

  it("the Connect client interceptor attaches a mandate for the method's requirement and the traceparent", async () => {
    const provider = new MintingProvider();
    const sessionManager = new Http2SessionManager(stacks[stack].baseUrl);
    closers.push(async () => sessionManager.abort());
    const transport = createGrpcTransport({
      baseUrl: stacks[stack].baseUrl,
      sessionManager,
      interceptors: [connectMandateClientInterceptor(provider, { requirements: healthRequirements(), traceparent: () => TRACEPARENT })],
    });
    const client = createClient(Health, transport);
    const id = randomUUID();
    let header: Headers | undefined;
    await client.check({}, { headers: { "x-test-id": id }, onHeader: (h) => (header = h) });
    expect(provider.requests).toEqual([`${TEST_RESOURCE} ${TEST_SCOPE}`]);
    expect(seen.get(id)).toMatchObject({ traceparent: TRACEPARENT, claims: { target: [TEST_RESOURCE], scope: TEST_SCOPE } });
    const decisionId = header?.get(DECISION_HEADER);
    expect(stacks.audit.events.find((event) => event.decisionId === decisionId)?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");

    const watchId = randomUUID();
    let messages = 0;
    for await (const _message of client.watch({}, { headers: { "x-test-id": watchId } })) messages += 1;
    expect(messages).toBe(2);
    expect(seen.get(watchId)?.claims).toMatchObject({ scope: TEST_SCOPE });
  });

  it("the grpc-js client interceptor attaches a mandate and the traceparent to a unary call", async () => {
    const provider = new MintingProvider();
    const client = grpcClient(stacks[stack].address, [
      grpcMandateClientInterceptor(provider, { services: [Health], requirements: healthRequirements(), traceparent: () => TRACEPARENT }),
    ]);
    const id = randomUUID();
    const outcome = await grpcCheck(client, id).result;
    expect(outcome.error?.message).toBeUndefined();
    expect(outcome.header?.get(DECISION_HEADER)).toMatch(UUID);
    expect(provider.requests).toEqual([`${TEST_RESOURCE} ${TEST_SCOPE}`]);
    expect(seen.get(id)).toMatchObject({ traceparent: TRACEPARENT, claims: { target: [TEST_RESOURCE], scope: TEST_SCOPE } });
  });

  it("the grpc-js client interceptor attaches a mandate to a server-streaming call", async () => {
    const client = grpcClient(stacks[stack].address, [grpcMandateClientInterceptor(new MintingProvider(), { requirements: healthRequirements() })]);
    const id = randomUUID();
    const outcome = await grpcWatch(client, id);
    expect(outcome.error?.message).toBeUndefined();
    expect(outcome.messages).toBe(2);
    expect(seen.get(id)?.claims).toMatchObject({ scope: TEST_SCOPE });
  });

  it("the grpc-js client interceptor sends no mandate to a public method, but still the traceparent", async () => {
    const provider = new MintingProvider();
    const client = grpcClient(stacks[stack].address, [
      grpcMandateClientInterceptor(provider, { services: [Health], requirements: healthRequirements(), traceparent: () => TRACEPARENT }),
    ]);
    const id = randomUUID();
    const metadata = new grpc.Metadata();
    metadata.set("x-test-id", id);
    await new Promise<void>((resolve, reject) => client.list({}, metadata, {}, (error) => (error ? reject(error) : resolve())));
    expect(provider.requests).toEqual([]);
    expect(seen.get(id)).toMatchObject({ authorization: null, traceparent: TRACEPARENT });
  });

  it("the grpc-js client interceptor keeps a traceparent the call already carries", async () => {
    const client = grpcClient(stacks[stack].address, [
      grpcMandateClientInterceptor(new MintingProvider(), { requirements: healthRequirements(), traceparent: () => TRACEPARENT }),
    ]);
    const id = randomUUID();
    const own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const metadata = new grpc.Metadata();
    metadata.set("x-test-id", id);
    metadata.set("traceparent", own);
    await new Promise<void>((resolve, reject) =>
      client.check(create(HealthCheckRequestSchema, {}), metadata, {}, (error) => (error ? reject(error) : resolve())),
    );
    expect(seen.get(id)?.traceparent).toBe(own);
  });

  it("the grpc-js client interceptor holds the request until the mandate arrives, for a unary and a server-streaming call", async () => {
    const unaryProvider = new GatedProvider();
    const unaryClient = grpcClient(stacks[stack].address, [grpcMandateClientInterceptor(unaryProvider, { requirements: healthRequirements() })]);
    const unaryId = randomUUID();
    const unary = grpcCheck(unaryClient, unaryId);
    await unaryProvider.asked;
    expect(seen.has(unaryId)).toBe(false);
    unaryProvider.release(mint());
    expect((await unary.result).error?.message).toBeUndefined();
    expect(seen.get(unaryId)?.claims).toBeDefined();

    const streamProvider = new GatedProvider();
    const streamClient = grpcClient(stacks[stack].address, [grpcMandateClientInterceptor(streamProvider, { requirements: healthRequirements() })]);
    const streamId = randomUUID();
    const stream = grpcWatch(streamClient, streamId);
    await streamProvider.asked;
    streamProvider.release(mint());
    const outcome = await stream;
    expect(outcome.error?.message).toBeUndefined();
    expect(outcome.messages).toBe(2);
  });
});

describe("the grpc-js client interceptor when no mandate can be had", () => {
  let stacks: Stacks;
  beforeAll(async () => {
    stacks = await startStacks();
  });

  it("ends the call with UNAVAILABLE when the provider fails, without calling the server", async () => {
    const provider: MandateProvider = { mandateFor: async () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:7070")) };
    const client = grpcClient(stacks["grpc-js"].address, [grpcMandateClientInterceptor(provider, { requirements: healthRequirements() })]);
    const id = randomUUID();
    const outcome = await grpcCheck(client, id).result;
    expect(outcome.error?.code).toBe(Code.Unavailable);
    expect(outcome.error?.rawMessage).toBe(`could not obtain a mandate for ${TEST_RESOURCE}: connect ECONNREFUSED 127.0.0.1:7070`);
    expect(seen.has(id)).toBe(false);

    const streamed = await grpcWatch(client, randomUUID());
    expect(streamed.error?.code).toBe(Code.Unavailable);
  });

  it("ends the call with UNAVAILABLE when the provider throws instead of rejecting", async () => {
    const provider: MandateProvider = {
      mandateFor: () => {
        throw new Error("no credential configured");
      },
    };
    const client = grpcClient(stacks["grpc-js"].address, [grpcMandateClientInterceptor(provider, { requirements: healthRequirements() })]);
    const outcome = await grpcCheck(client, randomUUID()).result;
    expect(outcome.error?.code).toBe(Code.Unavailable);
    expect(outcome.error?.rawMessage).toBe(`could not obtain a mandate for ${TEST_RESOURCE}: no credential configured`);
  });

  it("ends the call with UNAVAILABLE when the client is closed while it waits for a mandate", async () => {
    const provider = new GatedProvider();
    const client = grpcClient(stacks["grpc-js"].address, [grpcMandateClientInterceptor(provider, { requirements: healthRequirements() })]);
    const { result } = grpcCheck(client, randomUUID());
    await provider.asked;
    client.close();
    provider.release(mint());
    const outcome = await result;
    expect(outcome.error?.code).toBe(Code.Unavailable);
    expect(outcome.error?.rawMessage).toMatch(/^call could not start: .*shut down/);
  });

  it("passes on the STS's refusal with its code and reason", async () => {
    const provider: MandateProvider = {
      mandateFor: async () => {
        throw caracalError(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED, "scope invoices.read is not granted", { decisionId: "d-42" });
      },
    };
    const client = grpcClient(stacks["grpc-js"].address, [grpcMandateClientInterceptor(provider, { requirements: healthRequirements() })]);
    const outcome = await grpcCheck(client, randomUUID()).result;
    expectRefused(outcome, Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED);
    expect(errorDetailOf(outcome.error)?.decisionId).toBe("d-42");
  });

  /** An interceptor after the mandate interceptor: it counts the calls handed on to the channel. */
  function handedOn(): { count: number; interceptor: grpc.Interceptor } {
    const probe = {
      count: 0,
      interceptor: ((options, nextCall) => {
        probe.count += 1;
        return new grpc.InterceptingCall(nextCall(options));
      }) as grpc.Interceptor,
    };
    return probe;
  }

  /** Lets every pending promise callback run (one turn of the event loop, no timer). */
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

  it("ends the call with DEADLINE_EXCEEDED when the deadline passes while it waits for a mandate", async () => {
    const provider = new GatedProvider();
    const probe = handedOn();
    const client = grpcClient(stacks["grpc-js"].address, [
      grpcMandateClientInterceptor(provider, { requirements: healthRequirements() }),
      probe.interceptor,
    ]);
    const { result } = grpcCheck(client, randomUUID(), { deadline: Date.now() + 100 });
    await provider.asked;
    const outcome = await result;
    expect(outcome.error?.code).toBe(Code.DeadlineExceeded);
    expect(outcome.error?.rawMessage).toBe("Deadline exceeded while obtaining a mandate");
    // A mandate that turns up afterwards does not resurrect the call.
    provider.release(mint());
    await settle();
    await settle();
    expect(probe.count).toBe(0);
  });

  it("ends the call with CANCELLED when the caller cancels while it waits for a mandate", async () => {
    const provider = new GatedProvider();
    const probe = handedOn();
    const client = grpcClient(stacks["grpc-js"].address, [
      grpcMandateClientInterceptor(provider, { requirements: healthRequirements() }),
      probe.interceptor,
    ]);
    const { call, result } = grpcCheck(client, randomUUID());
    await provider.asked;
    call.cancel();
    expect((await result).error?.code).toBe(Code.Canceled);
    provider.release(mint());
    await settle();
    await settle();
    expect(probe.count).toBe(0);
  });

  it("still ends a call whose deadline has already passed when the mandate arrives", async () => {
    const provider = new GatedProvider();
    const client = grpcClient(stacks["grpc-js"].address, [grpcMandateClientInterceptor(provider, { requirements: healthRequirements() })]);
    const { result } = grpcCheck(client, randomUUID(), { deadline: new Date(Date.now() - 1) });
    await provider.asked;
    expect((await result).error?.code).toBe(Code.DeadlineExceeded);
  });
});

// -- Requirements declared in the proto ---------------------------------------

describe("requirements declared in the proto (caracal.mandate.v1.requires)", () => {
  // AdminService.GetZone declares { resource: "caracal-admin", scopes: ["admin.read"] }; no map is given anywhere below.
  const servers = {} as Record<StackName, { address: string; baseUrl: string }>;
  const adminMandate = (scope: string) => mint({ aud: ["caracal-admin"], target: ["caracal-admin"], scope });

  beforeAll(async () => {
    const options: EdgeVerifierOptions = { keys: fixture.keyring.resolve, allowedZones: ["acme"], now };

    const connect = http2.createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.service(AdminService, {
            getZone(_request, ctx) {
              record(ctx.requestHeader.get("x-test-id"), {
                claims: ctx.values.get(verifiedMandateKey),
                authorization: ctx.requestHeader.get("authorization"),
                traceparent: ctx.requestHeader.get("traceparent"),
              });
              return {};
            },
          }),
        interceptors: [connectEdgeServerInterceptor(options)],
      }),
    );
    const sessions = new Set<http2.ServerHttp2Session>();
    connect.on("session", (session) => sessions.add(session));
    await new Promise<void>((resolve) => connect.listen(0, "127.0.0.1", resolve));
    closers.push(async () => {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => connect.close(() => resolve()));
    });

    const grpcServer = new grpc.Server({ interceptors: [grpcEdgeServerInterceptor({ ...options, services: [AdminService] })] });
    grpcServer.addService(grpcServiceDefinition(AdminService), {
      getZone(call: grpc.ServerUnaryCall<unknown, GetZoneResponse>, callback: grpc.sendUnaryData<GetZoneResponse>) {
        record(grpcMetadataValue(call.metadata, "x-test-id"), {
          claims: verifiedMandate(call),
          authorization: grpcMetadataValue(call.metadata, "authorization"),
          traceparent: grpcMetadataValue(call.metadata, "traceparent"),
        });
        callback(null, create(GetZoneResponseSchema, {}));
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    closers.push(async () => grpcServer.forceShutdown());

    const connectAddress = `127.0.0.1:${(connect.address() as AddressInfo).port}`;
    servers.connect = { address: connectAddress, baseUrl: `http://${connectAddress}` };
    servers["grpc-js"] = { address: `127.0.0.1:${port}`, baseUrl: `http://127.0.0.1:${port}` };
  });

  function connectAdminClient(stack: StackName, interceptors: Parameters<typeof createGrpcTransport>[0]["interceptors"] = []) {
    const sessionManager = new Http2SessionManager(servers[stack].baseUrl);
    closers.push(async () => sessionManager.abort());
    return createClient(AdminService, createGrpcTransport({ baseUrl: servers[stack].baseUrl, sessionManager, interceptors }));
  }

  for (const stack of STACKS) {
    describe(`on the ${stack} server adapter`, () => {
      it("admits a mandate with the declared resource and scope", async () => {
        const id = randomUUID();
        await connectAdminClient(stack).getZone({ zone: "acme" }, { headers: headersFor(await adminMandate("admin.read"), id) });
        expect(seen.get(id)?.claims).toMatchObject({ target: ["caracal-admin"], scope: "admin.read" });
      });

      it("refuses a mandate without the declared scope and names it", async () => {
        let refused: ConnectError | undefined;
        await connectAdminClient(stack)
          .getZone({ zone: "acme" }, { headers: headersFor(await adminMandate("admin.write"), randomUUID()) })
          .catch((error: unknown) => (refused = ConnectError.from(error)));
        expectRefused({ ok: refused === undefined, error: refused, messages: 0 }, Code.PermissionDenied, Reason.SCOPE_MISSING);
        expect(errorDetailOf(refused)?.metadata).toEqual({ scope: "admin.read" });
      });

      it("refuses a mandate for another resource", async () => {
        let refused: ConnectError | undefined;
        await connectAdminClient(stack)
          .getZone({ zone: "acme" }, { headers: headersFor(await mint({ scope: "admin.read" }), randomUUID()) })
          .catch((error: unknown) => (refused = ConnectError.from(error)));
        expectRefused({ ok: refused === undefined, error: refused, messages: 0 }, Code.PermissionDenied, Reason.WRONG_AUDIENCE);
      });

      it("lets the Connect client interceptor ask for exactly what the proto declares", async () => {
        const provider = new MintingProvider();
        const id = randomUUID();
        await connectAdminClient(stack, [connectMandateClientInterceptor(provider)]).getZone({ zone: "acme" }, { headers: { "x-test-id": id } });
        expect(provider.requests).toEqual(["caracal-admin admin.read"]);
        expect(seen.get(id)?.claims).toMatchObject({ scope: "admin.read" });
      });

      it("lets the grpc-js client interceptor ask for exactly what the proto declares", async () => {
        const provider = new MintingProvider();
        const Admin = grpc.makeGenericClientConstructor(grpcServiceDefinition(AdminService), "AdminService");
        const client = new Admin(servers[stack].address, grpc.credentials.createInsecure(), {
          interceptors: [grpcMandateClientInterceptor(provider, { services: [AdminService] })],
        });
        closers.push(async () => client.close());
        const id = randomUUID();
        const metadata = new grpc.Metadata();
        metadata.set("x-test-id", id);
        await new Promise<void>((resolve, reject) =>
          (client as unknown as { getZone: HealthStub["check"] }).getZone(
            create(GetZoneRequestSchema, { zone: "acme" }) as never,
            metadata,
            {},
            (error) => (error ? reject(error) : resolve()),
          ),
        );
        expect(provider.requests).toEqual(["caracal-admin admin.read"]);
        expect(seen.get(id)?.claims).toMatchObject({ scope: "admin.read" });
      });
    });
  }
});
