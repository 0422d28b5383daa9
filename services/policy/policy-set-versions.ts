import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { PolicySetVersionSchema } from "../../gen/caracal/policy/v1/policy_pb.js";
import type {
  CreatePolicySetVersionRequest,
  CreatePolicySetVersionResponseSchema,
  GetActivePolicySetRequest,
  GetActivePolicySetResponseSchema,
  GetPolicySetVersionRequest,
  GetPolicySetVersionResponseSchema,
  ListPolicySetVersionsRequest,
  ListPolicySetVersionsResponseSchema,
  ValidatePolicySetRequest,
  ValidatePolicySetResponseSchema,
} from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { notFound, requireZone } from "../directory/require-zone.js";
import { boundedText, invalidArgument, pageSize, pageToken } from "../validation.js";
import { operatorOf, policyChanged, type PolicyDeps } from "./policy-deps.js";
import { problemMessage, requireValid, sourceFromProto, versionNumber } from "./policy-messages.js";
import {
  createPolicySetVersion as storeVersion,
  findActivation,
  findPolicySetVersion,
  listPolicySetVersions as listVersions,
  type PolicySetVersionRecord,
} from "./policy-versions.js";

/** A stored version as the API shows it. */
export function versionMessage(zone: string, record: PolicySetVersionRecord): MessageInitShape<typeof PolicySetVersionSchema> {
  return {
    zone,
    version: BigInt(record.version),
    contentHash: record.contentHash,
    author: record.author,
    message: record.message,
    createdAt: timestampFromDate(record.createdAt),
    ...(record.source ? { source: { documents: record.source.documents.map((d) => ({ ...d })), schema: record.source.schema ?? "" } } : {}),
  };
}

/** `ValidatePolicySet`: every syntax and schema problem, with positions; stores nothing. */
export async function validatePolicySet(
  deps: PolicyDeps,
  request: ValidatePolicySetRequest,
): Promise<MessageInitShape<typeof ValidatePolicySetResponseSchema>> {
  await requireZone(deps.store, request.zone);
  const problems = deps.engine.validate(sourceFromProto(request.source));
  return { valid: problems.length === 0, problems: problems.map(problemMessage) };
}

/** `CreatePolicySetVersion`: stores a valid source as the zone's next version (not active yet). */
export async function createPolicySetVersion(
  deps: PolicyDeps,
  request: CreatePolicySetVersionRequest,
  ctx: HandlerContext,
): Promise<MessageInitShape<typeof CreatePolicySetVersionResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const source = sourceFromProto(request.source);
  const message = boundedText(request.message, "message", 1_000);
  requireValid(deps.engine, source);
  const record = await storeVersion(deps.store, zone.id, { source, author: operatorOf(ctx), message, createdAt: new Date(deps.now()) });
  policyChanged(deps, ctx, {
    zone: zone.slug,
    action: "policy set version created",
    version: record.version,
    attributes: { version: String(record.version), content_hash: record.contentHash },
  });
  return { version: versionMessage(zone.slug, record) };
}

/** `ListPolicySetVersions`: newest first, without sources. */
export async function listPolicySetVersions(
  deps: PolicyDeps,
  request: ListPolicySetVersionsRequest,
): Promise<MessageInitShape<typeof ListPolicySetVersionsResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const cursor = pageToken.decode(request.pageToken);
  const before = cursor === undefined ? undefined : Number(cursor);
  if (before !== undefined && !(Number.isSafeInteger(before) && before > 0)) throw invalidArgument("page_token", "is not a token this server issued");
  const rows = await listVersions(deps.store, zone.id, { limit: limit + 1, ...(before !== undefined ? { before } : {}) });
  const page = rows.slice(0, limit);
  const active = await findActivation(deps.store, zone.id);
  return {
    versions: page.map((r) => versionMessage(zone.slug, r)),
    nextPageToken: rows.length > limit ? pageToken.encode(String(page.at(-1)!.version)) : "",
    activeVersion: BigInt(active?.version ?? 0),
  };
}

/** `GetPolicySetVersion`: one stored version with its source; NOT_FOUND when the zone has none by that number. */
export async function getPolicySetVersion(
  deps: PolicyDeps,
  request: GetPolicySetVersionRequest,
): Promise<MessageInitShape<typeof GetPolicySetVersionResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const version = versionNumber(request.version, "version");
  const record = await findPolicySetVersion(deps.store, zone.id, version);
  if (!record) throw notFound(`policy set version ${version} of zone ${zone.slug}`);
  const active = await findActivation(deps.store, zone.id);
  return { version: versionMessage(zone.slug, record), active: active?.version === version };
}

/** `GetActivePolicySet`: the active version with its source, who activated it and why; empty when none is. */
export async function getActivePolicySet(
  deps: PolicyDeps,
  request: GetActivePolicySetRequest,
): Promise<MessageInitShape<typeof GetActivePolicySetResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const active = await findActivation(deps.store, zone.id);
  if (!active) return {};
  const record = await findPolicySetVersion(deps.store, zone.id, active.version);
  return {
    ...(record ? { version: versionMessage(zone.slug, record) } : {}),
    activatedAt: timestampFromDate(active.activatedAt),
    activatedBy: active.activatedBy,
    reason: active.reason,
  };
}
