import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { GrantSchema } from "../../gen/caracal/admin/v1/admin_pb.js";
import type { CreateGrantRequest, DeleteGrantRequest, ListGrantsRequest } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { findApplication } from "../directory/applications.js";
import { deleteGrant, insertGrant, listGrants, type GrantRecord } from "../directory/grants.js";
import { findResource } from "../directory/resources.js";
import { identifier, invalidArgument, pageSize, pageToken, scopeList } from "../validation.js";
import { changed, type AdminDeps } from "./admin-deps.js";
import { notFound, requireZone } from "../directory/require-zone.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A grant as the API shows it. */
export function grantMessage(zone: string, grant: GrantRecord): MessageInitShape<typeof GrantSchema> {
  return {
    zone,
    grantId: grant.grantId,
    clientId: grant.clientId,
    resourceId: grant.resourceId,
    scopes: [...grant.scopes],
    createdAt: timestampFromDate(grant.createdAt),
  };
}

function grantId(value: string, field = "grant_id"): string {
  if (!UUID.test(value)) throw invalidArgument(field, "is not a grant id");
  return value;
}

/** `CreateGrant`: application, resource and every scope must exist in the zone; checked and written in one transaction. */
export async function createGrant(deps: AdminDeps, request: CreateGrantRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const clientId = identifier(request.clientId, "client_id");
  const resourceId = identifier(request.resourceId, "resource_id");
  const scopes = scopeList(request.scopes, "scopes");
  const grant = await deps.store.transaction(async (tx) => {
    if (!(await findApplication(tx, zone.id, clientId))) throw notFound(`application ${clientId}`, Reason.APPLICATION_NOT_FOUND);
    const resource = await findResource(tx, zone.id, resourceId);
    if (!resource) throw notFound(`resource ${resourceId}`, Reason.RESOURCE_NOT_FOUND);
    const unknown = scopes.find((scope) => !resource.scopes.some((offered) => offered.name === scope));
    if (unknown !== undefined) throw invalidArgument("scopes", `resource ${resourceId} offers no scope ${unknown}`);
    return insertGrant(tx, { zoneId: zone.id, clientId, resourceId, scopes });
  });
  changed(deps, ctx, { zone: zone.slug, action: "grant created", clientId, resources: [resourceId], scopes, attributes: { grant_id: grant.grantId } });
  return { grant: grantMessage(zone.slug, grant) };
}

/** `ListGrants`, optionally for one application or resource. */
export async function listGrantsPage(deps: AdminDeps, request: ListGrantsRequest) {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const after = pageToken.decode(request.pageToken);
  const grants = await listGrants(deps.store, zone.id, {
    clientId: request.clientId === "" ? undefined : identifier(request.clientId, "client_id"),
    resourceId: request.resourceId === "" ? undefined : identifier(request.resourceId, "resource_id"),
    afterGrantId: after === undefined ? undefined : grantId(after, "page_token"),
    limit: limit + 1,
  });
  const page = grants.slice(0, limit);
  return {
    grants: page.map((grant) => grantMessage(zone.slug, grant)),
    nextPageToken: grants.length > limit ? pageToken.encode(page.at(-1)!.grantId) : "",
  };
}

/** `DeleteGrant`. */
export async function removeGrant(deps: AdminDeps, request: DeleteGrantRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const id = grantId(request.grantId);
  if (!(await deleteGrant(deps.store, zone.id, id))) throw notFound(`grant ${id}`);
  changed(deps, ctx, { zone: zone.slug, action: "grant deleted", attributes: { grant_id: id } });
  return {};
}
