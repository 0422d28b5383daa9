/**
 * A whole Caracal server for end-to-end tests, on either backend the product
 * ships with: real Postgres plus real NATS JetStream (production), or PGlite
 * in a temporary directory plus the in-process bus (the embedded default).
 * The server is started with `startCaracalServer` and `bootstrap` directly, so
 * the test chooses the clock, the key-encryption key and the NATS stream names.
 *
 * What a test gets: STS and admin clients (the admin one authenticated the way
 * the CLI is, with the bootstrapped admin profile), a tap on the audit topic,
 * raw SQL against the store, the captured log lines, and `stop()`.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary, type DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AuditEventSchema, type AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { mandateClientInterceptor } from "../../interceptors/connect/mandate-client-interceptor.js";
import { MandateSource, type ApplicationCredential } from "../../clients/mandate-source.js";
import { adminProfilePath, bootstrap, type AdminProfile } from "../../services/bootstrap.js";
import type { Bus, Subscription } from "../../services/bus/bus.js";
import { createMemoryBus } from "../../services/bus/memory-bus.js";
import { openNatsBus } from "../../services/bus/nats-bus.js";
import { SERVICE_NAMES } from "../../services/config.js";
import { KeyEncryptionKey } from "../../services/keys/key-encryption-key.js";
import { startCaracalServer, type CaracalServer } from "../../services/server/caracal-server.js";
import { openStore } from "../../services/store/open-store.js";
import type { Row, Store } from "../../services/store/store.js";
import { captureLogs } from "./log-capture.js";
import { natsTestNamespace, testNatsUrl } from "./nats.js";
import { createTestDatabase } from "./postgres.js";

/** The two backends every end-to-end suite runs on. */
export type HarnessKind = "postgres+nats" | "pglite+memory";

/** Both kinds, for `describe.each`. */
export const HARNESS_KINDS: readonly HarnessKind[] = ["postgres+nats", "pglite+memory"];

/**
 * A clock tests move by hand. It starts on a whole second (so claim times are
 * exact) and never moves by itself: expiry is reached by `advance`, not by sleeping.
 */
export class TestClock {
  #ms: number;

  constructor(startMs = Math.floor(Date.now() / 1000) * 1000) {
    this.#ms = startMs;
  }

  /** Milliseconds since the epoch; pass this function wherever a `now` is injected. */
  readonly now = (): number => this.#ms;

  /** The current time in whole seconds, as JWT claims count it. */
  get seconds(): number {
    return Math.floor(this.#ms / 1000);
  }

  /** Moves the clock forward. */
  advance(seconds: number): void {
    if (!(seconds >= 0)) throw new TypeError("the test clock only moves forward");
    this.#ms += seconds * 1000;
  }
}

/** One audit event as it crossed the bus: decoded, with its raw bytes for leak checks. */
export interface TappedAuditEvent {
  readonly event: AuditEvent;
  readonly data: Uint8Array;
  /** The zone from the subject. */
  readonly zone: string;
}

/** Content of one table, enough to tell whether anything was written. */
export interface TableState {
  readonly rows: number;
  /** md5 over every row's text, in a fixed order: changes on insert, update and delete. */
  readonly digest: string;
}

/** Every table of the store with its state. */
export type StoreSnapshot = Readonly<Record<string, TableState>>;

// Zone slug the audit barrier is published under; never a zone a test creates.
const BARRIER_ZONE = "zz-harness-barrier";

/**
 * Everything the audit topic carried since the harness started. `settle()`
 * waits until every event the server has recorded so far is in `events`.
 */
export class AuditTap {
  readonly #received: TappedAuditEvent[] = [];
  readonly #waiters = new Map<string, () => void>();
  readonly #server: CaracalServer;
  readonly #bus: Bus;

  constructor(server: CaracalServer, bus: Bus) {
    this.#server = server;
    this.#bus = bus;
  }

  /** Handles one message of the audit topic. */
  receive(zone: string, data: Uint8Array): void {
    const event = fromBinary(AuditEventSchema, data);
    if (zone === BARRIER_ZONE) {
      this.#waiters.get(event.eventId)?.();
      return;
    }
    this.#received.push({ event, data, zone });
  }

  /** Every event received, oldest first. */
  get events(): readonly TappedAuditEvent[] {
    return this.#received;
  }

  /** Events with this decision id. */
  forDecision(decisionId: string): AuditEvent[] {
    return this.#received.filter((tapped) => tapped.event.decisionId === decisionId).map((tapped) => tapped.event);
  }

  /**
   * Waits until the server's publisher has had every recorded event
   * acknowledged, then publishes a barrier and waits for it to come back:
   * the topic is delivered in order, so everything before it has arrived.
   */
  async settle(timeoutMs = 10_000): Promise<void> {
    await this.#server.audit.flushed();
    const id = randomUUID();
    const arrived = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("audit barrier did not come back")), timeoutMs);
      this.#waiters.set(id, () => {
        clearTimeout(timer);
        this.#waiters.delete(id);
        resolve();
      });
    });
    await this.#bus.publish("audit", BARRIER_ZONE, toBinary(AuditEventSchema, create(AuditEventSchema, { eventId: id, zone: BARRIER_ZONE })), id);
    await arrived;
  }
}

