import type { ServiceImpl } from "@connectrpc/connect";
import type { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import type { AdminDeps } from "./admin-deps.js";
import {
  addApplicationKey,
  createApplication,
  disableApplication,
  getApplication,
  listApplicationsPage,
  removeApplicationKey,
  rotateApplicationSecret,
} from "./applications.js";
import { decide, getApproval, listApprovalsPage } from "./approvals.js";
import { createGrant, listGrantsPage, removeGrant } from "./grants.js";
import { addResourceScopes, createResource, getResource, listResourcesPage } from "./resources.js";
import { listZoneKeysOf, rotateZoneKey } from "./zone-keys.js";
import { createZone, deleteZone, getZone, listZonesPage } from "./zones.js";

/**
 * `caracal.admin.v1.AdminService`. Every method's required scope is declared in
 * the proto and enforced by the mandate interceptor before a handler runs.
 */
export function createAdminService(deps: AdminDeps): Partial<ServiceImpl<typeof AdminService>> {
  return {
    createZone: (request, ctx) => createZone(deps, request, ctx),
    getZone: (request) => getZone(deps, request),
    listZones: (request) => listZonesPage(deps, request),
    deleteZone: (request, ctx) => deleteZone(deps, request, ctx),
    createApplication: (request, ctx) => createApplication(deps, request, ctx),
    getApplication: (request) => getApplication(deps, request),
    listApplications: (request) => listApplicationsPage(deps, request),
    disableApplication: (request, ctx) => disableApplication(deps, request, ctx),
    rotateApplicationSecret: (request, ctx) => rotateApplicationSecret(deps, request, ctx),
    addApplicationKey: (request, ctx) => addApplicationKey(deps, request, ctx),
    removeApplicationKey: (request, ctx) => removeApplicationKey(deps, request, ctx),
    createResource: (request, ctx) => createResource(deps, request, ctx),
    getResource: (request) => getResource(deps, request),
    listResources: (request) => listResourcesPage(deps, request),
    addResourceScopes: (request, ctx) => addResourceScopes(deps, request, ctx),
    createGrant: (request, ctx) => createGrant(deps, request, ctx),
    listGrants: (request) => listGrantsPage(deps, request),
    deleteGrant: (request, ctx) => removeGrant(deps, request, ctx),
    rotateZoneKey: (request, ctx) => rotateZoneKey(deps, request, ctx),
    listZoneKeys: (request) => listZoneKeysOf(deps, request),
    listApprovals: (request) => listApprovalsPage(deps, request),
    getApproval: (request) => getApproval(deps, request),
    approve: (request, ctx) => decide(deps, request, ctx, true),
    reject: (request, ctx) => decide(deps, request, ctx, false),
  };
}
