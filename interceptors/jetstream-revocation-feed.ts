import { randomUUID } from "node:crypto";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  ReplayPolicy,
  type ConsumerMessages,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { nanos, type NatsConnection, type Status } from "@nats-io/transport-node";
import { positive, type RevocationFeed, type RevocationFeedSubscription } from "./feed-revocation-view.js";
import { ZONE_PATTERN } from "./mandate-claims.js";

/** Options of {@link jetStreamRevocationFeed}. */
export interface JetStreamRevocationFeedOptions {
  /** The revocation stream (default `CARACAL_REVOCATIONS`). */
  readonly streamName?: string;
  /** Subjects are `<subjectPrefix>.revocations.<zone>` (default `caracal`). */
  readonly subjectPrefix?: string;
  /** Only this zone's revocations; every zone's when unset. */
  readonly zone?: string;
  /** Bounds each JetStream request: a freshness check, creating the consumer (default 2,000 ms). */
  readonly timeoutMs?: number;
  /** Told when delivery broke and is being re-established. Defaults to `console.error`. */
  readonly onError?: (error: unknown) => void;
}

/**
 * Pull options. The client notices a consumer the server lost (a restart
 * drops it: it lives in server memory) at the reconnect, or else after two
 * missed idle heartbeats, half of `expires` each: 4 s here, inside the
 * default staleness bound, rather than 30 s with the library's default.
 * `abort_on_missing_resource` ends the iterator then, so the loop below can
 * start a new consumer where the last one left off.
 */
const pullOptions = { max_messages: 256, expires: 4_000, abort_on_missing_resource: true } as const;
/** A consumer its verifier stopped pulling from (a crash) is removed by the server after this long. */
const consumerInactiveMs = 30_000;
/** Longest pause between attempts to open a consumer again: recovery after an outage waits at most this long. */
const maxReopenDelayMs = 2_000;

/**
 * The {@link RevocationFeed} on Caracal's JetStream revocation stream: an
 * ephemeral, in-memory pull consumer without acknowledgements that starts at
 * the stream's first message (filtered to `<subjectPrefix>.revocations.<zone>`
 * when `zone` is set) and is replaced, after the last message handed over, at
 * every reconnect and whenever it is lost or skips a message.
 *
 * Create `nc` with `maxReconnectAttempts: -1` (and the default `reconnect:
 * true`): the feed rides the connection's reconnects, and a connection that
 * gives up leaves the view stale, refusing every call, until the process
 * restarts.
 *
 * Why not the client library's ordered consumer (what `follow` on the bus
 * uses): in @nats-io/jetstream 3.3.1 it recreates itself after a server
 * restart with stale pull accounting, asks for one message, and then stalls
 * until two idle heartbeats are missed (several seconds, during which every
 * verifier refuses). This loop does the same job, ordered and gap-free,
 * with a fresh consumer each time.
 *
 * How `lastSequence` works on NATS server 2.9 and later, and why:
 * - With a zone, the consumer only ever sees that zone's sequences, so the
 *   stream's `last_seq` (often another zone's message) could never be reached.
 *   It asks instead for the last message on the zone's literal subject
 *   (`STREAM.MSG.GET` with `last_by_subj`) and takes its sequence, 0 when the
 *   zone has none (never revoked, or all expired). Exactly the newest message
 *   the consumer will deliver, whatever expired or was deleted before it.
 * - Without a zone, every message in the stream is delivered, and stream info
 *   gives the answer: `last_seq`, or 0 when the stream holds no message (after
 *   max-age expiry or a purge `last_seq` stays where it was although nothing is
 *   left to deliver). A wildcard `last_by_subj` is not used: 2.9.10 answers
 *   "no message" for it once the newest message was deleted, which would make
 *   an unapplied log look caught up. The one gap left: an operator deleting the
 *   newest message by hand leaves `last_seq` pointing at it, and the view stays
 *   stale (fail closed) until the next revocation arrives.
 * Consumer info is not used: 2.9.10 reports a filtered consumer's delivered
 * stream sequence past messages it skipped, which says nothing about what the
 * client has handed over.
 *
 * @throws TypeError on malformed options.
 * @example
 * const nc = await connect({ servers: process.env.CARACAL_NATS_URL, maxReconnectAttempts: -1 });
 * const view = await FeedRevocationView.start(jetStreamRevocationFeed(nc, { zone: "acme" }));
 */
