import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListRevocationsRequest, ListRevocationsResponseSchema } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { requireZone } from "../directory/require-zone.js";
import { invalidArgument, pageSize, pageToken } from "../validation.js";
import type { RevocationDeps } from "./revocation-deps.js";
import { listRevocationRows, revocationMessage } from "./revocation-rows.js";

/** `RevocationService.ListRevocations`: the zone's revocations still in force, newest first. */
export async function listRevocations(
  deps: RevocationDeps,
  request: ListRevocationsRequest,
): Promise<MessageInitShape<typeof ListRevocationsResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const cursor = pageToken.decode(request.pageToken);
  let after: { createdAt: Date; id: string } | undefined;
  if (cursor !== undefined) {
    const [at, id] = cursor.split("|");
    const createdAt = new Date(at ?? "");
    if (Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id ?? "")) throw invalidArgument("page_token", "is not a token this server issued");
    after = { createdAt, id: id! };
  }
  const rows = await listRevocationRows(deps.store, zone.id, new Date(deps.now()), after, limit + 1);
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    revocations: page.map(revocationMessage),
    nextPageToken: rows.length > limit && last ? pageToken.encode(`${last.created_at.toISOString()}|${last.revocation_id}`) : "",
  };
}
