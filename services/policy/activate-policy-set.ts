import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { PolicySetActivatedSchema } from "../../gen/caracal/policy/v1/policy_pb.js";
import type { ActivatePolicySetRequest, ActivatePolicySetResponseSchema } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { notFound, requireZone } from "../directory/require-zone.js";
import { requestContextKey } from "../server/request-context.js";
import { boundedText, invalidArgument } from "../validation.js";
import { ADMIN_RESOURCE, ADMIN_ZONE } from "../bootstrap.js";
import { findApplication } from "../directory/applications.js";
import type { ZoneRecord } from "../directory/zones.js";
import { START_SESSION_ACTION, START_SESSION_RESOURCE, type CompiledPolicySet } from "./policy-engine.js";
import { operatorOf, policyChanged, type PolicyDeps } from "./policy-deps.js";
import { versionNumber } from "./policy-messages.js";
import { activatePolicySetVersion, VersionConflictError } from "./policy-versions.js";

/**
 * `ActivatePolicySet`: makes a stored version the zone's active one, provided
 * the active version is still the one the caller expects (two operators
 * cannot race), records who and why, announces it on the bus so every STS
 * replica switches at once, and audits it. Rollback is activating an older
 * version.
 */
export async function activatePolicySet(
  deps: PolicyDeps,
  request: ActivatePolicySetRequest,
  ctx: HandlerContext,
): Promise<MessageInitShape<typeof ActivatePolicySetResponseSchema>> {
  const zone = await requireZone(deps.store, request.zone);
  const version = versionNumber(request.version, "version");
  const expected = versionNumber(request.expectedCurrentVersion, "expected_current_version", "none is active");
  if (request.reason.trim() === "") throw invalidArgument("reason", "is required");
  const reason = boundedText(request.reason, "reason", 500);

  // Refuse a version that would not run: the STS would deny everything with it.
  const compiled = await deps.policies.version(zone.id, version);
  if (compiled === undefined) throw notFound(`policy set version ${version} of zone ${zone.slug}`);
  if (compiled instanceof Error) {
    throw caracalError(Code.FailedPrecondition, Reason.POLICY_INVALID, `version ${version} no longer compiles: ${compiled.message}`);
  }

  const activatedAt = deps.now();
  const activatedBy = operatorOf(ctx);
  if (zone.slug === ADMIN_ZONE) await refuseLockout(deps, zone, activatedBy, compiled, activatedAt);
  let result;
  try {
    result = await activatePolicySetVersion(deps.store, zone.id, { version, expected, activatedBy, reason, activatedAt: new Date(activatedAt) });
  } catch (error) {
    if (error instanceof VersionConflictError) {
      throw caracalError(Code.Aborted, Reason.VERSION_CONFLICT, `${error.message}; read the active version and try again`, {
        metadata: { expected_current_version: String(error.expected), active_version: String(error.actual) },
      });
    }
    throw error;
  }
  if (!result) throw notFound(`policy set version ${version} of zone ${zone.slug}`);

  deps.policies.invalidate(zone.slug);
  const notice = create(PolicySetActivatedSchema, {
    zone: zone.slug,
    version: BigInt(version),
    previousVersion: BigInt(result.previousVersion),
    activatedAt: timestampFromMs(activatedAt),
  });
  // Committed either way: a replica that misses this notice polls the store within a second.
  await deps.bus.publish("policy", zone.slug, toBinary(PolicySetActivatedSchema, notice), randomUUID()).catch((error: unknown) => {
    ctx.values.get(requestContextKey)?.log.warn({ err: error }, "policy activation not announced on the bus; replicas will poll");
  });
  policyChanged(deps, ctx, {
    zone: zone.slug,
    action: "policy set activated",
    version,
    attributes: { version: String(version), previous_version: String(result.previousVersion), reason },
  });
  return { activeVersion: BigInt(version), previousVersion: BigInt(result.previousVersion) };
}

/**
 * Caracal's own admin plane lives in the admin zone, so a set activated there
 * decides who may administer Caracal. Refuses a version under which the
 * operator activating it could no longer start a session or obtain a
 * `policy.write` mandate: nobody could then activate the fix.
 */
async function refuseLockout(deps: PolicyDeps, zone: ZoneRecord, operator: string, set: CompiledPolicySet, nowMs: number): Promise<void> {
  const app = await findApplication(deps.store, zone.id, operator);
  const ask = (scope: string, resource: string) =>
    set.evaluate({
      clientId: operator,
      applicationLabels: app?.labels ?? {},
      resource,
      scope,
      session: { sessionId: "", ageSeconds: 0, labels: {} },
      delegationChain: [],
      timeMs: nowMs,
      approvalState: "unspecified",
      approvalKind: "",
    });
  for (const [scope, resource] of [
    [START_SESSION_ACTION, START_SESSION_RESOURCE],
    ["policy.write", ADMIN_RESOURCE],
  ] as const) {
    const outcome = ask(scope, resource);
    if (outcome.decision !== "allow") {
      throw caracalError(
        Code.FailedPrecondition,
        Reason.POLICY_DENIED,
        `this version would lock ${operator} out of the admin plane (${scope} on ${resource}: ${outcome.decision}); permit it first`,
        { metadata: { scope, resource } },
      );
    }
  }
}
