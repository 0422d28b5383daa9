import { Code } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import type { Queryable } from "../store/store.js";
import { zoneSlug } from "../validation.js";
import { findZone, type ZoneRecord } from "./zones.js";

/** The zone named by a request, or NOT_FOUND. Every admin lookup starts here, so nothing crosses zones. */
export async function requireZone(db: Queryable, slug: string): Promise<ZoneRecord> {
  const zone = await findZone(db, zoneSlug(slug));
  if (!zone) throw caracalError(Code.NotFound, Reason.ZONE_NOT_FOUND, `zone ${slug} does not exist`);
  return zone;
}

/** NOT_FOUND for a named object of a zone. */
export function notFound(what: string, reason: Reason = Reason.NOT_FOUND) {
  return caracalError(Code.NotFound, reason, `${what} does not exist`);
}
