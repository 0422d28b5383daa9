/**
 * The bus: how revocations and audit events travel. Two implementations share
 * this interface: NATS JetStream (production) and in-process (the embedded default).
 * Both pass the one suite in `bus.contract.ts`.
 */

/**
 * The streams Caracal uses; see ARCHITECTURE.md "NATS". `policy` carries
 * policy-set activations, so every STS replica switches at once.
 */
export type Topic = "revocations" | "audit" | "policy";

/** One message as a consumer sees it. */
export interface BusMessage {
  /** Which topic it was published on. */
  readonly topic: Topic;
  /** The zone slug taken from the subject (`caracal.<topic>.<zone>`). */
  readonly zone: string;
  /** The protobuf payload, opaque to the bus. The handler owns this copy. */
  readonly data: Uint8Array;
  /** The publisher's de-duplication id. */
  readonly msgId: string;
  /** Position in the stream, increasing by publish order; shared by all zones of a topic. */
  readonly seq: number;
  /** When the stream stored it. */
  readonly time: Date;
}

/** The stream's answer to a publish. */
export interface PublishAck {
  /** Position the message holds in its stream; for a duplicate, the original's position. */
  readonly seq: number;
  /** True when a message with the same id was already stored, and this one was dropped. */
  readonly duplicate: boolean;
}

/** A running subscription. */
export interface Subscription {
  /**
   * Stops delivery; resolves once the handler will not be called again. A
   * handler already running is awaited (and, for `consume`, acknowledged or
   * not as usual). Idempotent.
   */
  stop(): Promise<void>;
}

/**
 * Handles one message. Calls are sequential per subscription: the next message
 * is handed over only after this one's promise settles.
 */
export type BusHandler = (msg: BusMessage) => void | Promise<void>;

/** Options shared by both subscription kinds. */
export interface SubscribeOptions {
  /** Only this zone's messages; all zones when unset. */
  readonly zone?: string;
}

/** Handles a batch of messages from a durable consumer (see `Bus.consumeBatch`). */
export type BusBatchHandler = (messages: readonly BusMessage[]) => Promise<void>;

/** Options of `Bus.consumeBatch`. */
export interface BatchOptions extends SubscribeOptions {
  /** The most messages handed over at once; default 500, at most 10,000. */
  readonly maxMessages?: number;
  /** Once a message is waiting, how long to wait for more before handing over a smaller batch; default 20 ms, at most 10 s. */
  readonly maxWaitMs?: number;
  /**
   * Start from the oldest message the durable has not acknowledged: whatever
   * an earlier subscription left unacknowledged (a batch it failed, or a
   * crashed process's last batch) comes again at once, before anything later,
   * instead of after its redelivery delay or the server's ack wait. With one
   * subscription per durable whose handler, once a batch failed, fails every
   * later batch and ends the subscription, messages are then handled in stream
   * order across restarts, so a consumer that records the last sequence it
   * handled can skip redeliveries without ever skipping a message it has not
   * seen. What the SIEM export uses.
   */
  readonly resumeInOrder?: boolean;
}

/** What went wrong where nobody awaits a promise: inside a subscription. */
export interface BusFailure {
  /** `handler`: the handler threw; `subscription`: delivery broke and is being re-established. */
  readonly kind: "handler" | "subscription";
  /** The subscription's topic. */
  readonly topic: Topic;
  /** The durable name for `consume` and `consumeBatch`; unset for `follow`. */
  readonly durable?: string;
  /** The message the handler failed on, for `handler` failures; for `consumeBatch`, the batch's first. */
  readonly seq?: number;
}

/**
 * Receives failures that happen inside subscriptions, where throwing would
 * only become an unhandled rejection. Both implementations default to
 * `console.error`; the server passes its logger.
 */
export type BusErrorReporter = (error: unknown, failure: BusFailure) => void;

