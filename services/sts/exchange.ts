import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { ExchangeRequest, ExchangeResponseSchema } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { issuerForZone, ZONE_PATTERN, type ActorClaim, type MandateClaims } from "../../interceptors/mandate-claims.js";
import { MandateError } from "../../interceptors/mandate-error.js";
import { verifyMandate } from "../../interceptors/verify-mandate.js";
import type { ZoneRecord } from "../directory/zones.js";
import { durationSeconds, identifier, invalidArgument, scopeList } from "../validation.js";
import type { ApplicationRecord } from "../directory/applications.js";
import type { AuthorizationRequestInput, SessionInput } from "../policy/policy-engine.js";
import { spendApproval, type ApprovalRecord } from "../approval/approval-rows.js";
import { checkApprovalProof, raiseApproval, type ApprovalBinding } from "../approval/step-up.js";
import { consultPolicy } from "./consult-policy.js";
import { Decision } from "./decision.js";
import { actorsOf } from "../../interceptors/delegation-chain.js";
import { mandateInfo } from "./mandate-info.js";
import { signMandate } from "./mandate-signer.js";
import type { StsDeps } from "./sts-deps.js";

const DEFAULT_RESOURCE_TTL_SECONDS = 900;
const MAX_RESOURCES = 16;

/**
 * `TokenService.Exchange` (RFC 8693 over gRPC): a session mandate, and
 * optionally an actor's, become a resource mandate whose `aud` and `target`
 * are exactly the requested resources and whose scopes are within the grants.
 * The hot path reads only cached keys and directory entries and writes
 * nothing: the audit event is queued, not awaited.
 */
export async function exchange(
  deps: StsDeps,
  request: ExchangeRequest,
  ctx: HandlerContext,
): Promise<MessageInitShape<typeof ExchangeResponseSchema>> {
  if (request.subjectToken === "") throw invalidArgument("subject_token", "is required");
  if (request.resources.length === 0) throw invalidArgument("resources", "name at least one resource");
  if (request.resources.length > MAX_RESOURCES) throw invalidArgument("resources", `at most ${MAX_RESOURCES}`);
  const resources = [...new Set(request.resources.map((resource) => identifier(resource, "resources")))];
  const scopes = scopeList(request.scopes, "scopes");
  const requestedTtl = durationSeconds(request.ttl, "ttl", 24 * 3_600);
  if (request.approval !== undefined && !/^[0-9a-f-]{36}$/.test(request.approval.challengeId)) {
    throw invalidArgument("approval.challenge_id", "is not a challenge id");
  }

  // Until the subject token is verified, a refusal is filed under the zone it
  // claims: attempts against a zone belong in that zone's ledger.
  const known = deps.verifiedSessions.get(request.subjectToken, deps.now());
  const claimedZone = known?.zone ?? (await existingZone(deps, claimedZoneOf(request.subjectToken)));
  const decision = new Decision(deps.audit, ctx, { zone: claimedZone, type: EventType.EXCHANGE, resources, scopes });
  const subject = known ?? (await verifySession(deps, request.subjectToken, decision));
  decision.note({
    zone: subject.zone,
    clientId: subject.client_id,
    subject: subject.sub,
    sessionId: subject.sid,
    rootSessionId: subject.root_sid,
  });
  refuseRevoked(deps, subject, decision);
  const zone = await deps.directory.zone(subject.zone);
  if (!zone) throw decision.refuse(Code.Unauthenticated, Reason.MANDATE_WRONG_ISSUER, `zone ${subject.zone} no longer exists`);
  const app = await requireActive(deps, zone, subject.client_id, decision);

  let act: ActorClaim | undefined;
  if (request.actorToken !== "") {
    const actor = await verifySession(deps, request.actorToken, decision);
    refuseRevoked(deps, actor, decision);
    if (actor.zone !== subject.zone) {
      throw decision.refuse(Code.PermissionDenied, Reason.WRONG_ZONE, "actor token is from another zone");
    }
    await requireActive(deps, zone, actor.client_id, decision);
    act = { sub: actor.sub, client_id: actor.client_id, sid: actor.sid, ...(subject.act ? { act: subject.act } : {}) };
    const hops = actorsOf(act).length;
    if (hops > zone.maxDelegationHops) {
      throw decision.refuse(Code.PermissionDenied, Reason.DELEGATION_TOO_DEEP, `delegation chain of ${hops} exceeds ${zone.maxDelegationHops}`);
    }
    decision.note({ delegationChain: actorsOf(act) });
    // Delegation never widens authority: the actor needs the grants too.
    await requireGranted(deps, zone, actor.client_id, resources, scopes, decision);
  }
  await requireGranted(deps, zone, subject.client_id, resources, scopes, decision);

  const nowMs = deps.now();
  const now = Math.floor(nowMs / 1000);
  const session: SessionInput = { sessionId: subject.sid, ageSeconds: Math.max(0, now - subject.iat), labels: subject.labels ?? {} };
  const chain = act ? actorsOf(act).map((actor) => actor.clientId ?? "") : [];
  const binding = async (): Promise<ApprovalBinding> => ({
    clientId: subject.client_id,
    sessionId: subject.sid,
    resources,
    scopes,
    policySetVersion: (await deps.policies.active(zone)).version,
  });
  let approval: ApprovalRecord | undefined;
  if (request.approval) {
    const checked = await checkApprovalProof(deps, zone.id, request.approval, await binding(), nowMs);
    decision.note({ approvalId: request.approval.challengeId });
    if (!("approvalId" in checked)) throw decision.refuse(checked.code, checked.reason, checked.message);
    approval = checked;
  }
  const questions = resources.flatMap((resource) =>
    scopes.map((scope): AuthorizationRequestInput => ({
      clientId: subject.client_id,
      applicationLabels: app.labels,
      resource,
      scope,
      session,
      delegationChain: chain,
      timeMs: nowMs,
      approvalState: approval ? "approved" : "unspecified",
      approvalKind: approval?.stepUpKind ?? "",
    })),
  );
  const policySetVersion = await consultPolicy(deps, zone, questions, decision, {
    // A held request raises an approval, unless this was the redemption of one.
    ...(approval ? {} : { raise: async (held, version) => raiseApproval(deps, zone.id, { ...(await binding()), policySetVersion: version }, held, nowMs) }),
  });
  // Spent only now that policy allowed it, and only once however many redeem it at the same time.
  if (approval && !(await spendApproval(deps.store, zone.id, approval.approvalId, new Date(nowMs)))) {
    throw decision.refuse(Code.FailedPrecondition, Reason.APPROVAL_ALREADY_USED, "the approval was already redeemed; approvals are single-use");
  }

  const lifetime = Math.min(requestedTtl ?? DEFAULT_RESOURCE_TTL_SECONDS, zone.maxResourceTtlSeconds, subject.exp - now);
  // Within the clock tolerance a session can verify yet have no time left to lend.
  if (lifetime <= 0) throw decision.refuse(Code.Unauthenticated, Reason.MANDATE_EXPIRED, "session mandate has expired");
  const claims: MandateClaims = {
    iss: issuerForZone(zone.slug),
    sub: subject.sub,
    aud: resources,
    iat: now,
    nbf: now,
    exp: now + lifetime,
    jti: randomUUID(),
    zone: zone.slug,
    use: "resource",
    client_id: subject.client_id,
    sid: subject.sid,
    root_sid: subject.root_sid,
    scope: scopes.join(" "),
    target: resources,
    policy_set_version: policySetVersion,
    ...(act ? { act } : {}),
  };
  const signingKey = await deps.keys.signingKey(zone.slug);
  const token = signMandate(claims, signingKey);
  decision.allow({ mandateId: claims.jti });
  return { mandate: token, info: mandateInfo(claims, signingKey.kid), decisionId: decision.id };
}

