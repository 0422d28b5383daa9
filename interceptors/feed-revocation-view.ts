import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
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
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationEventSchema } from "../gen/caracal/revocation/v1/revocation_pb.js";
import { ZONE_PATTERN, type MandateClaims } from "./mandate-claims.js";
import { MandateError } from "./mandate-error.js";
import { entryFromEvent } from "./revocation-entry.js";
import { InMemoryRevocationView, staleRevocationView, type RevocationEntry, type RevocationView } from "./revocation-view.js";

/** A running {@link RevocationFeed.follow}. */
export interface RevocationFeedSubscription {
  /** Stops delivery; resolves once the handler will not be called again. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Where a {@link FeedRevocationView} gets revocations from: an ordered log of
 * encoded `RevocationEvent`s, numbered by increasing sequence (gaps allowed).
 * {@link jetStreamRevocationFeed} is the NATS one; a test may pass a plain object.
 */
export interface RevocationFeed {
  /**
   * Hands over every message the log still holds, in sequence order, then
   * live ones, until stopped; keeps going by itself across outages. May hand
   * over a sequence again after a reconnect (the view ignores repeats), never
   * skips one. Rejects when following cannot start at all (no such stream).
   */
  follow(handler: (seq: number, data: Uint8Array) => void): Promise<RevocationFeedSubscription>;
  /**
   * The sequence of the newest message `follow` would hand over, asked of the
   * server now; 0 when there is none. It must be a message the feed will
   * deliver: a sequence the follower can never reach (another zone's, or one
   * already expired) would keep the view stale forever. Rejects when the log
   * cannot be reached.
   */
  lastSequence(): Promise<number>;
}

/** Options of {@link FeedRevocationView.start}. */
export interface FeedRevocationViewOptions {
  /** How old the last proof of freshness may be before calls are refused (default 5,000 ms). */
  readonly maxStalenessMs?: number;
  /** How often the view asks the feed for its last sequence to prove it is fresh (default 1,000 ms). */
  readonly pollIntervalMs?: number;
  /** How often entries whose mandates have all expired are dropped (default 60,000 ms). */
  readonly pruneIntervalMs?: number;
  /**
   * Development only: a stale view admits calls instead of refusing them and
   * reports through `onStale`. Default false (fail closed).
   */
  readonly failOpen?: boolean;
  /**
   * Told when a fail-open view admits a call it would have refused: once when
   * the view turns stale, then at most every 10 s while it stays so. Defaults
   * to `console.error`.
   */
  readonly onStale?: (refusal: MandateError) => void;
  /** Told about undecodable events and failed freshness checks. Defaults to `console.error`. */
  readonly onError?: (error: unknown) => void;
  /** The clock, ms since the epoch; used for freshness proofs and entry expiry. */
  readonly now?: () => number;
}

/** A freshness check whose answer the view had not yet applied when it came. */
interface Target {
  /** The feed's last sequence at that time. */
  readonly seq: number;
  /** When the check was sent: once `seq` is applied, the view was current as of then. */
  readonly at: number;
}

/**
 * Pending checks kept while delivery lags behind. When delivery stops
 * altogether the oldest go first: the newest proves the most once delivery resumes.
 */
const maxTargets = 64;
/** How often a fail-open view repeats its complaint while it stays stale. */
const staleReportEveryMs = 10_000;

const reportToConsole = (error: unknown) => console.error("caracal revocation view:", error);
const staleToConsole = (refusal: MandateError) =>
  console.error(`caracal revocation view: FAIL-OPEN, admitting calls although ${refusal.message}; never run this way in production`);

/**
 * A revocation view fed by a {@link RevocationFeed} (in production a JetStream
 * ordered consumer that replays the revocation stream from its start, then
 * follows it) that knows how current it is.
 *
 * The view is fresh as of time T once it has applied every message up to the
 * feed's last sequence as observed at T. Every `pollIntervalMs` it asks the
 * feed for that sequence; when the answer is already applied it is fresh as
 * of the moment it asked, otherwise as soon as delivery reaches the answer.
 * `assertFresh` refuses (UNAVAILABLE, `REASON_REVOCATION_STALE`) when the last
 * proof is older than `maxStalenessMs`, and also until the first replay has
 * caught up: a new verifier knows nothing revoked so far. When the feed comes
 * back after an outage, delivery and checks resume and the view is fresh again
 * by itself.
 *
 * @example
 * const nc = await connect({ servers: url, maxReconnectAttempts: -1 });
 * const revocations = await FeedRevocationView.start(jetStreamRevocationFeed(nc, { zone: "acme" }));
 * await revocations.ready();
 * const verifier = new EdgeVerifier({ keys: jwks.resolve, revocations });
 */
export class FeedRevocationView implements RevocationView {
  readonly #feed: RevocationFeed;
  readonly #entries: InMemoryRevocationView;
  readonly #maxStalenessMs: number;
  readonly #failOpen: boolean;
  readonly #onStale: (refusal: MandateError) => void;
  readonly #onError: (error: unknown) => void;
  readonly #now: () => number;
  #appliedSeq = 0;
  /** When the view was last proven current; undefined until the first replay caught up. */
  #freshAt: number | undefined;
  #targets: Target[] = [];
  #checking: Promise<boolean> | undefined;
  #checkFailing = false;
  #staleReportedAt: number | undefined;
  #readyWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #subscription: RevocationFeedSubscription | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;
  #stopping: Promise<void> | undefined;

