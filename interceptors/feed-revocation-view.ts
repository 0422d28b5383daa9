import { fromBinary } from "@bufbuild/protobuf";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { RevocationEventSchema } from "../gen/caracal/revocation/v1/revocation_pb.js";
import type { MandateClaims } from "./mandate-claims.js";
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

/** A positive whole number of milliseconds, or a TypeError naming the option. */
export function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`${name} must be a positive integer (ms), got ${value}`);
  return v;
}
