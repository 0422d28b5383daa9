import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { RevocationEventSchema, type Revocation } from "../../gen/caracal/revocation/v1/revocation_pb.js";
import type { WatchRequest, WatchResponseSchema } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { requireZone } from "../directory/require-zone.js";
import type { RevocationDeps } from "./revocation-deps.js";
import { listRevocationRows, revocationMessage, type RevocationRow } from "./revocation-rows.js";

type WatchResponse = MessageInitShape<typeof WatchResponseSchema>;

/** How often a watcher hears from the stream when nothing is revoked. */
const HEARTBEAT_MS = 1_000;

/**
 * `RevocationService.Watch`: every revocation in force (from the store, so
 * ones not yet relayed are included), `snapshot_complete`, then each new
 * revocation as it reaches the bus, with a heartbeat every second so a
 * watcher can prove its view is fresh. Live delivery starts before the
 * snapshot is read, so nothing falls between the two; ids already sent are
 * not sent again. Ends when the call or the server ends.
 */
export async function* watch(deps: RevocationDeps, request: WatchRequest, ctx: HandlerContext): AsyncGenerator<WatchResponse> {
  const zone = await requireZone(deps.store, request.zone);
  const arrived: Revocation[] = [];
  let wake = () => {};
  const subscription = await deps.bus.follow(
    "revocations",
    (message) => {
      const revocation = fromBinary(RevocationEventSchema, message.data).revocation;
      if (revocation) {
        arrived.push(revocation);
        wake();
      }
    },
    { zone: zone.slug },
  );
  const stop = AbortSignal.any([ctx.signal, deps.draining]);
  const onStop = () => wake();
  stop.addEventListener("abort", onStop);
  const sent = new Set<string>();
  try {
    const snapshot = await inForce(deps, zone.id);
    for (const row of snapshot) {
      sent.add(row.revocation_id);
      yield { event: { case: "revocation", value: revocationMessage(row) } };
    }
    yield { event: { case: "snapshotComplete", value: { count: snapshot.length } } };
    while (!stop.aborted) {
      if (arrived.length === 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, HEARTBEAT_MS).unref();
        });
      }
      for (const revocation of arrived.splice(0)) {
        if (sent.has(revocation.revocationId)) continue;
        sent.add(revocation.revocationId);
        yield { event: { case: "revocation", value: revocation } };
      }
      if (!stop.aborted) yield { event: { case: "heartbeat", value: { time: timestampFromMs(deps.now()) } } };
    }
  } finally {
    stop.removeEventListener("abort", onStop);
    await subscription.stop();
  }
}

async function inForce(deps: RevocationDeps, zoneId: string): Promise<RevocationRow[]> {
  const rows: RevocationRow[] = [];
  const now = new Date(deps.now());
  for (let after: RevocationRow | undefined; ; ) {
    const page = await listRevocationRows(deps.store, zoneId, now, after && { createdAt: after.created_at, id: after.revocation_id }, 500);
    rows.push(...page);
    if (page.length < 500) return rows;
    after = page.at(-1);
  }
}
