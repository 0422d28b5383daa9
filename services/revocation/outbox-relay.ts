import { create, toBinary } from "@bufbuild/protobuf";
import { RevocationEventSchema } from "../../gen/caracal/revocation/v1/revocation_pb.js";
import type { Bus } from "../bus/bus.js";
import type { Store } from "../store/store.js";
import { revocationMessage, type RevocationRow } from "./revocation-rows.js";

/** Options of {@link OutboxRelay}. */
export interface OutboxRelayOptions {
  /** Rows taken per round (default 100). */
  readonly batchSize?: number;
  /** How often the outbox is looked at when nobody wakes the relay (default 1 s): other replicas' rows, restarts. */
  readonly pollIntervalMs?: number;
  /** First back-off after a failed round (default 250 ms), doubling up to `maxBackoffMs` (default 2 s: revocations are due within milliseconds once NATS is back). */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Told about a failed round (it will be retried). */
  readonly onError?: (error: unknown) => void;
}

/**
 * Publishes the revocation outbox to JetStream. Each round claims pending
 * rows with `FOR UPDATE SKIP LOCKED` (so several relays, one per replica,
 * never take the same row), publishes each with the revocation id as message
 * id, and marks rows published in the same transaction only after every ack:
 * a relay that dies mid-round leaves its rows pending, and the next publish
 * of the same id is dropped by the stream as a duplicate. Nothing is lost and
 * nothing is delivered twice.
 */
export class OutboxRelay {
  readonly #store: Store;
  readonly #bus: Bus;
  readonly #options: Required<Omit<OutboxRelayOptions, "onError">> & Pick<OutboxRelayOptions, "onError">;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #failures = 0;

  constructor(store: Store, bus: Bus, options: OutboxRelayOptions = {}) {
    this.#store = store;
    this.#bus = bus;
    this.#options = { batchSize: 100, pollIntervalMs: 1_000, backoffMs: 250, maxBackoffMs: 2_000, ...options };
  }

  /** Starts relaying: a round now, then on every wake and poll. */
  start(): void {
    this.wake();
  }

  /** Runs a round as soon as possible (after a revocation was committed here). */
  wake(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#loop().finally(() => (this.#running = undefined));
  }

  /** Stops after the round in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  async #loop(): Promise<void> {
    let delay = this.#options.pollIntervalMs;
    try {
      do {
        this.#again = false;
        // A full batch means more may be waiting: go round again at once.
        if ((await this.relayOnce()) === this.#options.batchSize) this.#again = true;
      } while (this.#again && !this.#stopped);
      this.#failures = 0;
    } catch (error) {
      this.#failures++;
      delay = Math.min(this.#options.backoffMs * 2 ** (this.#failures - 1), this.#options.maxBackoffMs);
      this.#options.onError?.(error);
    }
    if (!this.#stopped) {
      this.#timer = setTimeout(() => this.wake(), delay);
      this.#timer.unref();
    }
  }

  /** One round; returns how many revocations it published. Exposed for tests. */
  async relayOnce(): Promise<number> {
    return this.#store.transaction(async (tx) => {
      const { rows } = await tx.query<RevocationRow>(
        `SELECT r.revocation_id, z.slug AS zone, r.target_kind, r.target_key, r.issued_before, r.reason, r.revoked_by,
                r.created_at, r.expires_at
           FROM revocation_outbox o
           JOIN revocations r ON r.revocation_id = o.revocation_id
           JOIN zones z ON z.id = r.zone_id
          WHERE o.published_at IS NULL
          ORDER BY r.created_at
          LIMIT $1
            FOR UPDATE OF o SKIP LOCKED`,
        [this.#options.batchSize],
      );
      if (rows.length === 0) return 0;
      await Promise.all(
        rows.map((row) =>
          this.#bus.publish(
            "revocations",
            row.zone,
            toBinary(RevocationEventSchema, create(RevocationEventSchema, { revocation: revocationMessage(row) })),
            row.revocation_id,
          ),
        ),
      );
      await tx.query(`UPDATE revocation_outbox SET published_at = now() WHERE revocation_id = ANY($1)`, [
        rows.map((row) => row.revocation_id),
      ]);
      return rows.length;
    });
  }
}
