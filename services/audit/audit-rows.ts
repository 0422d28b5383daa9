import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AuditEventSchema, type AuditEvent } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { AuditFilter, AuditRecordSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { identifier, invalidArgument, zoneSlug } from "../validation.js";
import { ledgerUuid } from "./ledger-columns.js";
import { publishedPayload, type IdColumns } from "./stored-payload.js";

/** A ledger row as the queries read it. */
export interface AuditRow extends IdColumns {
  zone: string;
  seq: string;
  payload: Buffer;
  slim: boolean;
  prev_hash: Buffer;
  hmac: Buffer;
  [column: string]: unknown;
}

/** The columns every record query selects: enough to restore the published event. */
export const RECORD_COLUMNS =
  "zone, seq, event_id, request_id, decision_id, client_id, session_id, root_session_id, mandate_id, approval_id, resources, payload, slim, prev_hash, hmac";

/** A stored event with its place in the chain. */
export function recordMessage(row: AuditRow, event: AuditEvent = decodeEvent(row)): MessageInitShape<typeof AuditRecordSchema> {
  return {
    event,
    sequence: BigInt(row.seq),
    hash: Buffer.from(row.hmac).toString("hex"),
    previousHash: Buffer.from(row.prev_hash).toString("hex"),
  };
}

/** The event a row holds, as its producer published it. */
export function decodeEvent(row: AuditRow): AuditEvent {
  return fromBinary(AuditEventSchema, publishedPayload(row));
}

/**
 * A filter as SQL: the WHERE clause over `audit_events` and its parameters,
 * numbered from `$1`. `zone` is required; unset fields match everything.
 */
export function filterSql(filter: AuditFilter | undefined, field = "filter"): { where: string; params: unknown[]; zone: string } {
  if (!filter) throw invalidArgument(field, "is required");
  const zone = zoneSlug(filter.zone, `${field}.zone`);
  const params: unknown[] = [zone];
  const clauses = ["zone = $1"];
  const add = (clause: (n: string) => string, value: unknown) => {
    params.push(value);
    clauses.push(clause(`$${params.length}`));
  };
  if (filter.startTime) add((n) => `time >= ${n}`, timestampDate(filter.startTime));
  if (filter.endTime) add((n) => `time < ${n}`, timestampDate(filter.endTime));
  if (filter.clientId !== "") add((n) => `client_id = ${n}`, identifier(filter.clientId, `${field}.client_id`));
  if (filter.sessionId !== "") {
    // A root session is stored only where it differs from the session itself.
    add((n) => `(session_id = ${n}::uuid OR root_session_id = ${n}::uuid)`, ledgerUuid(bounded(filter.sessionId, `${field}.session_id`)));
  }
  if (filter.decision !== 0) add((n) => `decision = ${n}`, filter.decision);
  if (filter.types.length > 0) add((n) => `type = ANY(${n}::smallint[])`, filter.types);
  if (filter.resource !== "") add((n) => `${n} = ANY(resources)`, identifier(filter.resource, `${field}.resource`));
  if (filter.requestId !== "") add((n) => `request_id = ${n}`, bounded(filter.requestId, `${field}.request_id`));
  if (filter.decisionId !== "") add((n) => `decision_id = ${n}::uuid`, ledgerUuid(bounded(filter.decisionId, `${field}.decision_id`)));
  return { where: clauses.join(" AND "), params, zone };
}

function bounded(value: string, field: string): string {
  if (value.length > 128) throw invalidArgument(field, "at most 128 characters");
  return value;
}