/** The bus interface. */
export interface Bus {
  /** Which implementation is behind the interface. */
  readonly kind: "nats" | "memory";
  /**
   * Publishes and waits for the stream's acknowledgement. A second publish with
   * the same `msgId` within the de-duplication window is dropped (`duplicate: true`).
   * Never runs a handler synchronously inside the call, though a subscriber may
   * see the message before the acknowledgement resolves.
   *
   * Rejects with a `TypeError` when `topic`, `zone` (`^[a-z0-9-]{1,63}$`), `data`
   * or `msgId` is malformed, and with an `Error` once the bus is closed.
   * @example
   * const ack = await bus.publish("revocations", "default", toBinary(RevocationEventSchema, ev), ev.id);
   */
  publish(topic: Topic, zone: string, data: Uint8Array, msgId: string): Promise<PublishAck>;
  /**
   * Replays every message the stream still holds, in order, then follows live
   * ones. Not durable: a new call starts from the beginning again. What
   * verifiers use to build their revocation view. A handler that throws is
   * reported and the message is not redelivered: the view must decide itself
   * what an undecodable event means.
   *
   * @example
   * const sub = await bus.follow("revocations", (m) => view.apply(m), { zone: "default" });
   */
  follow(topic: Topic, handler: BusHandler, options?: SubscribeOptions): Promise<Subscription>;
  /**
   * A named durable consumer: resumes after the last acknowledged message, acknowledges
   * each message only after `handler` resolves, and redelivers when it throws
   * (after a short, growing delay). Delivery is at least once: a crash between
   * the handler and the acknowledgement delivers that message again, so handlers
   * must be idempotent (e.g. keyed on the event id). A redelivered message may
   * arrive after messages published later. What the audit ledger and the SIEM
   * export use. Durable names match `^[A-Za-z0-9_-]{1,64}$`; several subscriptions
   * on one name share its messages, and the latest call's `zone` becomes its filter.
   *
   * @example
   * const sub = await bus.consume("audit", "ledger", (m) => ledger.append(m));
   */
  consume(topic: Topic, durable: string, handler: BusHandler, options?: SubscribeOptions): Promise<Subscription>;
  /**
   * Like `consume`, but hands over batches: every message of a batch is
   * acknowledged only after `handler` resolves; when it throws, every message of
   * the batch is redelivered (after the usual growing delay). Batches of one
   * subscription are handed over one at a time. At least once, like `consume`:
   * handlers must be idempotent. Durable names are shared with `consume`
   * (same names, same stream position); a message is in at most one batch at a time.
   *
   * Rejects with a `TypeError` when `maxMessages` or `maxWaitMs` is not a
   * positive integer or above its limit, and like `consume` otherwise.
   * @example
   * const sub = await bus.consumeBatch("audit", "ledger", (ms) => ledger.appendAll(ms), { maxMessages: 500 });
   */
  consumeBatch(topic: Topic, durable: string, handler: BusBatchHandler, options?: BatchOptions): Promise<Subscription>;
  /**
   * The sequence of the last message the topic's stream still holds (0 when it
   * holds none, even after messages expired).
   * A follower that has applied this far was current when the answer came:
   * how a revocation view proves it is fresh.
   */
  lastSequence(topic: Topic): Promise<number>;
  /** Stops subscriptions and closes the connection. Idempotent. Later calls reject. */
  close(): Promise<void>;
}

// What both implementations share, so a caller sees the same limits and the
// same misuse errors whichever bus is behind the interface.

/**
 * Retention and retry defaults of both implementations.
 * @internal shared by the implementations
 */
export const busDefaults = {
  /**
   * A revocation only matters while a mandate it covers can be alive. The
   * longest is a session, which a zone may allow up to 24 h
   * (`max_session_ttl`), so the stream keeps revocations 25 h; they are tiny.
   */
  revocationsMaxAgeMs: 25 * 60 * 60 * 1000,
  /** Audit events only wait here until the ledger has them; a week covers a long ledger outage. */
  auditMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  /**
   * Activations are notifications: replicas read the active version from the
   * store, and poll it as well, so an hour of them is plenty.
   */
  policyMaxAgeMs: 60 * 60 * 1000,
  /** Long enough for an outbox relay to retry a publish whose acknowledgement it lost. */
  duplicateWindowMs: 2 * 60 * 1000,
  /** First redelivery delay after a durable handler throws; it doubles per attempt. */
  redeliveryDelayMs: 250,
} as const;

