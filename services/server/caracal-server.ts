import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { edgeServerInterceptor } from "../../interceptors/connect/edge-server-interceptor.js";
import { FeedRevocationView } from "../../interceptors/feed-revocation-view.js";
import { covers } from "../../interceptors/revocation-view.js";
import { VerifiedMandateCache } from "../../interceptors/verified-mandate-cache.js";
import { createAdminService } from "../admin/admin-service.js";
import { PublishingAuditSink } from "../../interceptors/publishing-audit-sink.js";
import { ADMIN_ZONE } from "../bootstrap.js";
import type { Bus, Subscription } from "../bus/bus.js";
import { SERVICE_CATALOG } from "../catalog.js";
import type { Config, ServiceName } from "../config.js";
import { DirectoryCache } from "../directory/directory-cache.js";
import { createHealthService } from "../health/health-service.js";
import { HealthStatus } from "../health/health-status.js";
import type { KeyEncryptionKey } from "../keys/key-encryption-key.js";
import { ZoneKeyRing } from "../keys/zone-key-ring.js";
import type { Store } from "../store/store.js";
import { busRevocationFeed } from "../revocation/bus-revocation-feed.js";
import { OutboxRelay } from "../revocation/outbox-relay.js";
import { createRevocationService } from "../revocation/revocation-service.js";
import { createTokenService } from "../sts/token-service.js";
import { ActivePolicySets } from "../policy/active-policy-sets.js";
import { CedarEngine } from "../policy/cedar-engine.js";
import { DecisionRecorder } from "../policy/decision-recorder.js";
import { createPolicyService } from "../policy/policy-service.js";
import { createAuditService } from "../audit/audit-service.js";
import { ProbeService } from "../../gen/caracal/probe/v1/probe_service_pb.js";
import { createProbeService } from "../probe/probe-service.js";
import { interceptorByService } from "./interceptor-by-service.js";
import { startLedger } from "../audit/ledger-consumer.js";
import type { StsDeps } from "../sts/sts-deps.js";
import { serveHttp } from "./http-routes.js";
import { addBridgedService } from "./grpc-js-bridge.js";
import { serverInterceptors } from "./interceptor-chain.js";
import { listenOnePort } from "./one-port-listener.js";
import { withUnimplemented } from "./unimplemented.js";

/** What the server needs to run. */
export interface CaracalServerOptions {
  readonly config: Pick<Config, "listen" | "services" | "shutdownGraceMs"> & Partial<Pick<Config, "approvalTtlSeconds">>;
  readonly store: Store;
  readonly bus: Bus;
  readonly kek: KeyEncryptionKey;
  readonly log: Logger;
  /** The clock, ms since the epoch; injected by tests. */
  readonly now?: () => number;
  /**
   * The audit key. With it, a server that runs the audit service also runs the
   * ledger (a durable consumer of the audit topic) and answers AuditService;
   * without it, neither.
   */
  readonly auditKey?: Buffer;
}

/** A running Caracal server. */
export interface CaracalServer {
  /** The bound address. */
  readonly address: { readonly host: string; readonly port: number };
  /** Serving status per service, as the health service reports it. */
  readonly health: HealthStatus;
  /** The audit events this server produces, on their way to the bus. */
  readonly audit: PublishingAuditSink;
  /**
   * Drains: reports NOT_SERVING, stops accepting, lets in-flight calls finish
   * within the grace period, ends long-lived streams, waits for queued audit
   * events, then closes. Idempotent. The store and bus stay open.
   */
  close(): Promise<void>;
}

// Tokens are capped at 8 KiB and no request needs more than policy sources;
// a hard cap keeps a hostile body from costing memory.
const READ_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Starts Caracal on one address: gRPC (HTTP/2 cleartext, served by grpc-js),
 * gRPC-Web and Connect (HTTP/1.1, served by connect-node),
 * `grpc.health.v1.Health`, `GET /healthz` and `GET /.well-known/jwks.json?zone=…`.
 *
 * @example
 * const server = await startCaracalServer({ config, store, bus, kek, log });
 * process.once("SIGTERM", () => server.close());
 */
