/**
 * The examples in `examples/`, run as a user would run them: Caracal on the
 * embedded default (in-process `serve()`, a temporary data dir), a zone set up
 * with the admin client the CLI uses, both example servers against it, and
 * both example clients calling them.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCaracalConnection, type CaracalConnection } from "../clients/cli/caracal-connection.js";
import { loadAdminProfile } from "../clients/cli/profile.js";
import type { MandateSource } from "../clients/mandate-source.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { reasonOf } from "../interceptors/caracal-error.js";
import { mandateClientInterceptor as connectMandateInterceptor } from "../interceptors/connect/mandate-client-interceptor.js";
import { mandateClientInterceptor as grpcMandateInterceptor } from "../interceptors/grpc-js/mandate-client-interceptor.js";
import type { MandateClaims } from "../interceptors/mandate-claims.js";
import type { MandateProvider } from "../interceptors/mandate-provider.js";
import { startBillingServer as startConnectBilling } from "../examples/connect-service/server.js";
import { openBillingClient as openConnectClient } from "../examples/connect-service/client.js";
import {
  BillingService,
  CreateInvoiceRequestSchema,
  ListInvoicesRequestSchema,
  PingRequestSchema,
  WatchInvoicesRequestSchema,
  type CreateInvoiceResponse,
  type Invoice,
  type ListInvoicesResponse,
  type PingResponse,
  type WatchInvoicesResponse,
} from "../examples/gen/acme/billing/v1/billing_pb.js";
import { startBillingServer as startGrpcJsBilling } from "../examples/grpc-js-service/server.js";
import {
  BillingClient as GrpcJsBillingClient,
  openBillingClient as openGrpcJsClient,
  unary,
} from "../examples/grpc-js-service/client.js";
import { grpcReasonOf } from "../interceptors/grpc-js/grpc-status.js";
import { loadConfig } from "../services/config.js";
import { createLogger, serve, type RunningCaracal } from "../services/serve.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const ZONE = "acme";
const DECISION_ID = /^[0-9a-f-]{36}$/;

/** How a call ended, the same for both stacks (Connect's `Code` numbers are gRPC's). */
type Outcome<T> = { readonly ok: true; readonly value: T; readonly decisionId: string | undefined } | { readonly ok: false; readonly code: Code; readonly reason: Reason };

/** The billing service's methods, called the way each stack's client calls them. */
interface BillingCaller {
  ping(): Promise<Outcome<PingResponse>>;
  listInvoices(): Promise<Outcome<ListInvoicesResponse>>;
  createInvoice(customer: string, amountCents: bigint): Promise<Outcome<CreateInvoiceResponse>>;
  watchInvoices(): Promise<Outcome<Invoice[]>>;
  close(): void;
}

/** An application's credential. */
interface App {
  readonly clientId: string;
  readonly clientSecret: string;
}

/** One example stack: its server, its client, and raw clients for calls the example client would never make. */
interface ExampleStack {
  readonly name: string;
  readonly dir: string;
  start(caracalUrl: string, onCall: (method: string, mandate: MandateClaims | undefined) => void): Promise<{ target: string; close(): Promise<void> }>;
  /** The example's own client. */
  open(caracalUrl: string, target: string, app: App): { caller: BillingCaller; mandates: MandateSource };
  /** A client of the same stack with a chosen mandate provider, or none at all. */
  raw(target: string, provider: MandateProvider | undefined): BillingCaller;
  /** Environment for the example client's `main`. */
  clientEnv(target: string): Record<string, string>;
}

