import { clone, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AuditEventSchema, type AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";

/** The id columns a ledger row keeps beside its payload (see `filterColumns`). */
export interface IdColumns {
  event_id: string;
  request_id: string | null;
  decision_id: string | null;
  client_id: string | null;
  session_id: string | null;
  root_session_id: string | null;
  mandate_id: string | null;
  approval_id: string | null;
  resources: string[] | null;
}

/**
 * The payload as the ledger stores it. The ids an event carries as text are
 * about half of its bytes, and the row already holds them in columns (as
 * 16-byte uuids), so the payload is stored without them whenever putting them
 * back gives the very bytes the producer published; otherwise it is stored
 * whole. Either way the row's HMAC covers the published bytes, so an edited id
 * column breaks the chain like an edited payload.
 */
export function storedPayload(published: Uint8Array, event: AuditEvent, columns: IdColumns): { bytes: Uint8Array; slim: boolean } {
  // Restoring sets the ids from the columns and encodes: that gives the
  // published bytes exactly when the columns hold the ids unchanged and the
  // producer's encoding is the canonical one (protobuf-es encodes a message
  // the same way every time, unknown fields included).
  const kept =
    columns.event_id === event.eventId &&
    (columns.request_id ?? "") === event.requestId &&
    (columns.decision_id ?? "") === event.decisionId &&
    (columns.client_id ?? "") === event.clientId &&
    (columns.session_id ?? "") === event.sessionId &&
    (columns.root_session_id ?? columns.session_id ?? "") === event.rootSessionId &&
    (columns.mandate_id ?? "") === event.mandateId &&
    (columns.approval_id ?? "") === event.approvalId &&
    sameList(columns.resources ?? [], event.resources);
  if (!kept || !equalBytes(toBinary(AuditEventSchema, event), published)) return { bytes: published, slim: false };
  return { bytes: toBinary(AuditEventSchema, withoutIds(event)), slim: true };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The bytes the producer published, from a stored row. */
export function publishedPayload(row: IdColumns & { payload: Uint8Array; slim: boolean }): Uint8Array {
  return row.slim ? restore(row.payload, row) : row.payload;
}

function withoutIds(event: AuditEvent): AuditEvent {
  const slim = clone(AuditEventSchema, event);
  slim.eventId = "";
  slim.requestId = "";
  slim.decisionId = "";
  slim.clientId = "";
  slim.sessionId = "";
  slim.rootSessionId = "";
  slim.mandateId = "";
  slim.approvalId = "";
  slim.resources = [];
  return slim;
}

function restore(slim: Uint8Array, c: IdColumns): Uint8Array {
  const event = fromBinary(AuditEventSchema, slim);
  event.eventId = c.event_id;
  event.requestId = c.request_id ?? "";
  event.decisionId = c.decision_id ?? "";
  event.clientId = c.client_id ?? "";
  event.sessionId = c.session_id ?? "";
  // Stored only where it differs from the session.
  event.rootSessionId = c.root_session_id ?? c.session_id ?? "";
  event.mandateId = c.mandate_id ?? "";
  event.approvalId = c.approval_id ?? "";
  event.resources = c.resources ?? [];
  return toBinary(AuditEventSchema, event);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
