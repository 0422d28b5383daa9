import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { KeyState, type ZoneKeySchema } from "../../gen/caracal/admin/v1/admin_pb.js";
import type { ListZoneKeysRequest, RotateZoneKeyRequest } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { effectiveState, listZoneKeys, rotateZoneKeys, type ZoneKeyRecord, type ZoneKeyState } from "../keys/zone-keys.js";
import { toProtoJwk } from "../sts/get-jwks.js";
import { changed, type AdminDeps } from "./admin-deps.js";
import { requireZone } from "../directory/require-zone.js";

// Mandates may be verified a little after expiry by a skewed clock; keep the
// retiring key published that much longer.
const RETIRE_MARGIN_SECONDS = 60;

const STATES: Record<ZoneKeyState, KeyState> = {
  next: KeyState.NEXT,
  current: KeyState.CURRENT,
  retiring: KeyState.RETIRING,
  retired: KeyState.RETIRED,
};

/** A zone key as the API shows it: public half only. */
export function zoneKeyMessage(zone: string, key: ZoneKeyRecord, now: number): MessageInitShape<typeof ZoneKeySchema> {
  const at = (date: Date | null) => (date ? { [0]: timestampFromDate(date) }[0] : undefined);
  return {
    zone,
    keyId: key.kid,
    algorithm: key.algorithm,
    state: STATES[effectiveState(key, now)],
    publicKey: toProtoJwk(key.publicJwk),
    createdAt: at(key.createdAt),
    activatedAt: at(key.activatedAt),
    deactivatedAt: at(key.deactivatedAt),
    retireAt: at(key.retireAt),
  };
}

/** `RotateZoneKey`: the published next key starts signing; the old one retires after its mandates expire. */
export async function rotateZoneKey(deps: AdminDeps, request: RotateZoneKeyRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const lifetime = Math.max(zone.maxSessionTtlSeconds, zone.maxResourceTtlSeconds) + RETIRE_MARGIN_SECONDS;
  const now = deps.now();
  const rotation = await deps.store.transaction((tx) => rotateZoneKeys(tx, deps.kek, zone.id, lifetime, new Date(now)));
  deps.keys.invalidate(zone.slug);
  changed(deps, ctx, { zone: zone.slug, action: "zone key rotated", attributes: { kid: rotation.current.kid, previous_kid: rotation.previous.kid } });
  return {
    current: zoneKeyMessage(zone.slug, rotation.current, now),
    previous: zoneKeyMessage(zone.slug, rotation.previous, now),
    next: zoneKeyMessage(zone.slug, rotation.next, now),
  };
}

/** `ListZoneKeys`. */
export async function listZoneKeysOf(deps: AdminDeps, request: ListZoneKeysRequest) {
  const zone = await requireZone(deps.store, request.zone);
  const now = deps.now();
  const keys = await listZoneKeys(deps.store, zone.id, request.includeRetired);
  return { keys: keys.filter((key) => request.includeRetired || effectiveState(key, now) !== "retired").map((key) => zoneKeyMessage(zone.slug, key, now)) };
}
