import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { AuditEventSchema } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { ChainBreakKind, type VerifyChainRequest, type VerifyChainResponseSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { invalidArgument, zoneSlug } from "../validation.js";
import type { AuditDeps } from "./audit-deps.js";
import { GENESIS, rowHmac } from "./audit-ledger.js";
import { eventKey, eventMicros, filterColumns } from "./ledger-columns.js";
import type { AuditRow } from "./audit-rows.js";
import { publishedPayload } from "./stored-payload.js";

const PAGE = 5_000;

interface ChainRow extends AuditRow {
  time_us: string;
  type: number;
  decision: number;
}

type Break = MessageInitShape<typeof VerifyChainResponseSchema>["firstBreak"];

/**
 * `AuditService.VerifyChain`: walks the zone's chain over a range, in
 * sequence order, and reports the first break. A missing sequence is a
 * deleted row; a row whose previous-hash is not the HMAC of the row before it
 * is out of place (reordered, or inserted); a row whose HMAC does not cover
 * its content, or whose filter columns disagree with its payload, was edited.
 * Rows cut from the end are found against the zone's chain head.
 */
export async function verifyChain(deps: AuditDeps, request: VerifyChainRequest): Promise<MessageInitShape<typeof VerifyChainResponseSchema>> {
  const zone = zoneSlug(request.zone);
  if (request.fromSequence < 0n || request.toSequence < 0n) throw invalidArgument("from_sequence", "sequences are 1 or more (0: from the start, to the end)");
  const { rows: heads } = await deps.store.query<{ seq: string }>("SELECT seq FROM audit_chain_heads WHERE zone = $1", [zone]);
  const headSeq = Number(heads[0]?.seq ?? 0);
  const from = Math.max(1, Number(request.fromSequence));
  // Past the head there is nothing to check (rows cut from the end are found against the head).
  const to = request.toSequence === 0n ? headSeq : Math.min(Number(request.toSequence), headSeq);
  if (to < from) return { intact: true, rowsChecked: 0n };

  let prev = GENESIS;
  if (from > 1) {
    const { rows } = await deps.store.query<{ hmac: Buffer }>("SELECT hmac FROM audit_events WHERE zone = $1 AND seq = $2", [zone, from - 1]);
    if (!rows[0]) return broken(0, from - 1, ChainBreakKind.DELETED, `row ${from - 1}, before the range, is missing`);
    prev = Buffer.from(rows[0].hmac);
  }
  let expected = from;
  let checked = 0;
  while (expected <= to) {
    const { rows } = await deps.store.query<ChainRow>(
      `SELECT seq, event_id, (extract(epoch FROM time) * 1000000)::bigint AS time_us, type, decision, request_id, decision_id,
              client_id, session_id, root_session_id, resources, mandate_id, approval_id, payload, slim, prev_hash, hmac, zone
       FROM audit_events WHERE zone = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT ${PAGE}`,
      [zone, expected, to],
    );
    if (rows.length === 0) break;
    for (const row of rows) {
      const seq = Number(row.seq);
      if (seq !== expected) return broken(checked, expected, ChainBreakKind.DELETED, `row ${expected} is missing`);
      const prevHash = Buffer.from(row.prev_hash);
      if (!prevHash.equals(prev)) {
        return broken(checked, seq, ChainBreakKind.REORDERED, `row ${seq} does not follow row ${seq - 1}: its previous-hash is not that row's HMAC`);
      }
      // Over the published bytes: a slim row restores them from its id columns, so editing those breaks the HMAC too.
      const published = publishedOrEmpty(row);
      if (!Buffer.from(row.hmac).equals(rowHmac(deps.auditKey, prevHash, zone, seq, published))) {
        return broken(checked, seq, ChainBreakKind.EDITED, `row ${seq} was changed: its HMAC does not cover its content`);
      }
      const mismatch = columnMismatch(row, published);
      if (mismatch) return broken(checked, seq, ChainBreakKind.EDITED, `row ${seq} was changed: column ${mismatch} does not match the signed payload`);
      prev = Buffer.from(row.hmac);
      expected++;
      checked++;
    }
  }
  if (expected <= to) return broken(checked, expected, ChainBreakKind.DELETED, `row ${expected} is missing (the chain ends at ${to})`);
  return { intact: true, rowsChecked: BigInt(checked) };
}

function broken(checked: number, sequence: number, kind: ChainBreakKind, detail: string): MessageInitShape<typeof VerifyChainResponseSchema> {
  const firstBreak: Break = { sequence: BigInt(sequence), kind, detail };
  return { intact: false, rowsChecked: BigInt(checked), firstBreak };
}

/** The first filter column that disagrees with the published payload, or undefined. */
function columnMismatch(row: ChainRow, published: Uint8Array): string | undefined {
  let event;
  try {
    event = fromBinary(AuditEventSchema, published);
  } catch {
    return "payload";
  }
  if (row.event_id !== eventKey(event.eventId, published)) return "event_id";
  if (BigInt(row.time_us) !== eventMicros(event)) return "time";
  const expected = filterColumns(event);
  for (const [column, value] of Object.entries(expected)) {
    if (JSON.stringify(row[column]) !== JSON.stringify(value)) return column;
  }
  return undefined;
}

/** The published bytes, or nothing when a slim payload no longer decodes (then the HMAC fails: edited). */
function publishedOrEmpty(row: ChainRow): Uint8Array {
  try {
    return publishedPayload(row);
  } catch {
    return new Uint8Array();
  }
}