  private constructor(feed: RevocationFeed, options: FeedRevocationViewOptions) {
    this.#feed = feed;
    this.#now = options.now ?? Date.now;
    this.#entries = new InMemoryRevocationView({ now: this.#now });
    this.#maxStalenessMs = positive("maxStalenessMs", options.maxStalenessMs, 5_000);
    this.#failOpen = options.failOpen === true;
    this.#onStale = options.onStale ?? staleToConsole;
    this.#onError = options.onError ?? reportToConsole;
  }

  /**
   * Starts following the feed and proving freshness. Resolves once following
   * has begun, usually before the replay has caught up: until then
   * `assertFresh` refuses; await {@link ready} to wait for it.
   *
   * @throws TypeError on malformed options.
   * @throws whatever `feed.follow` rejects with when following cannot start.
   */
  static async start(feed: RevocationFeed, options: FeedRevocationViewOptions = {}): Promise<FeedRevocationView> {
    const view = new FeedRevocationView(feed, options);
    const pollIntervalMs = positive("pollIntervalMs", options.pollIntervalMs, 1_000);
    const pruneIntervalMs = positive("pruneIntervalMs", options.pruneIntervalMs, 60_000);
    view.#subscription = await feed.follow((seq, data) => view.#apply(seq, data));
    // A verifier is not kept running for the view's sake alone: unref.
    view.#timers.push(setInterval(() => void view.checkFreshness(), pollIntervalMs).unref());
    view.#timers.push(setInterval(() => view.prune(), pruneIntervalMs).unref());
    void view.checkFreshness();
    return view;
  }

