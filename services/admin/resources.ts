import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { ResourceSchema, ScopeDefinition } from "../../gen/caracal/admin/v1/admin_pb.js";
import type {
  AddResourceScopesRequest,
  CreateResourceRequest,
  GetResourceRequest,
  ListResourcesRequest,
} from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { addScopes, findResource, insertResource, listResources, type ResourceRecord, type ScopeRecord } from "../directory/resources.js";
import { boundedText, identifier, pageSize, pageToken, scopeList } from "../validation.js";
import { changed, type AdminDeps } from "./admin-deps.js";
import { notFound, requireZone } from "../directory/require-zone.js";

/** A resource as the API shows it. */
export function resourceMessage(zone: string, resource: ResourceRecord): MessageInitShape<typeof ResourceSchema> {
  return {
    zone,
    resourceId: resource.resourceId,
    displayName: resource.displayName,
    scopes: resource.scopes.map((scope) => ({ name: scope.name, description: scope.description })),
    createdAt: timestampFromDate(resource.createdAt),
  };
}

function scopeDefinitions(scopes: readonly ScopeDefinition[], field: string): ScopeRecord[] {
  const names = scopeList(
    scopes.map((scope) => scope.name),
    field,
    256,
  );
  return names.map((name) => ({
    name,
    description: boundedText(scopes.find((scope) => scope.name === name)!.description, `${field}.description`, 500),
  }));
}

async function requireResource(deps: AdminDeps, zoneId: string, resourceId: string): Promise<ResourceRecord> {
  const resource = await findResource(deps.store, zoneId, resourceId);
  if (!resource) throw notFound(`resource ${resourceId}`, Reason.RESOURCE_NOT_FOUND);
  return resource;
}

/** `CreateResource`. */
export async function createResource(deps: AdminDeps, request: CreateResourceRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const resourceId = identifier(request.resourceId, "resource_id");
  const displayName = boundedText(request.displayName, "display_name", 200);
  const scopes = scopeDefinitions(request.scopes, "scopes");
  await deps.store.transaction((tx) => insertResource(tx, zone.id, { resourceId, displayName, scopes }));
  changed(deps, ctx, { zone: zone.slug, action: "resource created", resources: [resourceId], scopes: scopes.map((s) => s.name) });
  return { resource: resourceMessage(zone.slug, await requireResource(deps, zone.id, resourceId)) };
}

/** `GetResource`. */
export async function getResource(deps: AdminDeps, request: GetResourceRequest) {
  const zone = await requireZone(deps.store, request.zone);
  return { resource: resourceMessage(zone.slug, await requireResource(deps, zone.id, identifier(request.resourceId, "resource_id"))) };
}

/** `ListResources`, by id. */
export async function listResourcesPage(deps: AdminDeps, request: ListResourcesRequest) {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const resources = await listResources(deps.store, zone.id, pageToken.decode(request.pageToken), limit + 1);
  const page = resources.slice(0, limit);
  return {
    resources: page.map((resource) => resourceMessage(zone.slug, resource)),
    nextPageToken: resources.length > limit ? pageToken.encode(page.at(-1)!.resourceId) : "",
  };
}

/** `AddResourceScopes`. */
export async function addResourceScopes(deps: AdminDeps, request: AddResourceScopesRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const resourceId = identifier(request.resourceId, "resource_id");
  const scopes = scopeDefinitions(request.scopes, "scopes");
  await requireResource(deps, zone.id, resourceId);
  await addScopes(deps.store, zone.id, resourceId, scopes);
  changed(deps, ctx, { zone: zone.slug, action: "resource scopes added", resources: [resourceId], scopes: scopes.map((s) => s.name) });
  return { resource: resourceMessage(zone.slug, await requireResource(deps, zone.id, resourceId)) };
}