/** A running server and what tests need around it. */
export interface CaracalHarness {
  readonly kind: HarnessKind;
  /** Where this harness's NATS streams are (postgres+nats only), for verifiers that follow them. */
  readonly nats: { readonly url: string; readonly revocationStream: string; readonly subjectPrefix: string } | undefined;
  readonly clock: TestClock;
  /** The key-encryption key the server seals keys and hashes secrets with. */
  readonly kek: KeyEncryptionKey;
  /** The audit key the ledger HMACs its rows with. */
  readonly auditKey: Buffer;
  readonly store: Store;
  readonly bus: Bus;
  readonly server: CaracalServer;
  /** `http://127.0.0.1:<port>`. */
  readonly baseUrl: string;
  /** The admin profile the bootstrap wrote (holds the admin client secret). */
  readonly profile: AdminProfile;
  /** Where the bootstrap wrote it. */
  readonly profilePath: string;
  /** TokenService over gRPC, no credentials attached. */
  readonly sts: Client<typeof TokenService>;
  /** AdminService over gRPC with the admin profile's mandates attached, as the CLI does it. */
  readonly admin: Client<typeof AdminService>;
  /** AdminService over gRPC with nothing attached: pass `authorization` per call. */
  readonly bareAdmin: Client<typeof AdminService>;
  /** The audit topic, tapped since start. */
  readonly audit: AuditTap;
  /** Every log line the server wrote, parsed. */
  readonly logLines: readonly Record<string, unknown>[];
  /** A MandateSource for any application, on the harness clock. */
  mandateSource(zone: string, clientId: string, credential: ApplicationCredential): MandateSource;
  /** An AdminService client whose mandates come from `source`. */
  adminClient(source: MandateSource): Client<typeof AdminService>;
  /** A client of any of the server's services, its mandates from `source` (default: the admin profile's). */
  serviceClient<T extends DescService>(service: T, source?: MandateSource): Client<T>;
  /** Subscribes to the audit topic from its start; each message decoded. */
  subscribeAudit(handler: (event: AuditEvent, zone: string) => void): Promise<Subscription>;
  /** Runs raw SQL against the store. */
  sql<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /**
   * Row count and content digest of every table but those written in the
   * background by design: `policy_decisions` (the STS's replay sample of
   * policy questions) and the audit ledger (`audit_events`,
   * `audit_chain_heads`), which records every decision, refusals included.
   * What they hold is tested on its own.
   */
  snapshot(): Promise<StoreSnapshot>;
  /** Every row of every table as Postgres prints it (bytea as hex), one line each: to prove what is not stored. */
  textDump(): Promise<string>;
  /**
   * Every token and secret that crossed a harness client, in either
   * direction (credentials, mandates, `authorization` headers), and each
   * mandate's signature on its own: what no log line or audit event may hold.
   */
  readonly sensitive: ReadonlySet<string>;
  /** The plain-HTTP JWKS URL of a zone. */
  jwksUrl(zone: string): URL;
  /** Stops the server, closes clients, bus and store, and removes what the harness created. */
  stop(): Promise<void>;
}

/**
 * Starts a server on the chosen backend, bootstraps it, and connects clients.
 *
 * @example
 * const caracal = await startHarness("pglite+memory");
 * afterAll(() => caracal.stop());
 * await caracal.admin.createZone({ zone: "acme" });
 */
