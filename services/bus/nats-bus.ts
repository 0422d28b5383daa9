/**
 * The production bus: NATS JetStream. Revocations and audit events are
 * separate file-backed streams; `follow` is an ordered consumer, `consume` and
 * `consumeBatch` a durable pull consumer with explicit acknowledgement.
 * Written for NATS server 2.9 and later: no stream metadata, single
 * `filter_subject`, no per-message TTL.
 */
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  PubHeaders,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from "@nats-io/jetstream";
import {
  assertDurable,
  assertPublishable,
  assertTopic,
  TOPICS,
  assertZone,
  batchSize,
  busDefaults,
  maxBatchMessages,
  redeliveryDelay,
  type BatchOptions,
  type BatchSize,
  type Bus,
  type BusBatchHandler,
  type BusErrorReporter,
  type BusFailure,
  type BusHandler,
  type BusMessage,
  type PublishAck,
  type SubscribeOptions,
  type Subscription,
  type Topic,
} from "./bus.js";

/** Options of {@link openNatsBus}. */
export interface NatsBusOptions {
  /** Server URL, e.g. `nats://127.0.0.1:4222`; several, comma-separated, for a cluster. */
  readonly url: string;
  /** Connection name shown in the server's monitoring; default `caracal`. */
  readonly name?: string;
  /** Stream names are `<streamPrefix>_REVOCATIONS`, `<streamPrefix>_AUDIT` and `<streamPrefix>_POLICY`; default `CARACAL`. */
  readonly streamPrefix?: string;
  /** Subjects are `<subjectPrefix>.<topic>.<zone>`; default `caracal`. */
  readonly subjectPrefix?: string;
  /** How long revocations are kept; default 25 h (the longest mandate a zone may allow, 24 h, plus margin). */
  readonly revocationsMaxAgeMs?: number;
  /** How long audit events are kept; default 7 days. */
  readonly auditMaxAgeMs?: number;
  /** JetStream de-duplication window; default 2 min, at most the max age. */
  readonly duplicateWindowMs?: number;
  /** Stream replicas; 1 on a single server, 3 on a cluster. Default 1. */
  readonly replicas?: number;
  /** Bounds the first connection and each JetStream request (publish acks included); default 5 s. */
  readonly timeoutMs?: number;
  /** First delay before redelivering a message whose durable handler threw; doubles per attempt. Default 250 ms. */
  readonly redeliveryDelayMs?: number;
  /** Where handler and subscription failures go; `console.error` by default. */
  readonly onError?: BusErrorReporter;
}

/**
 * The bus could not be opened: the server is unreachable, has JetStream off,
 * or holds a stream Caracal cannot adopt. The message names the server (without
 * credentials); the underlying error is the `cause`.
 */
export class BusUnavailableError extends Error {
  /** Stable code for callers that branch on it. */
  readonly code = "ERR_BUS_UNAVAILABLE";
  override readonly name = "BusUnavailableError";
}

/** How long a durable's message may stay unacknowledged before the server redelivers it. */
const ackWaitMs = 30_000;
/** `follow` and `consume` hand over one message at a time. */
const oneByOne: BatchSize = { maxMessages: 1, maxWaitMs: 1 };

const reportToConsole: BusErrorReporter = (error, failure) => {
  console.error(`caracal bus (nats): ${failure.kind} failure on ${failure.topic}`, failure, error);
};

/**
 * Connects to NATS, creates or updates the two streams, and returns the bus.
 * Once open, the connection reconnects forever and subscriptions resume by
 * themselves after the server comes back.
 *
 * @throws TypeError on malformed options.
 * @throws BusUnavailableError when the server cannot be reached in `timeoutMs`,
 *   JetStream is off, or a stream cannot be created or updated.
 * @example
 * const bus = await openNatsBus({ url: process.env.CARACAL_NATS_URL! });
 */
export async function openNatsBus(options: NatsBusOptions): Promise<Bus> {
  const settings = checkOptions(options);
  const where = redact(options.url);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: options.url.split(",").map((s) => s.trim()),
      name: options.name ?? "caracal",
      timeout: settings.timeoutMs,
      // Revocations must find their way back without a restart: never give up.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1_000,
      // The default (2 min × 2 pings) lets a half-open connection hide for
      // minutes; a revocation view cannot be stale that long.
      pingInterval: 10_000,
      maxPingOut: 3,
    });
  } catch (cause) {
    throw new BusUnavailableError(`cannot connect to NATS at ${where}: ${message(cause)}`, { cause });
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: settings.timeoutMs });
    for (const topic of TOPICS) {
      await ensureStream(jsm, streamConfig(settings, topic));
    }
    return new NatsBus(nc, jetstream(nc, { timeout: settings.timeoutMs }), jsm, settings);
  } catch (cause) {
    await nc.close().catch(() => {});
    if (cause instanceof BusUnavailableError) throw cause;
    throw new BusUnavailableError(`cannot set up JetStream streams at ${where}: ${message(cause)}`, { cause });
  }
}