  /** Throws a {@link MandateError} with REASON_REVOCATION_STALE (UNAVAILABLE) unless the view was proven current within `maxStalenessMs`. */
  assertFresh(nowMs: number): void {
    const freshAt = this.#freshAt;
    if (freshAt !== undefined && nowMs - freshAt <= this.#maxStalenessMs && !this.#stopped) return;
    const refusal = this.#stopped
      ? new MandateError(Reason.REVOCATION_STALE, "revocation view is stopped")
      : freshAt === undefined
        ? new MandateError(Reason.REVOCATION_STALE, "revocation view has not caught up with the revocation stream yet")
        : staleRevocationView(nowMs - freshAt, this.#maxStalenessMs);
    if (!this.#failOpen) throw refusal;
    if (this.#staleReportedAt === undefined || nowMs - this.#staleReportedAt >= staleReportEveryMs) {
      this.#staleReportedAt = nowMs;
      try {
        this.#onStale(refusal);
      } catch {
        // A broken logger must not turn an admission into a crash.
      }
    }
  }

  isRevoked(claims: MandateClaims): boolean {
    return this.#entries.isRevoked(claims);
  }

  onRevocation(listener: (entry: RevocationEntry) => void): () => void {
    return this.#entries.onRevocation(listener);
  }

  /**
   * Asks the feed for its last sequence now (the timer does this every
   * `pollIntervalMs`). Resolves true when that proved the view current, false
   * when delivery has yet to reach the answer or the feed could not answer
   * (reported through `onError`). Never rejects; concurrent calls share one question.
   */
  checkFreshness(): Promise<boolean> {
    if (this.#stopped) return Promise.resolve(false);
    this.#checking ??= this.#check().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  /** Resolves once the first replay has caught up; rejects if the view is stopped before. */
  ready(): Promise<void> {
    if (this.#freshAt !== undefined) return Promise.resolve();
    if (this.#stopped) return Promise.reject(new Error("revocation view stopped before it caught up"));
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  /** Drops entries whose mandates have all expired (the timer does this every `pruneIntervalMs`); returns how many went. */
  prune(): number {
    return this.#entries.prune();
  }

  /** Revocations held. */
  get size(): number {
    return this.#entries.size;
  }

  /** The highest feed sequence applied so far. */
  get appliedSequence(): number {
    return this.#appliedSeq;
  }

  /** When the view was last proven current (ms since the epoch), or undefined before the first replay caught up. */
  get freshAt(): number | undefined {
    return this.#freshAt;
  }

  /** Stops the timers and the feed; from then on `assertFresh` refuses. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      for (const timer of this.#timers) clearInterval(timer);
      for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(new Error("revocation view stopped before it caught up"));
      await this.#subscription?.stop();
    })();
    return this.#stopping;
  }

  async #check(): Promise<boolean> {
    // The time the question leaves: the answer describes the log at some
    // later instant, so dating the proof here never overstates freshness.
    const at = this.#now();
    let last: number;
    try {
      last = await this.#feed.lastSequence();
      if (!Number.isSafeInteger(last) || last < 0) throw new TypeError(`revocation feed reported last sequence ${last}`);
    } catch (error) {
      // An outage fails every check; one report per outage is enough, the refusals say the rest.
      if (!this.#checkFailing) this.#report(error);
      this.#checkFailing = true;
      return false;
    }
    this.#checkFailing = false;
    if (this.#stopped) return false;
    if (this.#appliedSeq >= last) {
      // Everything older than this proof is superseded by it.
      this.#targets = this.#targets.filter((target) => target.at > at);
      this.#markFresh(at);
      return true;
    }
    this.#targets.push({ seq: last, at });
    if (this.#targets.length > maxTargets) this.#targets.shift();
    return false;
  }

  #apply(seq: number, data: Uint8Array): void {
    // A feed may hand a message over again after it reconnected.
    if (this.#stopped || seq <= this.#appliedSeq) return;
    // Whatever happens below, the sequence counts as handled: one bad message
    // must not keep every verifier stale for good.
    let entry: RevocationEntry | undefined;
    try {
      entry = entryFromEvent(fromBinary(RevocationEventSchema, data));
      if (entry === undefined) this.#report(new Error(`revocation event at sequence ${seq} is malformed; skipped`));
    } catch (cause) {
      this.#report(new Error(`revocation event at sequence ${seq} cannot be decoded; skipped`, { cause }));
    }
    if (entry !== undefined && entry.expiresAtMs > this.#now()) {
      // Only live ones: an entry whose mandates have all expired changes no answer, and replays are full of them.
      try {
        this.#entries.add(entry);
      } catch (cause) {
        // The entry is in; a revocation listener threw.
        this.#report(new Error(`a revocation listener failed on ${entry.id}`, { cause }));
      }
    }
    this.#appliedSeq = seq;
    if (this.#targets.length === 0) return;
    let provenAt: number | undefined;
    this.#targets = this.#targets.filter((target) => {
      if (target.seq > seq) return true;
      provenAt = Math.max(provenAt ?? target.at, target.at);
      return false;
    });
    if (provenAt !== undefined) this.#markFresh(provenAt);
  }

  #markFresh(at: number): void {
    if (this.#freshAt !== undefined && this.#freshAt >= at) return;
    this.#freshAt = at;
    this.#staleReportedAt = undefined;
    for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve();
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch {
      // A broken reporter must not break delivery.
    }
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`${name} must be a positive integer (ms), got ${value}`);
  return v;
}

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
