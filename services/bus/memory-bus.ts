/**
 * The in-process bus: the embedded default when no NATS URL is configured. It
 * keeps JetStream's semantics (per-topic sequence, de-duplication window, max
 * age, ordered replay, durable consumers with acknowledgement and redelivery)
 * so code written against it behaves the same against NATS. Nothing survives
 * the process.
 */
import {
  assertDurable,
  assertPublishable,
  assertTopic,
  assertZone,
  batchSize,
  busDefaults,
  redeliveryDelay,
  type BatchOptions,
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

/** Options of {@link createMemoryBus}. */
export interface MemoryBusOptions {
  /**
   * Clock for stored times, max age and the de-duplication window; `Date.now`
   * by default. Redelivery delays and batch waits use real timers.
   */
  readonly now?: () => number;
  /** How long revocations are kept; default 25 h. */
  readonly revocationsMaxAgeMs?: number;
  /** How long audit events are kept; default 7 days. */
  readonly auditMaxAgeMs?: number;
  /** How long a message id is remembered for de-duplication; default 2 min, at most the max age. */
  readonly duplicateWindowMs?: number;
  /** First delay before redelivering a message whose durable handler threw; doubles per attempt. Default 250 ms. */
  readonly redeliveryDelayMs?: number;
  /** Where handler and subscription failures go; `console.error` by default. */
  readonly onError?: BusErrorReporter;
}

interface StoredMessage {
  readonly zone: string;
  readonly data: Uint8Array;
  readonly msgId: string;
  readonly seq: number;
  readonly time: number;
}

/** Wakes a sleeping delivery loop; a wake before the sleep is not lost. */
class Waker {
  #pending = false;
  #resolve: (() => void) | undefined;

  wake(): void {
    const resolve = this.#resolve;
    this.#resolve = undefined;
    if (resolve) resolve();
    else this.#pending = true;
  }

  /** Resolves at the next wake, or once `timeoutMs` has passed when given. */
  sleep(timeoutMs?: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              // Timed out: a later wake must not go to this finished sleep.
              if (this.#resolve === wake) this.#resolve = undefined;
              resolve();
            }, timeoutMs).unref();
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#resolve = wake;
    });
  }
}

/** One topic's stream: contiguous sequence numbers, trimmed from the head by age. */
class TopicLog {
  readonly messages: StoredMessage[] = [];
  lastSeq = 0;
  /** msgId → first store; a Map iterates in insertion order, so the oldest ids come first. */
  readonly ids = new Map<string, { seq: number; at: number }>();
  readonly listeners = new Set<Waker>();

  constructor(
    readonly maxAgeMs: number,
    readonly duplicateWindowMs: number,
  ) {}

  trim(now: number): void {
    let expired = 0;
    while (expired < this.messages.length && now - this.messages[expired]!.time >= this.maxAgeMs) expired++;
    if (expired > 0) this.messages.splice(0, expired);
    for (const [id, seen] of this.ids) {
      if (now - seen.at < this.duplicateWindowMs) break;
      this.ids.delete(id);
    }
  }

  get firstSeq(): number {
    return this.lastSeq - this.messages.length + 1;
  }

  /** The stored message with this seq, unless trimmed. */
  get(seq: number): StoredMessage | undefined {
    return this.messages[seq - this.firstSeq];
  }

  /** The first message at or after `seq` in `zone` (any zone when unset). */
  next(seq: number, zone: string | undefined): StoredMessage | undefined {
    for (let i = Math.max(0, seq - this.firstSeq); i < this.messages.length; i++) {
      const m = this.messages[i]!;
      if (zone === undefined || m.zone === zone) return m;
    }
    return undefined;
  }
}

/**
 * A durable consumer's position, kept for the life of the bus like a JetStream
 * durable is kept by the server, and shared by every subscription bound to it.
 */
class DurableState {
  /** The next never-delivered seq. */
  nextSeq = 1;
  /** Delivered, not yet acknowledged: seq → deliveries so far. */
  readonly unacked = new Map<number, number>();
  /** Unacknowledged and due for redelivery now. */
  readonly due = new Set<number>();
  readonly listeners = new Set<Waker>();

  constructor(public zone: string | undefined) {}

  /** Takes up to `max` messages to hand out, redeliveries first, and counts their deliveries. */
  take(log: TopicLog, max: number): { msg: StoredMessage; deliveryCount: number }[] {
    const taken: { msg: StoredMessage; deliveryCount: number }[] = [];
    for (const seq of [...this.due].sort((a, b) => a - b)) {
      if (taken.length === max) return taken;
      this.due.delete(seq);
      const msg = log.get(seq);
      // Trimmed by max age while waiting for redelivery: JetStream drops it too.
      if (!msg) {
        this.unacked.delete(seq);
        continue;
      }
      const deliveryCount = (this.unacked.get(seq) ?? 0) + 1;
      this.unacked.set(seq, deliveryCount);
      taken.push({ msg, deliveryCount });
    }
    while (taken.length < max) {
      const msg = log.next(this.nextSeq, this.zone);
      if (!msg) {
        this.nextSeq = Math.max(this.nextSeq, log.lastSeq + 1);
        break;
      }
      this.nextSeq = msg.seq + 1;
      this.unacked.set(msg.seq, 1);
      taken.push({ msg, deliveryCount: 1 });
    }
    return taken;
  }