interface Settings {
  readonly streamPrefix: string;
  readonly subjectPrefix: string;
  readonly maxAgeMs: Record<Topic, number>;
  readonly duplicateWindowMs: number;
  readonly replicas: number;
  readonly timeoutMs: number;
  readonly redeliveryDelayMs: number;
  readonly report: BusErrorReporter;
}

function checkOptions(options: NatsBusOptions): Settings {
  if (typeof options?.url !== "string" || options.url.trim() === "") {
    throw new TypeError("NATS bus needs a url, e.g. nats://127.0.0.1:4222");
  }
  const streamPrefix = options.streamPrefix ?? "CARACAL";
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(streamPrefix)) {
    throw new TypeError(`streamPrefix must match ^[A-Za-z0-9_-]{1,200}$, got ${JSON.stringify(streamPrefix)}`);
  }
  const subjectPrefix = options.subjectPrefix ?? "caracal";
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subjectPrefix)) {
    throw new TypeError(`subjectPrefix must be dot-separated plain tokens, got ${JSON.stringify(subjectPrefix)}`);
  }
  const positive = (name: string, v: number | undefined, fallback: number) => {
    const value = v ?? fallback;
    if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer, got ${v}`);
    return value;
  };
  return {
    streamPrefix,
    subjectPrefix,
    maxAgeMs: {
      revocations: positive("revocationsMaxAgeMs", options.revocationsMaxAgeMs, busDefaults.revocationsMaxAgeMs),
      audit: positive("auditMaxAgeMs", options.auditMaxAgeMs, busDefaults.auditMaxAgeMs),
      policy: busDefaults.policyMaxAgeMs,
    },
    duplicateWindowMs: positive("duplicateWindowMs", options.duplicateWindowMs, busDefaults.duplicateWindowMs),
    replicas: positive("replicas", options.replicas, 1),
    timeoutMs: positive("timeoutMs", options.timeoutMs, 5_000),
    redeliveryDelayMs: positive("redeliveryDelayMs", options.redeliveryDelayMs, busDefaults.redeliveryDelayMs),
    report: options.onError ?? reportToConsole,
  };
}

const streamName = (s: Settings, topic: Topic) => `${s.streamPrefix}_${topic.toUpperCase()}`;
const topicSubject = (s: Settings, topic: Topic) => `${s.subjectPrefix}.${topic}`;

function streamConfig(s: Settings, topic: Topic): StreamConfigWanted {
  const maxAge = s.maxAgeMs[topic];
  return {
    name: streamName(s, topic),
    subjects: [`${topicSubject(s, topic)}.*`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(maxAge),
    // The server refuses a window longer than the max age; clamp instead of failing.
    duplicate_window: nanos(Math.min(s.duplicateWindowMs, maxAge)),
    num_replicas: s.replicas,
  };
}

type StreamConfigWanted = Pick<
  StreamConfig,
  "name" | "subjects" | "retention" | "storage" | "discard" | "max_age" | "duplicate_window" | "num_replicas"
>;

/**
 * Creates the stream, or brings an existing one to the wanted limits, so
 * opening is idempotent and a changed option takes effect on the next start.
 */
async function ensureStream(jsm: JetStreamManager, wanted: StreamConfigWanted): Promise<void> {
  const { name } = wanted;
  let existing: StreamConfig | undefined;
  try {
    existing = (await jsm.streams.info(name)).config;
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
  }
  if (!existing) {
    try {
      await jsm.streams.add({ ...wanted, subjects: [...wanted.subjects] });
      return;
    } catch (err) {
      // Another replica created it between our info and add: adopt it below.
      if (!isApiError(err, streamNameInUse)) throw err;
      existing = (await jsm.streams.info(name)).config;
    }
  }
  if (existing.retention !== wanted.retention || existing.storage !== wanted.storage) {
    throw new BusUnavailableError(
      `stream ${name} exists with ${existing.retention} retention and ${existing.storage} storage; ` +
        `Caracal needs ${wanted.retention}/${wanted.storage}, which cannot be changed in place: delete the stream or pick another streamPrefix`,
    );
  }
  const differs =
    existing.subjects.join(" ") !== wanted.subjects.join(" ") ||
    existing.max_age !== wanted.max_age ||
    existing.duplicate_window !== wanted.duplicate_window ||
    existing.discard !== wanted.discard ||
    existing.num_replicas !== wanted.num_replicas;
  if (differs) {
    const { name: _name, retention: _retention, storage: _storage, ...update } = wanted;
    await jsm.streams.update(name, { ...update, subjects: [...update.subjects] });
  }
}

/** JetStream's "stream name already in use with a different configuration"; not among the library's named codes. */
const streamNameInUse = 10058;

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The URL(s) for error messages: a password must not end up in logs. */
function redact(url: string): string {
  return url
    .split(",")
    .map((raw) => {
      const s = raw.trim();
      try {
        const u = new URL(s);
        if (u.password) u.password = "***";
        else if (u.username && !u.password) u.username = "***";
        return u.toString().replace(/\/$/, "");
      } catch {
        // Not a URL (e.g. "host:4222"): it cannot carry credentials either.
        return s;
      }
    })
    .join(",");
}

/** What a {@link Delivery} does with messages; the parts that differ between `follow` and `consumeBatch`. */
interface DeliverySpec {
  /** Opens the consumer again after the loop ended without being stopped. */
  readonly reopen: () => Promise<ConsumerMessages>;
  /** How many messages `handle` gets at once. */
  readonly batch: BatchSize;
  /** Hands a batch to the caller's handler and settles it; throws only when the connection is gone. */
  readonly handle: (batch: JsMsg[]) => Promise<void>;
  /** A message the client had already received when `stop` was called. */
  readonly leftover: (m: JsMsg) => void;
  /** Reports a failure of the loop itself. */
  readonly failed: (error: unknown) => void;
  /** Runs once the loop has ended for good. */
  readonly afterStop: () => Promise<void>;
}

/** One subscription: a delivery loop that re-establishes itself until stopped. */
class Delivery implements Subscription {
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #current: ConsumerMessages | undefined;
  #wakeFromPause: (() => void) | undefined;
  readonly #done: Promise<void>;

  constructor(
    private readonly nc: NatsConnection,
    first: ConsumerMessages,
    private readonly spec: DeliverySpec,
  ) {
    this.#current = first;
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped) {
      try {
        if (!this.#current) {
          this.#current = await this.spec.reopen();
          // Stopped meanwhile: close, then let the loop below drain it.
          if (this.#stopped) void this.#current.close().catch(() => {});
        }
        for await (const batch of inBatches(this.#current, this.spec.batch)) {
          if (this.#stopped) {
            try {
              for (const m of batch) this.spec.leftover(m);
            } catch {
              // Connection gone: the server redelivers after the ack wait instead.
            }
            continue;
          }
          attempt = 0;
          await this.spec.handle(batch);
        }
      } catch (error) {
        if (!this.#stopped) this.spec.failed(error);
        // `handle` threw with the consumer still open: stop it pulling before opening another.
        void this.#current?.close().catch(() => {});
      }
      this.#current = undefined;
      // The client library keeps a consume alive across reconnects; ending
      // here means something it does not recover from (the consumer or the
      // stream was deleted, a permissions change). Try again, slowly.
      if (this.#stopped || this.nc.isClosed()) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(500 * 2 ** attempt++, 15_000));
        this.#wakeFromPause = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wakeFromPause = undefined;
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      this.#wakeFromPause?.();
      // Resolves once the loop reached the close in the iterator's queue, that
      // is after the running handler and the messages already received.
      await this.#current?.close().catch(() => {});
      await this.#done;
      await this.spec.afterStop();
    })();
    return this.#stopping;
  }
}

/**
 * Reads a consumer's messages in batches: waits as long as it takes for a
 * first message, then up to `maxWaitMs` for more, and yields at most
 * `maxMessages`. It reads only while it gathers a batch, and the client sends
 * its pull requests only as it is read, so hardly anything is on the wire
 * while a handler runs, and stopping then leaves (almost) nothing in flight:
 * a message delivered to a consumer that already unsubscribed is held back by
 * the server for the whole ack wait. What a pull still brings while a handler
 * runs (the rest of it, after a smaller batch) waits here for the next batch.
 */
async function* inBatches(messages: ConsumerMessages, { maxMessages, maxWaitMs }: BatchSize): AsyncGenerator<JsMsg[]> {
  const it = messages[Symbol.asyncIterator]();
  // A read the timer cut short; the next batch starts with it.
  let pending: Promise<IteratorResult<JsMsg>> | undefined;
  for (let ended = false; !ended; ) {
    const first = await (pending ?? it.next());
    pending = undefined;
    if (first.done) return;
    // By stream sequence: when a batch runs past the ack wait, the server
    // redelivers messages pulled ahead, and both copies arrive here.
    const batch = new Map([[first.value.seq, first.value]]);
    let timer: NodeJS.Timeout | undefined;
    const timeUp =
      maxMessages === 1 ? undefined : new Promise<"time-up">((resolve) => (timer = setTimeout(resolve, maxWaitMs, "time-up")));
    try {
      while (timeUp && batch.size < maxMessages) {
        pending = it.next();
        const read = await Promise.race([pending, timeUp]);
        if (read === "time-up") break;
        pending = undefined;
        if (read.done) {
          ended = true;
          break;
        }
        batch.set(read.value.seq, read.value);
      }
    } finally {
      clearTimeout(timer);
    }
    yield [...batch.values()];
  }
}

class NatsBus implements Bus {
  readonly kind = "nats" as const;
  readonly #deliveries = new Set<Delivery>();
  #closing: Promise<void> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly settings: Settings,
  ) {}

  async publish(topic: Topic, zone: string, data: Uint8Array, msgId: string): Promise<PublishAck> {
    assertTopic(topic);
    assertZone(zone);
    assertPublishable(data, msgId);
    this.#assertOpen();
    const ack = await this.js.publish(`${topicSubject(this.settings, topic)}.${zone}`, data, { msgID: msgId });
    // The server leaves `duplicate` out when it is false.
    return { seq: ack.seq, duplicate: ack.duplicate === true };
  }

  async lastSequence(topic: Topic): Promise<number> {
    assertTopic(topic);
    this.#assertOpen();
    const { state } = await this.jsm.streams.info(streamName(this.settings, topic));
    // After every message has expired (or a purge) last_seq stays put with
    // nothing left to deliver: a follower could never reach it.
    return state.messages === 0 ? 0 : state.last_seq;
  }

  async follow(topic: Topic, handler: BusHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    assertTopic(topic);
    if (options.zone !== undefined) assertZone(options.zone);
    this.#assertOpen();
    const stream = streamName(this.settings, topic);
    // A string becomes the consumer's single `filter_subject`, which 2.9 knows.
    const filter = options.zone === undefined ? {} : { filter_subjects: `${topicSubject(this.settings, topic)}.${options.zone}` };
    let lastSeq = 0;
    // An ordered consumer: ephemeral, in server memory, and recreated by the
    // client at the next sequence whenever it sees a gap, a reconnect or a
    // server that lost it. Opening again after the loop broke continues after
    // the last delivered message rather than replaying.
    const open = async () => {
      const consumer = await this.js.consumers.get(stream, { opt_start_seq: lastSeq + 1, ...filter });
      return consumer.consume();
    };
    return this.#start(await open(), {
      reopen: open,
      batch: oneByOne,
      handle: async ([m]) => {
        lastSeq = m!.seq;
        try {
          await handler(this.#toBusMessage(topic, m!));
        } catch (error) {
          this.#report(error, { kind: "handler", topic, seq: m!.seq });
        }
      },
      leftover: () => {},
      failed: (error) => this.#report(error, { kind: "subscription", topic }),
      afterStop: async () => {},
    });
  }

  consume(topic: Topic, durable: string, handler: BusHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    return this.consumeBatch(topic, durable, async ([m]) => handler(m!), { zone: options?.zone, maxMessages: 1 });
  }

  async consumeBatch(topic: Topic, durable: string, handler: BusBatchHandler, options: BatchOptions = {}): Promise<Subscription> {
    assertTopic(topic);
    assertDurable(durable);
    if (options.zone !== undefined) assertZone(options.zone);
    const batch = batchSize(options);
    this.#assertOpen();
    const stream = streamName(this.settings, topic);
    await this.#ensureDurable(stream, durable, `${topicSubject(this.settings, topic)}.${options.zone ?? "*"}`, options.resumeInOrder === true);
    const open = async () =>
      (await this.js.consumers.get(stream, durable)).consume({
        max_messages: batch.maxMessages,
        // The client pulls again once at most this many of its last pull are
        // still to come; the default (75 %) would pull the next batch while a
        // batch is gathered, and a consumer stopping during its handler would
        // drop those messages on arrival, for the server to hold back the
        // whole ack wait. Below 1: only once the whole pull has arrived.
        threshold_messages: 0.5,
      });
    return this.#start(await open(), {
      reopen: open,
      batch,
      handle: async (ms) => {
        // A slow handler must not look like a lost one: extend the ack deadline while it runs.
        const keepAlive = setInterval(() => {
          try {
            for (const m of ms) m.working();
          } catch {
            // Connection closed: the messages will be redelivered anyway.
          }
        }, ackWaitMs / 3);
        try {
          await handler(ms.map((m) => this.#toBusMessage(topic, m)));
        } catch (error) {
          this.#report(error, { kind: "handler", topic, durable, seq: ms[0]!.seq });
          for (const m of ms) m.nak(redeliveryDelay(this.settings.redeliveryDelayMs, m.info.deliveryCount));
          return;
        } finally {
          clearInterval(keepAlive);
        }
        for (const m of ms) m.ack();
      },
      // Received while stopping and never handed over: give it back now rather
      // than after the ack wait, so a restarted consumer gets it at once. With a
      // delay, because server 2.9.10 mishandles a plain -NAK when no pull is
      // waiting (the next message is skipped and another delivered twice).
      leftover: (m) => m.nak(1),
      failed: (error) => this.#report(error, { kind: "subscription", topic, durable }),
      afterStop: async () => {
        // Acks are fire-and-forget publishes; put them on the wire before
        // reporting stopped, so a restart right after does not see them again.
        if (!this.nc.isClosed()) await withTimeout(this.nc.flush(), this.settings.timeoutMs).catch(() => {});
      },
    });
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#deliveries].map((d) => d.stop()));
      await this.nc.close();
    })();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing) throw new Error("the bus is closed");
  }

  #start(first: ConsumerMessages, spec: DeliverySpec): Subscription {
    const delivery = new Delivery(this.nc, first, spec);
    this.#deliveries.add(delivery);
    return {
      stop: async () => {
        await delivery.stop();
        this.#deliveries.delete(delivery);
      },
    };
  }

  #report(error: unknown, failure: BusFailure): void {
    try {
      this.settings.report(error, failure);
    } catch {
      // A broken reporter must not take the delivery loop down with it.
    }
  }

  /**
   * Creates the durable, or updates it when its filter changed (the latest
   * subscriber's zone wins). Nothing else about it is configurable. With
   * `rewind`, a durable holding unacknowledged messages is created again
   * from just after its acknowledgement floor (see `resumeInOrder`): the
   * server offers no other way to redeliver them now rather than after their
   * ack wait or nak delay.
   */
  async #ensureDurable(stream: string, durable: string, filterSubject: string, rewind: boolean): Promise<void> {
    const ackWait = nanos(ackWaitMs);
    // A batch being handled plus the next one pulled ahead, at the largest
    // batch size; the server's default (1,000) would cap batches below it.
    const maxAckPending = 2 * maxBatchMessages;
    let existing: ConsumerConfig | undefined;
    let startAfter = 0;
    try {
      const info = await this.jsm.consumers.info(stream, durable);
      existing = info.config;
      if (rewind && info.num_ack_pending > 0) {
        // A crash between the delete and the add leaves no durable: the next start then begins at the
        // stream's first message, so a resumeInOrder consumer skips more, but never misses one.
        startAfter = info.ack_floor.stream_seq;
        await this.jsm.consumers.delete(stream, durable);
        existing = undefined;
      }
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
    }
    if (!existing) {
      await this.jsm.consumers.add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        ...(startAfter > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startAfter + 1 } : { deliver_policy: DeliverPolicy.All }),
        replay_policy: ReplayPolicy.Instant,
        filter_subject: filterSubject,
        ack_wait: ackWait,
        max_ack_pending: maxAckPending,
        // Redelivery is paced by our nak delays; a cap would silently drop events.
        max_deliver: -1,
      });
    } else if (
      existing.filter_subject !== filterSubject ||
      existing.ack_wait !== ackWait ||
      existing.max_ack_pending !== maxAckPending
    ) {
      await this.jsm.consumers.update(stream, durable, {
        filter_subject: filterSubject,
        ack_wait: ackWait,
        max_ack_pending: maxAckPending,
      });
    }
  }

  #toBusMessage(topic: Topic, m: JsMsg): BusMessage {
    return {
      topic,
      zone: m.subject.slice(topicSubject(this.settings, topic).length + 1),
      data: m.data,
      msgId: m.headers?.get(PubHeaders.MsgIdHdr) ?? "",
      seq: m.seq,
      time: m.time,
    };
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
