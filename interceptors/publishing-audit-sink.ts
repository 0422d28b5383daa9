import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { JetStreamClient } from "@nats-io/jetstream";
import { AuditEventSchema } from "../gen/caracal/audit/v1/audit_event_pb.js";
import type { AuditEventInit, AuditSink } from "./audit-sink.js";

/** Publishes one encoded `AuditEvent` and resolves when the stream acknowledged it. */
export type AuditPublish = (zone: string, event: Uint8Array, eventId: string) => Promise<unknown>;

/** Options of {@link PublishingAuditSink}. */
export interface PublishingAuditSinkOptions {
  /** Most events waiting to be published; beyond it `record` refuses (default 10,000). */
  readonly maxPending?: number;
  /** Most publishes awaiting their acknowledgement at once (default 64). */
  readonly concurrency?: number;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  /** Told when a publish fails (it is retried); a place to log. */
  readonly onError?: (error: unknown, pending: number) => void;
}

/**
 * An audit sink that sends events on without making the caller wait: events
 * are queued and published in the background with their event id as the
 * de-duplication id, retried until acknowledged. The queue is bounded; when it
 * is full `record` returns false, and a verifier then refuses rather than act
 * unrecorded.
 *
 * @example
 * const audit = new PublishingAuditSink(jetStreamAuditPublish(jetstream(nc)));
 * const verifier = new EdgeVerifier({ keys: jwks.resolve, audit });
 */
export class PublishingAuditSink implements AuditSink {
  readonly #publish: AuditPublish;
  readonly #onError: ((error: unknown, pending: number) => void) | undefined;
  readonly #maxPending: number;
  readonly #concurrency: number;
  readonly #now: () => number;
  readonly #queue: { zone: string; id: string; bytes: Uint8Array }[] = [];
  #inFlight = 0;
  #retryDelayMs = 0;
  #idle: (() => void)[] = [];

  constructor(publish: AuditPublish, options: PublishingAuditSinkOptions = {}) {
    this.#publish = publish;
    this.#onError = options.onError;
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
      this.#publish(item.zone, item.bytes, item.id).then(
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
    this.#onError?.(error, this.pending);
    setTimeout(() => {
      this.#retryDelayMs = 0;
      this.#pump();
    }, 250).unref();
  }
}

/**
 * Publishes audit events to Caracal's JetStream stream (`caracal.audit.<zone>`,
 * protobuf `AuditEvent`, message id = event id), for services that verify at
 * their own edge.
 */
export function jetStreamAuditPublish(js: JetStreamClient, subjectPrefix = "caracal"): AuditPublish {
  return (zone, event, eventId) => js.publish(`${subjectPrefix}.audit.${zone}`, event, { msgID: eventId });
}
