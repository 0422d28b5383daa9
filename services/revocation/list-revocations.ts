import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListRevocationsRequest, ListRevocationsResponseSchema } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { requireZone } from "../directory/require-zone.js";
import { pageSize, timeIdPageToken } from "../validation.js";
import type { RevocationDeps } from "./revocation-deps.js";
import { listRevocationRows, revocationMessage } from "./revocation-rows.js";

/** `RevocationService.ListRevocations`: the zone's revocations still in force, newest first. */
export async function listRevocations(
  deps: RevocationDeps,
  request: ListRevocationsRequest,
): Promise<MessageInitShape<typeof ListRevocationsResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const after = timeIdPageToken.decode(request.pageToken);
  const rows = await listRevocationRows(deps.store, zone.id, new Date(deps.now()), after, limit + 1);
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    revocations: page.map(revocationMessage),
    nextPageToken: rows.length > limit && last ? timeIdPageToken.encode(last.created_at, last.revocation_id) : "",
  };
}