function grpcJsCaller(billing: GrpcJsBillingClient): BillingCaller {
  const settle = <T>(run: () => Promise<{ response: T; decisionId: string | undefined }>): Promise<Outcome<T>> =>
    run().then(
      ({ response, decisionId }) => ({ ok: true, value: response, decisionId }),
      (error: grpc.ServiceError) => ({ ok: false, code: error.code as number as Code, reason: grpcReasonOf(error) }),
    );
  return {
    ping: () => settle(() => unary<PingResponse>((callback) => billing.ping(create(PingRequestSchema), callback))),
    listInvoices: () => settle(() => unary<ListInvoicesResponse>((callback) => billing.listInvoices(create(ListInvoicesRequestSchema), callback))),
    createInvoice: (customer, amountCents) =>
      settle(() =>
        unary<CreateInvoiceResponse>((callback) => billing.createInvoice(create(CreateInvoiceRequestSchema, { customer, amountCents }), callback)),
      ),
    watchInvoices: () =>
      settle(async () => {
        const stream = billing.watchInvoices(create(WatchInvoicesRequestSchema));
        let decisionId: string | undefined;
        stream.on("metadata", (metadata: grpc.Metadata) => (decisionId = metadata.get("x-caracal-decision-id")[0]?.toString()));
        const invoices: Invoice[] = [];
        for await (const event of stream as AsyncIterable<WatchInvoicesResponse>) invoices.push(event.invoice!);
        return { response: invoices, decisionId };
      }),
    close: () => billing.close(),
  };
}

function connectCaller(billing: Client<typeof BillingService>, close: () => void): BillingCaller {
  const settle = async <T>(run: (onHeader: (header: Headers) => void) => Promise<T>): Promise<Outcome<T>> => {
    let decisionId: string | undefined;
    try {
      const value = await run((header) => (decisionId = header.get("x-caracal-decision-id") ?? undefined));
      return { ok: true, value, decisionId };
    } catch (error) {
      const refusal = ConnectError.from(error);
      return { ok: false, code: refusal.code, reason: reasonOf(refusal) };
    }
  };
  return {
    ping: () => settle((onHeader) => billing.ping({}, { onHeader })),
    listInvoices: () => settle((onHeader) => billing.listInvoices({}, { onHeader })),
    createInvoice: (customer, amountCents) => settle((onHeader) => billing.createInvoice({ customer, amountCents }, { onHeader })),
    watchInvoices: () =>
      settle(async (onHeader) => {
        const invoices: Invoice[] = [];
        for await (const event of billing.watchInvoices({}, { onHeader })) invoices.push(event.invoice!);
        return invoices;
      }),
    close,
  };
}

const STACKS: readonly ExampleStack[] = [
  {
    name: "grpc-js",
    dir: "examples/grpc-js-service",
    async start(caracalUrl, onCall) {
      const server = await startGrpcJsBilling({ caracalUrl, port: 0, onCall });
      return { target: server.address, close: () => server.close() };
    },
    open(caracalUrl, target, app) {
      const { billing, mandates, close } = openGrpcJsClient({ caracalUrl, billingAddress: target, zone: ZONE, ...app });
      const caller = grpcJsCaller(billing);
      return { caller: { ...caller, close }, mandates };
    },
    raw(target, provider) {
      const interceptors = provider ? [grpcMandateInterceptor(provider, { services: [BillingService] })] : [];
      return grpcJsCaller(new GrpcJsBillingClient(target, grpc.credentials.createInsecure(), { interceptors }));
    },
    clientEnv: (target) => ({ BILLING_ADDRESS: target }),
  },
  {
    name: "Connect",
    dir: "examples/connect-service",
    async start(caracalUrl, onCall) {
      const server = await startConnectBilling({ caracalUrl, port: 0, onCall });
      return { target: server.url, close: () => server.close() };
    },
    open(caracalUrl, target, app) {
      const { billing, mandates, close } = openConnectClient({ caracalUrl, billingUrl: target, zone: ZONE, ...app });
      return { caller: connectCaller(billing, close), mandates };
    },
    raw(target, provider) {
      const sessionManager = new Http2SessionManager(target);
      const interceptors = provider ? [connectMandateInterceptor(provider)] : [];
      const transport = createConnectTransport({ baseUrl: target, httpVersion: "2", sessionManager, interceptors });
      return connectCaller(createClient(BillingService, transport), () => sessionManager.abort());
    },
    clientEnv: (target) => ({ BILLING_URL: target }),
  },
];