/**
 * Every topic, in the order streams are set up.
 * @internal shared by the implementations
 */
export const TOPICS: readonly Topic[] = ["revocations", "audit", "policy"];
const zonePattern = /^[a-z0-9-]{1,63}$/;
const durablePattern = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Throws a `TypeError` unless `topic` is one of the bus topics.
 * @internal shared by the implementations
 */
export function assertTopic(topic: unknown): asserts topic is Topic {
  if (!TOPICS.includes(topic as Topic)) {
    throw new TypeError(`bus topic must be one of ${TOPICS.join(", ")}, got ${JSON.stringify(topic)}`);
  }
}

/**
 * Throws a `TypeError` unless `zone` is a zone slug (`^[a-z0-9-]{1,63}$`). The
 * slug becomes a subject token, so anything looser could address other zones.
 * @internal shared by the implementations
 */
export function assertZone(zone: unknown): asserts zone is string {
  if (typeof zone !== "string" || !zonePattern.test(zone)) {
    throw new TypeError(`zone must match ${zonePattern.source}, got ${JSON.stringify(zone)}`);
  }
}

/**
 * Throws a `TypeError` unless `durable` can name a JetStream consumer.
 * @internal shared by the implementations
 */
export function assertDurable(durable: unknown): asserts durable is string {
  if (typeof durable !== "string" || !durablePattern.test(durable)) {
    throw new TypeError(`durable name must match ${durablePattern.source}, got ${JSON.stringify(durable)}`);
  }
}

/**
 * How `consumeBatch` cuts batches, once its options are checked.
 * @internal shared by the implementations
 */
export interface BatchSize {
  readonly maxMessages: number;
  readonly maxWaitMs: number;
}

/**
 * The largest `maxMessages` of `consumeBatch`.
 * @internal shared by the implementations
 */
export const maxBatchMessages = 10_000;
/**
 * The longest `maxWaitMs`: messages waiting for their batch to fill are not
 * kept alive, so this stays well inside JetStream's ack wait (30 s).
 */
const maxBatchWaitMs = 10_000;

/**
 * Checks the batch options of `consumeBatch` and fills in the defaults;
 * throws a `TypeError` unless each is a positive integer within its limit.
 * @internal shared by the implementations
 */
export function batchSize(options: BatchOptions): BatchSize {
  const check = (name: string, value: unknown, fallback: number, max: number) => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || (value as number) <= 0 || (value as number) > max) {
      const got = typeof value === "number" ? value : JSON.stringify(value);
      throw new TypeError(`${name} must be a positive integer of at most ${max}, got ${got}`);
    }
    return value as number;
  };
  return {
    maxMessages: check("maxMessages", options.maxMessages, 500, maxBatchMessages),
    maxWaitMs: check("maxWaitMs", options.maxWaitMs, 20, maxBatchWaitMs),
  };
}

/**
 * Throws a `TypeError` unless the payload and message id of a publish are usable.
 * The id travels as a NATS header, so it cannot hold line breaks.
 * @internal shared by the implementations
 */
export function assertPublishable(data: unknown, msgId: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError("bus payload must be a Uint8Array");
  }
  if (typeof msgId !== "string" || msgId.length === 0 || /[\r\n]/.test(msgId)) {
    throw new TypeError(`msgId must be a non-empty single-line string, got ${JSON.stringify(msgId)}`);
  }
}

/**
 * How long a durable consumer waits before redelivering a message whose
 * handler threw: doubling from `baseMs` per attempt, capped at 30 s, so a
 * poisoned message or a down database does not spin.
 * @internal shared by the implementations
 */
export function redeliveryDelay(baseMs: number, deliveryCount: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, Math.min(deliveryCount - 1, 16)), 30_000);
}
