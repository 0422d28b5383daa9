import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { AuditEventSchema } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { AuditEventInit, AuditSink } from "../../interceptors/audit-sink.js";
import type { Bus } from "../bus/bus.js";

export type { AuditEventInit };

/** Options of {@link AuditPublisher}. */
export interface AuditPublisherOptions {
  /** Most events waiting to be published; beyond it `record` refuses (default 10,000). */
  readonly maxPending?: number;
  /** Most publishes awaiting their acknowledgement at once (default 64). */
  readonly concurrency?: number;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
}

/**
 * Sends audit events to the bus without making the caller wait for it: events
 * are queued and published in the background with their event id as the
 * de-duplication id, retried until acknowledged. The queue is bounded; when it
 * is full `record` returns false so the caller can refuse rather than act
 * unrecorded.
 */
export class AuditPublisher implements AuditSink {
  readonly #bus: Bus;
  readonly #log: Logger;
  readonly #maxPending: number;
  readonly #concurrency: number;
  readonly #now: () => number;
  readonly #queue: { zone: string; id: string; bytes: Uint8Array }[] = [];
  #inFlight = 0;
  #retryDelayMs = 0;
  #idle: (() => void)[] = [];

  constructor(bus: Bus, log: Logger, options: AuditPublisherOptions = {}) {
    this.#bus = bus;
    this.#log = log;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#concurrency = options.concurrency ?? 64;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Queues an event; returns false (and queues nothing) when the queue is full.
   * Never throws for bus trouble and never waits for I/O.
   */
  record(event: AuditEventInit): boolean {
    if (this.#queue.length + this.#inFlight >= this.#maxPending) return false;
    const message = create(AuditEventSchema, event);
    message.eventId ||= randomUUID();
    message.time ??= timestampFromMs(this.#now());
    this.#queue.push({ zone: message.zone, id: message.eventId, bytes: toBinary(AuditEventSchema, message) });
    this.#pump();
    return true;
  }

  /** Events queued or awaiting acknowledgement. */
  get pending(): number {
    return this.#queue.length + this.#inFlight;
  }

  /** Resolves once everything recorded so far has been acknowledged (used at shutdown and in tests). */
  flushed(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #pump(): void {
    while (this.#inFlight < this.#concurrency && this.#queue.length > 0 && this.#retryDelayMs === 0) {
      const item = this.#queue.shift()!;
      this.#inFlight++;
      this.#bus.publish("audit", item.zone, item.bytes, item.id).then(
        () => {
          this.#inFlight--;
          this.#pump();
          if (this.pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
        },
        (error: unknown) => {
          this.#inFlight--;
          // Put it back in front and back off: the same id makes a retry harmless.
          this.#queue.unshift(item);
          this.#backOff(error);
        },
      );
    }
  }

  #backOff(error: unknown): void {
    if (this.#retryDelayMs !== 0) return;
    this.#retryDelayMs = 250;
    this.#log.warn({ err: error, pending: this.pending }, "audit publish failed; retrying");
    setTimeout(() => {
      this.#retryDelayMs = 0;
      this.#pump();
    }, 250).unref();
  }
}