let dataDir: string;
let caracal: RunningCaracal;
let caracalUrl: string;
let admin: CaracalConnection;
let reader: App;
let clerk: App;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "caracal-examples-"));
  const config = loadConfig({ CARACAL_LISTEN: "127.0.0.1:0", CARACAL_DATA_DIR: dataDir, CARACAL_LOG_LEVEL: "silent" });
  caracal = await serve(config, createLogger(config.logLevel));
  caracalUrl = `http://127.0.0.1:${caracal.server.address.port}`;

  // The same setup as README's "A first session", with the admin client the CLI uses.
  const profile = await loadAdminProfile({ profile: join(dataDir, "admin-profile.json") });
  admin = openCaracalConnection(profile.target, { zone: profile.zone, clientId: profile.client_id, clientSecret: profile.client_secret });
  const adminPlane = admin.admin!;
  await adminPlane.createZone({ zone: ZONE });
  await adminPlane.createResource({ zone: ZONE, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
  const createApp = async (clientId: string, scopes: string[]): Promise<App> => {
    const { clientSecret } = await adminPlane.createApplication({ zone: ZONE, clientId });
    await adminPlane.createGrant({ zone: ZONE, clientId, resourceId: "billing-api", scopes });
    return { clientId, clientSecret };
  };
  reader = await createApp("billing-agent", ["invoices.read"]);
  clerk = await createApp("billing-clerk", ["invoices.read", "invoices.write"]);
});

