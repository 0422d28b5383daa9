import type { MessageInitShape } from "@bufbuild/protobuf";
import type { QueryRequest, QueryResponseSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { invalidArgument, pageToken } from "../validation.js";
import type { AuditDeps } from "./audit-deps.js";
import { filterSql, RECORD_COLUMNS, recordMessage, type AuditRow } from "./audit-rows.js";

/** `AuditService.Query`: records matching a filter, newest first, a page at a time. */
export async function query(deps: AuditDeps, request: QueryRequest): Promise<MessageInitShape<typeof QueryResponseSchema>> {
  const { where, params } = filterSql(request.filter);
  if (request.pageSize < 0) throw invalidArgument("page_size", "must not be negative");
  const limit = request.pageSize === 0 ? 100 : Math.min(request.pageSize, 1_000);
  let clause = where;
  const cursor = pageToken.decode(request.pageToken);
  if (cursor !== undefined) {
    // The last record's time in microseconds and its sequence: the page after it.
    // Negative before 1970: the ledger keeps times back to year 1.
    const match = /^(-?\d{1,17})\|(\d{1,18})$/.exec(cursor);
    if (!match) throw invalidArgument("page_token", "is not a token this server issued");
    params.push(match[1], match[2]);
    clause += ` AND (time, seq) < ('epoch'::timestamptz + $${params.length - 1}::bigint * interval '1 microsecond', $${params.length}::bigint)`;
  }
  params.push(limit + 1);
  const { rows } = await deps.store.query<AuditRow & { time_us: string }>(
    `SELECT ${RECORD_COLUMNS}, (extract(epoch FROM time) * 1000000)::bigint AS time_us FROM audit_events
     WHERE ${clause} ORDER BY time DESC, seq DESC LIMIT $${params.length}`,
    params,
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    records: page.map((row) => recordMessage(row)),
    nextPageToken: rows.length > limit && last ? pageToken.encode(`${last.time_us}|${last.seq}`) : "",
  };
}