  /** How many messages `take` would hand out now, counting no further than `max`. */
  waiting(log: TopicLog, max: number): number {
    let n = 0;
    for (const seq of this.due) if (log.get(seq) && ++n === max) return n;
    let m = log.next(this.nextSeq, this.zone);
    // None left in our zone: the next scan can start at the end, as after `take`.
    if (!m) this.nextSeq = Math.max(this.nextSeq, log.lastSeq + 1);
    for (; m && n < max; m = log.next(m.seq + 1, this.zone)) n++;
    return n;
  }

  wake(): void {
    for (const w of this.listeners) w.wake();
  }
}

/** What a subscription's `step` sees of its loop. */
interface RunningSubscription {
  /** Woken at publishes, redeliveries and `stop`. */
  readonly waker: Waker;
  stopped: boolean;
}

const reportToConsole: BusErrorReporter = (error, failure) => {
  console.error(`caracal bus (memory): ${failure.kind} failure on ${failure.topic}`, failure, error);
};

/** Deliveries in a row before a loop yields to the event loop, so replaying a long log does not starve I/O. */
const yieldEvery = 256;

/**
 * Creates the in-process bus.
 *
 * @example
 * const bus = createMemoryBus();
 * await bus.follow("revocations", (m) => view.apply(m));
 * await bus.publish("revocations", "default", payload, revocationId);
 */
