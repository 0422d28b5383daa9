import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AuditEvent, AuditEventSchema } from "../gen/caracal/audit/v1/audit_event_pb.js";

/** An audit event as producers describe it (a plain init object). */
export type AuditEventInit = Exclude<MessageInitShape<typeof AuditEventSchema>, AuditEvent> & { zone: string };

/**
 * Where a verifier sends every decision. `record` must never wait for I/O:
 * it queues and returns false when it cannot take the event (queue full or
 * sink closed), and the verifier then refuses the call rather than leave the
 * decision unrecorded.
 */
export interface AuditSink {
  record(event: AuditEventInit): boolean;
}

/**
 * An audit sink that keeps events in memory, bounded; for tests and for
 * services that forward events themselves (`drain`).
 */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEventInit[] = [];
  readonly #capacity: number;

  constructor(capacity = 10_000) {
    this.#capacity = capacity;
  }

  record(event: AuditEventInit): boolean {
    if (this.events.length >= this.#capacity) return false;
    this.events.push(event);
    return true;
  }

  /** Takes every event recorded so far. */
  drain(): AuditEventInit[] {
    return this.events.splice(0);
  }
}