export async function startCaracalServer(options: CaracalServerOptions): Promise<CaracalServer> {
  const { config, store, bus, kek, log } = options;
  const now = options.now ?? Date.now;
  const served = new Set<ServiceName>(config.services);
  const health = new HealthStatus(config.services.map((name) => SERVICE_CATALOG[name].typeName));
  const draining = new AbortController();
  // The STS honours revocations through the same view every external verifier
  // uses, fed from the bus, and fails closed while it is stale. Freshness is real elapsed time since the view last heard from the stream,
  // so the view keeps the wall clock even where requests use an injected one.
  const revocations = await FeedRevocationView.start(busRevocationFeed(bus), {
    onError: (error) => log.warn({ err: error }, "revocation feed error"),
  });
  // Serve nothing until the view holds every revocation already made.
  await revocations.ready();
  // Policy switches reach this replica by bus notice, with a 1 s poll behind it.
  const engine = new CedarEngine();
  const policies = new ActivePolicySets(store, engine);
  let policyNotices: Subscription;
  try {
    policyNotices = await policies.follow(bus, (error) => log.warn({ err: error }, "undecodable policy notice"));
  } catch (error) {
    await revocations.stop();
    throw error;
  }
  const decisions = new DecisionRecorder(store, { onError: (error) => log.warn({ err: error }, "policy decisions not recorded") });
  const verifiedSessions = new VerifiedMandateCache();
  revocations.onRevocation((entry) => verifiedSessions.deleteWhere((claims) => covers(entry, claims)));
  const deps: StsDeps = {
    store,
    kek,
    now,
    directory: new DirectoryCache(store, { now }),
    keys: new ZoneKeyRing(store, kek, { now }),
    audit: new PublishingAuditSink((zone, event, id) => bus.publish("audit", zone, event, id), {
      now,
      onError: (error, pending) => log.warn({ err: error, pending }, "audit publish failed; retrying"),
    }),
    verifiedSessions,
    revocations,
    policies,
    decisions,
    approvalTtlMs: (config.approvalTtlSeconds ?? 1_800) * 1000,
  };

  // The relay runs wherever the revocation service does; several replicas may run it at once.
  const relay = new OutboxRelay(store, bus, { onError: (error) => log.warn({ err: error }, "revocation relay round failed; retrying") });
  if (served.has("revocation")) relay.start();
  const { auditKey } = options;
  let ledger: Subscription | undefined;
  try {
    // Every replica serving audit runs the ledger; they share one durable consumer.
    if (served.has("audit") && auditKey) ledger = await startLedger(bus, store, auditKey, log);
  } catch (error) {
    await relay.stop();
    await revocations.stop();
    await policyNotices.stop();
    throw error;
  }
  const impls = {
    sts: createTokenService(deps, draining.signal),
    admin: createAdminService(deps),
    revocation: createRevocationService({ store, relay, audit: deps.audit, now, bus, draining: draining.signal }),
    policy: createPolicyService({ store, engine, policies, bus, audit: deps.audit, now }),
    probe: createProbeService(),
    audit: auditKey ? createAuditService({ store, auditKey, draining: draining.signal }) : {},
  };
  const services: [DescService, ServiceImpl<DescService>][] = [
    [Health, createHealthService(health, draining.signal) as unknown as ServiceImpl<DescService>],
    ...[...served].map((name): [DescService, ServiceImpl<DescService>] => [
      SERVICE_CATALOG[name],
      withUnimplemented(SERVICE_CATALOG[name], impls[name] as Partial<ServiceImpl<DescService>>),
    ]),
  ];
  const interceptors = [
    ...serverInterceptors(log),
    interceptorByService(
      {
        // The probe checks mandates of any zone at its edge, as a user's service
        // would, failing closed on a stale revocation view.
        [ProbeService.typeName]: edgeServerInterceptor({
          keys: deps.keys.resolve,
          audit: deps.audit,
          // Freshness is real elapsed time, whatever clock requests are judged by.
          revocations: { assertFresh: () => revocations.assertFresh(Date.now()), isRevoked: (claims) => revocations.isRevoked(claims), onRevocation: (l) => revocations.onRevocation(l) },
          now,
        }),
      },
      // Caracal's own admin plane is protected like any service: requirements
      // come from the proto options; health checks are public.
      edgeServerInterceptor({
        keys: deps.keys.resolve,
        allowedZones: [ADMIN_ZONE],
        requirements: { [Health.typeName]: { public: true } },
        audit: deps.audit,
        // Operators must be able to revoke during a NATS outage, so the admin
        // plane checks admin mandates against the last view it has rather than
        // refusing while the view is stale; every other verifier fails closed.
        revocations: { assertFresh: () => {}, isRevoked: (claims) => revocations.isRevoked(claims), onRevocation: (l) => revocations.onRevocation(l) },
        now,
      }),
    ),
  ];

  // gRPC over HTTP/2 is served by grpc-js, everything over HTTP/1.1 by
  // connect-node; both run the same implementations and interceptors.
  const grpcServer = new grpc.Server({ "grpc.max_receive_message_length": READ_MAX_BYTES });
  for (const [service, impl] of services) addBridgedService(grpcServer, service, impl, interceptors);
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => {
      for (const [service, impl] of services) router.service(service, impl);
    },
    interceptors,
    readMaxBytes: READ_MAX_BYTES,
    // Mandates are signatures over random ids: they do not compress, and
    // gzip on every response cost more CPU than the signing itself.
    acceptCompression: [],
    fallback: (req, res) => void serveHttp(req, res, { health, sts: served.has("sts") ? deps : undefined, log }),
  });
  let listener: Awaited<ReturnType<typeof listenOnePort>>;
  try {
    listener = await listenOnePort(handler, config.listen.host, config.listen.port, log, {
      accept: (socket) => injector.injectConnection(socket),
      drain: (graceMs) => injector.drain(graceMs),
    });
  } catch (error) {
    // A start that fails (the port is taken, say) leaves nothing running.
    await relay.stop();
    await revocations.stop();
    await policyNotices.stop();
    await ledger?.stop();
    grpcServer.forceShutdown();
    throw error;
  }

  let closing: Promise<void> | undefined;
  return {
    address: listener.address,
    health,
    audit: deps.audit,
    close() {
      closing ??= (async () => {
        health.stopServing();
        // Long-lived streams (Watch, Tail) never end by themselves; tell them to.
        draining.abort();
        await listener.close(config.shutdownGraceMs);
        await relay.stop();
        await revocations.stop();
        await policyNotices.stop();
        await decisions.flush();
        injector.destroy();
        grpcServer.forceShutdown();
        await Promise.race([deps.audit.flushed(), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
        if (deps.audit.pending > 0) log.error({ pending: deps.audit.pending }, "audit events not published before shutdown");
        // Last, so what this server published while draining is still stored; anything left waits in the stream.
        await ledger?.stop();
      })();
      return closing;
    },
  };
}