export function createMemoryBus(options: MemoryBusOptions = {}): Bus {
  const now = options.now ?? Date.now;
  const report = options.onError ?? reportToConsole;
  const redeliveryBaseMs = options.redeliveryDelayMs ?? busDefaults.redeliveryDelayMs;
  const duplicateWindowMs = options.duplicateWindowMs ?? busDefaults.duplicateWindowMs;
  const logFor = (maxAgeMs: number) =>
    // JetStream refuses a window longer than the max age; clamp instead of failing.
    new TopicLog(maxAgeMs, Math.min(duplicateWindowMs, maxAgeMs));
  const logs: Record<Topic, TopicLog> = {
    revocations: logFor(options.revocationsMaxAgeMs ?? busDefaults.revocationsMaxAgeMs),
    audit: logFor(options.auditMaxAgeMs ?? busDefaults.auditMaxAgeMs),
    policy: logFor(busDefaults.policyMaxAgeMs),
  };
  const durables = new Map<string, DurableState>();
  const subscriptions = new Set<Subscription>();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const assertOpen = () => {
    if (closed) throw new Error("the bus is closed");
  };

  const toBusMessage = (topic: Topic, m: StoredMessage): BusMessage => ({
    topic,
    zone: m.zone,
    // Each handler gets its own copy, as it would from the network.
    data: m.data.slice(),
    msgId: m.msgId,
    seq: m.seq,
    time: new Date(m.time),
  });

  /**
   * Runs one subscription: `step` hands over at most one message (or batch)
   * and says whether it did; when it did not, the loop sleeps until woken.
   */
  function run(
    where: Omit<BusFailure, "kind">,
    wakers: Set<Waker>[],
    step: (sub: RunningSubscription) => Promise<boolean>,
  ): Subscription {
    const waker = new Waker();
    for (const set of wakers) set.add(waker);
    const sub: RunningSubscription = { waker, stopped: false };
    const loop = (async () => {
      // Never deliver inside the call that created the subscription.
      await Promise.resolve();
      let streak = 0;
      while (!sub.stopped) {
        let delivered: boolean;
        try {
          delivered = await step(sub);
        } catch (error) {
          // Handlers are caught inside `step`; this is a bug of ours, and it
          // must not become an unhandled rejection or a hot loop.
          failed(error, { kind: "subscription", ...where });
          delivered = false;
        }
        if (delivered) {
          if (++streak % yieldEvery === 0) await new Promise((resolve) => setImmediate(resolve));
        } else if (!sub.stopped) {
          // Stopped during the step: its wait may have taken the wake of `stop`.
          streak = 0;
          await waker.sleep();
        }
      }
    })();
    const subscription: Subscription = {
      async stop() {
        sub.stopped = true;
        waker.wake();
        await loop;
        for (const set of wakers) set.delete(waker);
        subscriptions.delete(subscription);
      },
    };
    subscriptions.add(subscription);
    return subscription;
  }

  const failed = (error: unknown, failure: BusFailure) => {
    try {
      report(error, failure);
    } catch {
      // A broken reporter must not take the delivery loop down with it.
    }
  };

  async function consumeBatch(
    topic: Topic,
    durable: string,
    handler: BusBatchHandler,
    options: BatchOptions = {},
  ): Promise<Subscription> {
    assertTopic(topic);
    assertDurable(durable);
    if (options.zone !== undefined) assertZone(options.zone);
    const { maxMessages, maxWaitMs } = batchSize(options);
    assertOpen();
    const log = logs[topic];
    const key = `${topic}/${durable}`;
    let state = durables.get(key);
    if (!state) durables.set(key, (state = new DurableState(options.zone)));
    // Like updating a JetStream durable's filter: the latest subscription's zone wins.
    state.zone = options.zone;
    // Due at once, so `take` hands them out first, in order: everything unacknowledged is older than `nextSeq`.
    if (options.resumeInOrder) for (const seq of state.unacked.keys()) state.due.add(seq);
    const s = state;
    return run({ topic, durable }, [log.listeners, s.listeners], async (sub) => {
      log.trim(now());
      if (s.waiting(log, 1) === 0) return false;
      // Wakes at each publish, so a batch that fills up goes at once.
      const deadline = performance.now() + maxWaitMs;
      while (!sub.stopped && s.waiting(log, maxMessages) < maxMessages && performance.now() < deadline) {
        await sub.waker.sleep(deadline - performance.now());
        log.trim(now());
      }
      if (sub.stopped) return false;
      const batch = s.take(log, maxMessages);
      // Another subscription on the durable took them meanwhile.
      if (batch.length === 0) return false;
      try {
        await handler(batch.map(({ msg }) => toBusMessage(topic, msg)));
        for (const { msg } of batch) s.unacked.delete(msg.seq);
      } catch (error) {
        failed(error, { kind: "handler", topic, durable, seq: batch[0]!.msg.seq });
        for (const { msg, deliveryCount } of batch) redeliverLater(s, msg.seq, deliveryCount);
      }
      return true;
    });
  }

  /** Makes an unacknowledged message due again after the growing delay. */
  function redeliverLater(s: DurableState, seq: number, deliveryCount: number): void {
    if (closed) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!s.unacked.has(seq)) return;
      s.due.add(seq);
      s.wake();
    }, redeliveryDelay(redeliveryBaseMs, deliveryCount));
    // A pending redelivery alone must not keep the process alive.
    timer.unref();
    timers.add(timer);
  }

  return {
    kind: "memory",

    async lastSequence(topic: Topic): Promise<number> {
      assertTopic(topic);
      assertOpen();
      const log = logs[topic];
      log.trim(now());
      // Nothing left to deliver once everything expired: a follower is current at 0.
      return log.messages.length === 0 ? 0 : log.lastSeq;
    },

    async publish(topic: Topic, zone: string, data: Uint8Array, msgId: string): Promise<PublishAck> {
      assertTopic(topic);
      assertZone(zone);
      assertPublishable(data, msgId);
      assertOpen();
      const log = logs[topic];
      const at = now();
      log.trim(at);
      const seen = log.ids.get(msgId);
      if (seen && at - seen.at < log.duplicateWindowMs) return { seq: seen.seq, duplicate: true };
      const seq = ++log.lastSeq;
      // Copy: the caller may reuse its buffer once the publish resolved.
      log.messages.push({ zone, data: data.slice(), msgId, seq, time: at });
      // Delete first so a re-stored id moves to the end and `trim` can stop at the first live one.
      log.ids.delete(msgId);
      log.ids.set(msgId, { seq, at });
      // Wakers only resolve promises: handlers run later, never inside publish.
      for (const w of log.listeners) w.wake();
      return { seq, duplicate: false };
    },

    async follow(topic: Topic, handler: BusHandler, options: SubscribeOptions = {}): Promise<Subscription> {
      assertTopic(topic);
      if (options.zone !== undefined) assertZone(options.zone);
      assertOpen();
      const log = logs[topic];
      const zone = options.zone;
      let cursor = 1;
      return run({ topic }, [log.listeners], async () => {
        log.trim(now());
        const m = log.next(cursor, zone);
        if (!m) return false;
        cursor = m.seq + 1;
        try {
          await handler(toBusMessage(topic, m));
        } catch (error) {
          failed(error, { kind: "handler", topic, seq: m.seq });
        }
        return true;
      });
    },

    consume: (topic: Topic, durable: string, handler: BusHandler, options: SubscribeOptions = {}): Promise<Subscription> =>
      consumeBatch(topic, durable, async ([m]) => handler(m!), { zone: options?.zone, maxMessages: 1 }),

    consumeBatch,

    async close(): Promise<void> {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all([...subscriptions].map((s) => s.stop()));
    },
  };
}