/** The slug when that zone exists, else "": refusals are never filed under a zone a stranger made up. */
async function existingZone(deps: StsDeps, slug: string): Promise<string> {
  return slug !== "" && (await deps.directory.zone(slug)) ? slug : "";
}

function claimedZoneOf(token: string): string {
  try {
    const zone: unknown = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")).zone;
    return typeof zone === "string" && ZONE_PATTERN.test(zone) ? zone : "";
  } catch {
    return "";
  }
}

/**
 * Refuses a revoked session (by its jti, session, root session, application
 * or zone cut-off), and refuses everything when the revocation view cannot
 * show it is current: the STS fails closed like every verifier.
 */
function refuseRevoked(deps: StsDeps, claims: MandateClaims, decision: Decision): void {
  try {
    // Wall-clock time: staleness is how long since the view heard from the
    // stream, whatever clock the request is judged by.
    deps.revocations.assertFresh(Date.now());
  } catch (error) {
    if (error instanceof MandateError) throw decision.refuse(error.code, error.reason, error.message);
    throw error;
  }
  if (deps.revocations.isRevoked(claims)) throw decision.refuse(Code.Unauthenticated, Reason.MANDATE_REVOKED, "session mandate was revoked");
}

/**
 * Verifies a session mandate and remembers it: an agent presents the same
 * session mandate for every exchange, so its signature and claims are checked
 * once, then held until it expires.
 */
async function verifySession(deps: StsDeps, token: string, decision: Decision): Promise<MandateClaims> {
  const known = deps.verifiedSessions.get(token, deps.now());
  if (known) return known;
  try {
    const claims = await verifyMandate(token, { keys: deps.keys.resolve, use: "session", now: deps.now });
    deps.verifiedSessions.set(token, claims);
    return claims;
  } catch (error) {
    if (error instanceof MandateError) throw decision.refuse(error.code, error.reason, error.message, { ...error.metadata });
    throw error;
  }
}

async function requireActive(deps: StsDeps, zone: ZoneRecord, clientId: string, decision: Decision): Promise<ApplicationRecord> {
  const app = await deps.directory.application(zone.id, clientId);
  if (app?.state !== "active") {
    throw decision.refuse(Code.PermissionDenied, Reason.APPLICATION_DISABLED, `application ${clientId} is disabled`);
  }
  return app;
}

/**
 * Every requested scope must be granted on every requested resource: a
 * mandate carries one scope set for all its targets, so anything looser would
 * let a scope granted on one resource be used at another.
 */
async function requireGranted(
  deps: StsDeps,
  zone: ZoneRecord,
  clientId: string,
  resources: readonly string[],
  scopes: readonly string[],
  decision: Decision,
): Promise<void> {
  const granted = await deps.directory.grants(zone.id, clientId);
  for (const resource of resources) {
    const held = granted.get(resource);
    if (!held && !(await deps.directory.resource(zone.id, resource))) {
      throw decision.refuse(Code.NotFound, Reason.RESOURCE_NOT_FOUND, `resource ${resource} does not exist`, { resource });
    }
    const missing = scopes.find((scope) => !held?.has(scope));
    if (missing !== undefined) {
      throw decision.refuse(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED, `scope ${missing} is not granted to ${clientId} on ${resource}`, {
        resource,
        scope: missing,
      });
    }
  }
}
