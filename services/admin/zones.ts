import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { ADMIN_ZONE } from "../bootstrap.js";
import type { ZoneSchema } from "../../gen/caracal/admin/v1/admin_pb.js";
import type { CreateZoneRequest, DeleteZoneRequest, GetZoneRequest, ListZonesRequest } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { insertZone, listZones, type ZoneRecord } from "../directory/zones.js";
import { createInitialKeys } from "../keys/zone-keys.js";
import { boundedText, durationSeconds, invalidArgument, pageSize, pageToken, zoneSlug } from "../validation.js";
import { changed, type AdminDeps } from "./admin-deps.js";
import { requireZone } from "../directory/require-zone.js";

/** A zone as the API shows it. */
export function zoneMessage(zone: ZoneRecord): MessageInitShape<typeof ZoneSchema> {
  return {
    zone: zone.slug,
    displayName: zone.displayName,
    maxSessionTtl: { seconds: BigInt(zone.maxSessionTtlSeconds) },
    createdAt: timestampFromDate(zone.createdAt),
  };
}

/** `CreateZone`: the zone and its first two keys (current and next), in one transaction. */
export async function createZone(deps: AdminDeps, request: CreateZoneRequest, ctx: HandlerContext) {
  const slug = zoneSlug(request.zone);
  const displayName = boundedText(request.displayName, "display_name", 200);
  const maxSessionTtlSeconds = durationSeconds(request.maxSessionTtl, "max_session_ttl", 24 * 3_600);
  const zone = await deps.store.transaction(async (tx) => {
    const created = await insertZone(tx, { slug, displayName, maxSessionTtlSeconds });
    await createInitialKeys(tx, deps.kek, created.id, new Date(deps.now()));
    return created;
  });
  changed(deps, ctx, { zone: slug, action: "zone created" });
  return { zone: zoneMessage(zone) };
}

/** `GetZone`. */
export async function getZone(deps: AdminDeps, request: GetZoneRequest) {
  return { zone: zoneMessage(await requireZone(deps.store, request.zone)) };
}

/** `ListZones`, by slug. */
export async function listZonesPage(deps: AdminDeps, request: ListZonesRequest) {
  const limit = pageSize(request.pageSize);
  const zones = await listZones(deps.store, pageToken.decode(request.pageToken), limit + 1);
  const page = zones.slice(0, limit);
  return {
    zones: page.map(zoneMessage),
    nextPageToken: zones.length > limit ? pageToken.encode(page.at(-1)!.slug) : "",
  };
}

/**
 * `DeleteZone`: removes a zone and everything that belongs to it, in one
 * statement (the schema cascades from `zones`). Its audit records stay in
 * the ledger, which is keyed by slug. The admin zone holds Caracal's own
 * admin plane and is never deleted.
 */
export async function deleteZone(deps: AdminDeps, request: DeleteZoneRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  if (request.confirm !== zone.slug) throw invalidArgument("confirm", "must repeat the zone's slug");
  if (zone.slug === ADMIN_ZONE) throw caracalError(Code.FailedPrecondition, Reason.INVALID_ARGUMENT, "the admin zone cannot be deleted", { metadata: { field: "zone" } });
  await deps.store.query("DELETE FROM zones WHERE id = $1", [zone.id]);
  changed(deps, ctx, { zone: zone.slug, action: "zone deleted" });
  return {};
}