export function jetStreamRevocationFeed(nc: NatsConnection, options: JetStreamRevocationFeedOptions = {}): RevocationFeed {
  const stream = options.streamName ?? "CARACAL_REVOCATIONS";
  if (!/^[A-Za-z0-9_-]{1,255}$/.test(stream)) throw new TypeError(`streamName must match ^[A-Za-z0-9_-]{1,255}$, got ${JSON.stringify(stream)}`);
  const subjectPrefix = options.subjectPrefix ?? "caracal";
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subjectPrefix)) {
    throw new TypeError(`subjectPrefix must be dot-separated plain tokens, got ${JSON.stringify(subjectPrefix)}`);
  }
  const zone = options.zone;
  // The zone becomes a subject token: anything looser could address other zones.
  if (zone !== undefined && !ZONE_PATTERN.test(zone)) throw new TypeError(`zone must match ${ZONE_PATTERN.source}, got ${JSON.stringify(zone)}`);
  const timeoutMs = positive("timeoutMs", options.timeoutMs, 2_000);
  const report = options.onError ?? ((error: unknown) => console.error("caracal revocation feed (nats):", error));
  const zoneSubject = zone === undefined ? undefined : `${subjectPrefix}.revocations.${zone}`;
  let manager: Promise<JetStreamManager> | undefined;
  const jsm = () => {
    // checkAPI off: the account-info round trip would fail during an outage for no gain.
    manager ??= jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false }).catch((error: unknown) => {
      manager = undefined;
      throw error;
    });
    return manager;
  };

  return {
    async lastSequence(): Promise<number> {
      const streams = (await jsm()).streams;
      if (zoneSubject !== undefined) return (await streams.getMessage(stream, { last_by_subj: zoneSubject }))?.seq ?? 0;
      const { state } = await streams.info(stream);
      return state.messages === 0 ? 0 : state.last_seq;
    },

    async follow(handler) {
      const manager = await jsm();
      const js = jetstream(nc, { timeout: timeoutMs });
      const namePrefix = `caracal_rv_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
      let serial = 0;
      const open = async (afterSeq: number): Promise<OpenConsumer> => {
        const name = `${namePrefix}_${++serial}`;
        const info = await manager.consumers.add(stream, {
          name,
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: afterSeq + 1,
          ack_policy: AckPolicy.None,
          replay_policy: ReplayPolicy.Instant,
          // A single filter_subject, which 2.9 understands (not filter_subjects).
          ...(zoneSubject === undefined ? {} : { filter_subject: zoneSubject }),
          mem_storage: true,
          num_replicas: 1,
          inactive_threshold: nanos(consumerInactiveMs),
        });
        try {
          return { name, messages: await js.consumers.getConsumerFromInfo(info).consume(pullOptions) };
        } catch (error) {
          discard(name);
          throw error;
        }
      };
      // Best effort: the inactivity threshold removes what this misses.
      const discard = (name: string) => void manager.consumers.delete(stream, name).catch(() => {});
      return new FollowLoop(nc, await open(0), open, discard, handler, report);
    },
  };
}

interface OpenConsumer {
  readonly name: string;
  readonly messages: ConsumerMessages;
}

/**
 * Hands over a consumer's messages in order until stopped, and starts a new
 * consumer after the last sequence handed over whenever the current one may
 * have lost something: at every reconnect (what the server sent while the
 * connection was down is gone, and with no acknowledgements it is never sent
 * again), when it skips a delivery, when it is lost (server restart,
 * deleted). The first attempt is immediate, later ones wait longer and longer.
 */
class FollowLoop implements RevocationFeedSubscription {
  #current: OpenConsumer | undefined;
  #lastSeq = 0;
  /** Counts reconnects: a consumer opened or drained across one is replaced. */
  #reconnects = 0;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  readonly #statuses: AsyncIterable<Status> & { stop?: () => void };
  readonly #done: Promise<void>;

  constructor(
    private readonly nc: NatsConnection,
    first: OpenConsumer,
    private readonly open: (afterSeq: number) => Promise<OpenConsumer>,
    private readonly discard: (name: string) => void,
    private readonly deliver: (seq: number, data: Uint8Array) => void,
    private readonly report: (error: unknown) => void,
  ) {
    this.#current = first;
    this.#statuses = nc.status();
    void this.#watch();
    this.#done = this.#loop();
  }

  async #watch(): Promise<void> {
    for await (const status of this.#statuses) {
      if (this.#stopped) break;
      if (status.type !== "reconnect") continue;
      this.#reconnects++;
      void this.#current?.messages.close().catch(() => {});
    }
  }

  async #loop(): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      const generation = this.#reconnects;
      try {
        this.#current ??= await this.open(this.#lastSeq);
        failures = 0;
        if (generation === this.#reconnects) await this.#drain(this.#current, generation);
      } catch (error) {
        if (!this.#stopped && failures++ === 0) this.report(error);
      }
      if (this.#current !== undefined) {
        await this.#current.messages.close().catch(() => {});
        this.discard(this.#current.name);
        this.#current = undefined;
      }
      // A closed connection never comes back: the view stays stale and says so.
      if (this.#stopped || this.nc.isClosed()) break;
      // The first attempt after a loss is immediate: the server is usually back already.
      if (failures > 1) await this.#pause(Math.min(125 * 2 ** failures, maxReopenDelayMs));
    }
  }

  /** Returns when the consumer is to be replaced; throws when the library gave up on it. */
  async #drain({ messages }: OpenConsumer, generation: number): Promise<void> {
    let expected = 1;
    for await (const m of messages) {
      if (this.#stopped) return;
      if (m.info.deliverySequence !== expected) {
        this.report(new Error(`revocation consumer skipped from delivery ${expected} to ${m.info.deliverySequence}; starting over after sequence ${this.#lastSeq}`));
        return;
      }
      expected++;
      if (m.seq <= this.#lastSeq) continue;
      this.#lastSeq = m.seq;
      try {
        this.deliver(m.seq, m.data);
      } catch (error) {
        this.report(error);
      }
    }
    if (!this.#stopped && generation === this.#reconnects) throw new Error("revocation consumer ended; starting a new one");
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      this.#wake?.();
      this.#statuses.stop?.();
      await this.#current?.messages.close().catch(() => {});
      await this.#done;
    })();
    return this.#stopping;
  }
}
