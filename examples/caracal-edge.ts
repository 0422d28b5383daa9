/**
 * What both example servers need from Caracal to verify at their own edge:
 * zone keys from its JWKS endpoint and, when NATS is given, the revocation
 * view and the audit sink on Caracal's JetStream streams. Copy this file.
 */
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { EdgeVerifierOptions } from "../interceptors/edge-verifier.js";
import { FeedRevocationView } from "../interceptors/feed-revocation-view.js";
import { jetStreamRevocationFeed } from "../interceptors/jetstream-revocation-feed.js";
import { httpJwksSource, JwksCache } from "../interceptors/jwks-cache.js";
import { jetStreamAuditPublish, PublishingAuditSink } from "../interceptors/publishing-audit-sink.js";

/** Where Caracal's NATS streams are; the defaults are Caracal's own names. */
export interface CaracalNats {
  readonly url: string;
  readonly revocationStream?: string;
  readonly subjectPrefix?: string;
}

/** The verifier options, and how to let go of what they hold. */
export interface CaracalEdge {
  readonly verifier: EdgeVerifierOptions;
  close(): Promise<void>;
}

/**
 * @example
 * const caracal = await caracalEdge("http://127.0.0.1:7070", { url: "nats://127.0.0.1:4222" });
 * const interceptor = edgeServerInterceptor(caracal.verifier);
 */
export async function caracalEdge(caracalUrl: string, nats?: CaracalNats): Promise<CaracalEdge> {
  const jwks = new JwksCache({ source: httpJwksSource(caracalUrl) });
  if (!nats) return { verifier: { keys: jwks.resolve }, close: async () => jwks.close() };
  // Reconnect forever: the revocation view recovers by itself when NATS returns.
  const nc: NatsConnection = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const feed = jetStreamRevocationFeed(nc, { streamName: nats.revocationStream, subjectPrefix: nats.subjectPrefix });
  const revocations = await FeedRevocationView.start(feed);
  await revocations.ready();
  const audit = new PublishingAuditSink(jetStreamAuditPublish(jetstream(nc), nats.subjectPrefix));
  return {
    verifier: { keys: jwks.resolve, revocations, audit },
    async close() {
      jwks.close();
      await revocations.stop();
      await audit.flushed();
      await nc.close();
    },
  };
}