afterAll(async () => {
  admin?.close();
  await caracal?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe.each(STACKS)("the $name example service", (stack) => {
  const calls: { method: string; mandate: MandateClaims | undefined }[] = [];
  let server: Awaited<ReturnType<ExampleStack["start"]>>;
  let agent: ReturnType<ExampleStack["open"]>;
  const extra: BillingCaller[] = [];
  const raw = (provider: MandateProvider | undefined) => {
    const caller = stack.raw(server.target, provider);
    extra.push(caller);
    return caller;
  };

  beforeAll(async () => {
    server = await stack.start(caracalUrl, (method, mandate) => calls.push({ method, mandate }));
    agent = stack.open(caracalUrl, server.target, reader);
  });

  afterAll(async () => {
    agent?.caller.close();
    for (const caller of extra) caller.close();
    await server?.close();
  });

  it("answers Ping without a mandate, because the proto marks it public", async () => {
    const outcome = await raw(undefined).ping();
    expect(outcome).toMatchObject({ ok: true, value: { status: "ok" } });
    expect(calls.at(-1)).toEqual({ method: "Ping", mandate: undefined });
  });

  it("serves ListInvoices to an application granted invoices.read, and the handler sees its client id and session", async () => {
    const outcome = await agent.caller.listInvoices();
    if (!outcome.ok) throw new Error(`refused: ${Code[outcome.code]} ${Reason[outcome.reason]}`);
    expect(outcome.value.invoices.map((invoice) => invoice.customer)).toEqual(expect.arrayContaining(["globex", "initech"]));
    expect(outcome.decisionId).toMatch(DECISION_ID);
    const session = decodeJwt(await agent.mandates.sessionMandate());
    const seen = calls.at(-1)!;
    expect(seen.method).toBe("ListInvoices");
    expect(seen.mandate).toMatchObject({ client_id: "billing-agent", sid: session.sid, zone: ZONE, use: "resource", scope: "invoices.read" });
    expect(seen.mandate!.target).toEqual(["billing-api"]);
  });

  it("streams WatchInvoices to a caller whose mandate carries invoices.read", async () => {
    const outcome = await agent.caller.watchInvoices();
    if (!outcome.ok) throw new Error(`refused: ${Code[outcome.code]} ${Reason[outcome.reason]}`);
    expect(outcome.value.map((invoice) => invoice.invoiceId).slice(0, 2)).toEqual(["inv-1", "inv-2"]);
    expect(outcome.decisionId).toMatch(DECISION_ID);
    expect(calls.at(-1)).toMatchObject({ method: "WatchInvoices", mandate: { client_id: "billing-agent" } });
  });

  it("refuses CreateInvoice with a read-only mandate: PERMISSION_DENIED with REASON_SCOPE_MISSING", async () => {
    const readOnly = raw({ mandateFor: (resource) => agent.mandates.mandateFor(resource, ["invoices.read"]) });
    const before = calls.length;
    expect(await readOnly.createInvoice("umbrella", 9_900n)).toEqual({ ok: false, code: Code.PermissionDenied, reason: Reason.SCOPE_MISSING });
    expect(calls.length).toBe(before);
  });

  it("refuses calls without a mandate: UNAUTHENTICATED with REASON_MANDATE_MISSING, unary and streaming", async () => {
    const nobody = raw(undefined);
    const before = calls.length;
    const refused = { ok: false, code: Code.Unauthenticated, reason: Reason.MANDATE_MISSING };
    expect(await nobody.listInvoices()).toEqual(refused);
    expect(await nobody.createInvoice("umbrella", 9_900n)).toEqual(refused);
    expect(await nobody.watchInvoices()).toEqual(refused);
    expect(calls.length).toBe(before);
  });

  it("has the example client's write refused by the STS before it reaches the service: PERMISSION_DENIED with REASON_SCOPE_NOT_GRANTED", async () => {
    const before = calls.length;
    expect(await agent.caller.createInvoice("umbrella", 9_900n)).toEqual({ ok: false, code: Code.PermissionDenied, reason: Reason.SCOPE_NOT_GRANTED });
    expect(calls.length).toBe(before);
  });

  it("serves CreateInvoice to an application granted invoices.write, recorded as created by its client id", async () => {
    const writer = stack.open(caracalUrl, server.target, clerk);
    extra.push(writer.caller);
    const outcome = await writer.caller.createInvoice("umbrella", 9_900n);
    if (!outcome.ok) throw new Error(`refused: ${Code[outcome.code]} ${Reason[outcome.reason]}`);
    expect(outcome.value.invoice).toMatchObject({ customer: "umbrella", amountCents: 9_900n, createdBy: "billing-clerk" });
    expect(outcome.decisionId).toMatch(DECISION_ID);
    expect(calls.at(-1)).toMatchObject({ method: "CreateInvoice", mandate: { client_id: "billing-clerk", scope: "invoices.write" } });
  });

  it("runs from the command line as examples/README.md says: server, then client", async () => {
    const env = { ...process.env, CARACAL_URL: caracalUrl, CARACAL_LOG_LEVEL: "silent" };
    const serverProcess = spawn(process.execPath, ["--import", "tsx", join(stack.dir, "server.ts")], {
      cwd: root,
      env: { ...env, PORT: "0" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      let target: string | undefined;
      for await (const line of createInterface({ input: serverProcess.stdout })) {
        target = /^billing \(.+\) on (\S+),/.exec(line)?.[1];
        if (target) break;
      }
      expect(target).toBeDefined();
      const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", join(stack.dir, "client.ts")], {
        cwd: root,
        env: { ...env, ...stack.clientEnv(target!), CARACAL_ZONE: ZONE, CARACAL_CLIENT_ID: reader.clientId, CARACAL_CLIENT_SECRET: reader.clientSecret },
      });
      expect(stdout).toContain("Ping: ok");
      expect(stdout).toMatch(/ListInvoices \(decision [0-9a-f-]{36}\):\n {2}inv-1 globex 12000 \(by seed\)/);
      expect(stdout).toContain("WatchInvoices:\n  inv-1 globex 12000 (by seed)\n  inv-2 initech 4500 (by seed)");
      expect(stdout).toMatch(/CreateInvoice refused: \S+ REASON_SCOPE_NOT_GRANTED/);
    } finally {
      const exited = new Promise((resolve) => serverProcess.once("exit", resolve));
      serverProcess.kill("SIGTERM");
      await exited;
    }
  }, 60_000);
});

describe("the example API", () => {
  const buf = (args: string[], cwd: string) =>
    promisify(execFile)("buf", args, { cwd, env: { ...process.env, PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH}` } });

  async function files(dir: string): Promise<string[]> {
    const entries = await readdir(dir, { withFileTypes: true, recursive: true });
    return entries.filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name))).sort();
  }

  it("has examples/gen exactly as the command in examples/README.md generates it", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "caracal-examples-gen-"));
    try {
      await buf(["generate", "--config", "examples/buf.workspace.yaml", "--template", "examples/buf.gen.yaml", "--output", scratch], root);
      const fresh = join(scratch, "examples", "gen");
      const committed = join(root, "examples", "gen");
      expect(await files(fresh)).toEqual(await files(committed));
      for (const file of await files(fresh)) {
        expect(await readFile(join(fresh, file), "utf8"), file).toBe(await readFile(join(committed, file), "utf8"));
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it("passes buf lint (STANDARD)", async () => {
    await expect(buf(["lint", "--config", "examples/buf.workspace.yaml", "examples/proto"], root)).resolves.toBeDefined();
  });
});
