import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { StartSessionRequest, StartSessionResponseSchema } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { issuerForZone, MAX_MANDATE_BYTES, stsAudienceForZone } from "../../interceptors/mandate-claims.js";
import { applicationRevoked } from "../revocation/revocation-rows.js";
import { durationSeconds, identifier, invalidArgument, labels, zoneSlug } from "../validation.js";
import { authenticateClient, type ClientCredential } from "./client-authenticator.js";
import { START_SESSION_ACTION, START_SESSION_RESOURCE } from "../policy/policy-engine.js";
import { consultPolicy } from "./consult-policy.js";
import { Decision } from "./decision.js";
import { mandateInfo } from "./mandate-info.js";
import { signMandate, type IssuedClaims } from "./mandate-signer.js";
import type { StsDeps } from "./sts-deps.js";

/** A session lasts an hour unless asked for less or capped lower by the zone. */
const DEFAULT_SESSION_TTL_SECONDS = 3_600;

/**
 * `TokenService.StartSession`: an application credential becomes a session
 * mandate, good only for `Exchange`. Writes nothing but, for client
 * assertions, the single-use `jti`.
 */
export async function startSession(
  deps: StsDeps,
  request: StartSessionRequest,
  ctx: HandlerContext,
): Promise<MessageInitShape<typeof StartSessionResponseSchema>> {
  const slug = zoneSlug(request.zone);
  const clientId = identifier(request.clientId, "client_id");
  const credential = credentialOf(request);
  const requestedTtl = durationSeconds(request.ttl, "ttl", 24 * 3_600);
  const sessionLabels = labels(request.labels);

  const zone = await deps.directory.zone(slug);
  // A zone that does not exist has no ledger: the refusal is logged, not filed under a made-up zone.
  const decision = new Decision(deps.audit, ctx, { zone: zone ? slug : "", type: EventType.START_SESSION, clientId, subject: clientId });
  if (!zone) throw decision.refuse(Code.NotFound, Reason.ZONE_NOT_FOUND, `zone ${slug} does not exist`);
  const app = await authenticateClient(deps, zone, clientId, credential, decision);
  // Asked of the store, not the bus-fed view: StartSession is not the hot
  // path, and the store is the record the view is built from.
  if (await applicationRevoked(deps.store, zone.id, clientId, new Date(deps.now()))) {
    throw decision.refuse(Code.Unauthenticated, Reason.MANDATE_REVOKED, `application ${clientId} is revoked`);
  }

  const nowMs = deps.now();
  const sid = randomUUID();
  const policySetVersion = await consultPolicy(
    deps,
    zone,
    [
      {
        clientId: app.clientId,
        applicationLabels: app.labels,
        resource: START_SESSION_RESOURCE,
        scope: START_SESSION_ACTION,
        session: { sessionId: sid, ageSeconds: 0, labels: sessionLabels },
        delegationChain: [],
        timeMs: nowMs,
        approvalState: "unspecified",
        approvalKind: "",
      },
    ],
    decision,
  );

  const now = Math.floor(nowMs / 1000);
  const claims: IssuedClaims = {
    iss: issuerForZone(slug),
    sub: app.clientId,
    aud: [stsAudienceForZone(slug)],
    iat: now,
    nbf: now,
    exp: now + Math.min(requestedTtl ?? DEFAULT_SESSION_TTL_SECONDS, zone.maxSessionTtlSeconds),
    jti: randomUUID(),
    zone: slug,
    use: "session",
    client_id: app.clientId,
    sid,
    root_sid: sid,
    scope: "",
    target: [],
    policy_set_version: policySetVersion,
    ...(Object.keys(sessionLabels).length > 0 ? { labels: sessionLabels } : {}),
  };
  const signingKey = await deps.keys.signingKey(slug);
  const token = signMandate(claims, signingKey);
  decision.allow({ sessionId: sid, rootSessionId: sid, mandateId: claims.jti });
  return { sessionMandate: token, info: mandateInfo(claims, signingKey.kid), decisionId: decision.id };
}

function credentialOf(request: StartSessionRequest): ClientCredential {
  const { credential } = request;
  switch (credential.case) {
    case "clientSecret":
      if (credential.value === "") throw invalidArgument("client_secret", "is required");
      if (credential.value.length > 256) throw invalidArgument("client_secret", "is too long");
      return { kind: "secret", secret: credential.value };
    case "clientAssertion":
      if (credential.value === "") throw invalidArgument("client_assertion", "is required");
      if (credential.value.length > MAX_MANDATE_BYTES) throw invalidArgument("client_assertion", `is larger than ${MAX_MANDATE_BYTES} bytes`);
      return { kind: "assertion", assertion: credential.value };
    default:
      throw invalidArgument("credential", "give client_secret or client_assertion");
  }
}
