import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { ExportRequest, ExportResponseSchema, TailRequest, TailResponseSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { invalidArgument, zoneSlug } from "../validation.js";
import type { AuditDeps } from "./audit-deps.js";
import { decodeEvent, filterSql, RECORD_COLUMNS, recordMessage, type AuditRow } from "./audit-rows.js";
import { LEDGER_PROVIDER, siemLine } from "./siem-line.js";

const PAGE = 500;

/**
 * `AuditService.Tail`: records matching the filter as they are stored, from
 * now on, until the caller or the server goes away. Polls the ledger by
 * sequence, so it shows what was stored, in chain order.
 */
export async function* tail(deps: AuditDeps, request: TailRequest, ctx: HandlerContext): AsyncGenerator<MessageInitShape<typeof TailResponseSchema>> {
  const { where, params, zone } = filterSql(request.filter);
  const signal = AbortSignal.any([ctx.signal, deps.draining]);
  let after = await headOf(deps, zone);
  while (!signal.aborted) {
    const head = await headOf(deps, zone);
    if (head > after) {
      const { rows } = await deps.store.query<AuditRow>(
        `SELECT ${RECORD_COLUMNS} FROM audit_events WHERE ${where} AND seq > $${params.length + 1} AND seq <= $${params.length + 2} ORDER BY seq`,
        [...params, after, head],
      );
      for (const row of rows) yield { record: recordMessage(row) };
      after = head;
    }
    await pause(deps.pollMs ?? 200, signal);
  }
}

/**
 * `AuditService.Export`: the zone's records in chain order after a cursor, as
 * SIEM lines, each with the cursor to resume after it; with `follow`, keeps
 * streaming as records are stored. The cursor is the chain sequence, so a
 * consumer that resumes from the last cursor it wrote gets neither a gap nor
 * a duplicate.
 */
export async function* exportRecords(
  deps: AuditDeps,
  request: ExportRequest,
  ctx: HandlerContext,
): AsyncGenerator<MessageInitShape<typeof ExportResponseSchema>> {
  const zone = zoneSlug(request.zone);
  if (request.cursor !== "" && !/^\d{1,18}$/.test(request.cursor)) throw invalidArgument("cursor", "is not a cursor this server issued");
  let after = request.cursor === "" ? 0 : Number(request.cursor);
  const signal = AbortSignal.any([ctx.signal, deps.draining]);
  while (!signal.aborted) {
    const { rows } = await deps.store.query<AuditRow>(
      `SELECT ${RECORD_COLUMNS} FROM audit_events WHERE zone = $1 AND seq > $2 ORDER BY seq LIMIT ${PAGE}`,
      [zone, after],
    );
    for (const row of rows) {
      const origin = { zone, sequence: BigInt(row.seq), provider: LEDGER_PROVIDER, hash: Buffer.from(row.hmac).toString("hex") };
      yield { jsonLine: siemLine(decodeEvent(row), origin), cursor: row.seq };
      after = Number(row.seq);
    }
    if (rows.length === PAGE) continue;
    if (!request.follow) return;
    await pause(deps.pollMs ?? 200, signal);
  }
}

async function headOf(deps: AuditDeps, zone: string): Promise<number> {
  const { rows } = await deps.store.query<{ seq: string }>("SELECT seq FROM audit_chain_heads WHERE zone = $1", [zone]);
  return Number(rows[0]?.seq ?? 0);
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