export async function startHarness(kind: HarnessKind): Promise<CaracalHarness> {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  const runCleanups = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => {});
  };
  try {
    const clock = new TestClock();
    const kek = new KeyEncryptionKey(randomBytes(32));
    const auditKey = randomBytes(32);
    const logs = captureLogs();
    const dataDir = await mkdtemp(join(tmpdir(), "caracal-harness-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const onError = (error: unknown, failure: object) => logs.log.error({ err: error, ...failure }, "bus failure");

    let store: Store;
    let bus: Bus;
    let natsStreams: CaracalHarness["nats"];
    if (kind === "postgres+nats") {
      const database = await createTestDatabase();
      cleanups.push(() => database.drop());
      store = await openStore({ databaseUrl: database.url, dataDir });
      cleanups.push(() => store.close());
      const nats = natsTestNamespace();
      cleanups.push(() => nats.cleanup());
      const prefix = nats.prefix();
      natsStreams = { url: testNatsUrl, revocationStream: `${prefix.streamPrefix}_REVOCATIONS`, subjectPrefix: prefix.subjectPrefix };
      bus = await openNatsBus({ url: testNatsUrl, ...prefix, onError });
    } else {
      store = await openStore({ dataDir });
      cleanups.push(() => store.close());
      bus = createMemoryBus({ onError });
    }
    cleanups.push(() => bus.close());

    const server = await startCaracalServer({
      config: { listen: { host: "127.0.0.1", port: 0 }, services: SERVICE_NAMES, shutdownGraceMs: 2_000 },
      store,
      bus,
      kek,
      auditKey,
      log: logs.log,
      now: clock.now,
    });
    cleanups.push(() => server.close());
    const baseUrl = `http://127.0.0.1:${server.address.port}`;
    await bootstrap(store, kek, { dataDir, target: baseUrl, now: clock.now, log: logs.log });
    const profilePath = adminProfilePath(dataDir);
    const profile = JSON.parse(await readFile(profilePath, "utf8")) as AdminProfile;

    const audit = new AuditTap(server, bus);
    const subscribeAudit: CaracalHarness["subscribeAudit"] = (handler) =>
      bus.follow("audit", (msg) => handler(fromBinary(AuditEventSchema, msg.data), msg.zone));
    const tapSubscription = await bus.follow("audit", (msg) => audit.receive(msg.zone, msg.data));
    cleanups.push(() => tapSubscription.stop());

    // One HTTP/2 session for every client; aborted at stop so nothing keeps the process alive.
    const sessions = new Http2SessionManager(baseUrl);
    cleanups.push(() => sessions.abort());
    const sensitive = new Set<string>();
    // Innermost, so it sees the authorization header the mandate interceptor sets.
    const transport = (interceptors: Interceptor[] = []) =>
      createGrpcTransport({ baseUrl, sessionManager: sessions, interceptors: [...interceptors, recordSensitive(sensitive)] });
    const sts = createClient(TokenService, transport());
    const mandateSource = (zone: string, clientId: string, credential: ApplicationCredential) =>
      new MandateSource({ sts, zone, clientId, credential, now: clock.now });
    const adminSource = mandateSource(profile.zone, profile.client_id, { clientSecret: profile.client_secret });
    const serviceClient = <T extends DescService>(service: T, source = adminSource) => createClient(service, transport([mandateClientInterceptor(source)]));
    const adminClient = (source: MandateSource) => serviceClient(AdminService, source);
    const admin = adminClient(adminSource);

    const sql = async <R extends Row = Row>(text: string, params?: readonly unknown[]) => (await store.query<R>(text, params)).rows;
    return {
      kind,
      nats: natsStreams,
      clock,
      kek,
      auditKey,
      store,
      bus,
      server,
      baseUrl,
      profile,
      profilePath,
      sts,
      admin,
      bareAdmin: createClient(AdminService, transport()),
      audit,
      logLines: logs.lines,
      mandateSource,
      adminClient,
      serviceClient,
      subscribeAudit,
      sql,
      snapshot: () => snapshotStore(sql),
      textDump: () => dumpStore(sql),
      sensitive,
      jwksUrl: (zone) => new URL(`${baseUrl}/.well-known/jwks.json?zone=${encodeURIComponent(zone)}`),
      stop: runCleanups,
    };
  } catch (error) {
    await runCleanups();
    throw error;
  }
}

// Message fields that hold a token or a secret, in requests or responses.
const SENSITIVE_FIELDS = ["sessionMandate", "mandate", "clientSecret", "subjectToken", "actorToken"] as const;

function recordSensitive(sensitive: Set<string>): Interceptor {
  const remember = (value: unknown) => {
    if (typeof value !== "string" || value.length < 8) return;
    sensitive.add(value);
    const parts = value.split(".");
    if (parts.length === 3 && parts[2]!.length >= 40) sensitive.add(parts[2]!);
  };
  const scan = (message: unknown) => {
    const fields = message as Record<string, unknown>;
    for (const name of SENSITIVE_FIELDS) remember(fields[name]);
    const credential = fields.credential as { case?: string; value?: unknown } | undefined;
    if (credential?.case === "clientSecret" || credential?.case === "clientAssertion") remember(credential.value);
  };
  return (next) => async (req) => {
    remember(/^Bearer (.+)$/.exec(req.header.get("authorization") ?? "")?.[1]);
    if (!req.stream) scan(req.message);
    const res = await next(req);
    if (!res.stream) scan(res.message);
    return res;
  };
}

async function publicTables(sql: CaracalHarness["sql"]): Promise<string[]> {
  const tables = await sql<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables
      WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  return tables.map((row) => row.table_name);
}

function quoted(table: string): string {
  return `"${table.replaceAll('"', '""')}"`;
}

async function dumpStore(sql: CaracalHarness["sql"]): Promise<string> {
  const lines: string[] = [];
  for (const table of await publicTables(sql)) {
    for (const row of await sql<{ line: string }>(`SELECT t::text AS line FROM ${quoted(table)} t`)) lines.push(`${table} ${row.line}`);
  }
  return lines.join("\n");
}

const BACKGROUND_TABLES = new Set(["policy_decisions", "audit_events", "audit_chain_heads"]);

async function snapshotStore(sql: CaracalHarness["sql"]): Promise<StoreSnapshot> {
  const snapshot: Record<string, TableState> = {};
  for (const table of await publicTables(sql)) {
    if (BACKGROUND_TABLES.has(table)) continue;
    const [state] = await sql<{ rows: number; digest: string }>(
      `SELECT count(*)::int AS rows, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS digest FROM ${quoted(table)} t`,
    );
    snapshot[table] = { rows: state!.rows, digest: state!.digest };
  }
  return snapshot;
}
