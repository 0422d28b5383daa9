import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MandateInfoSchema, Use } from "../../gen/caracal/mandate/v1/mandate_pb.js";
import { actorsOf } from "../../interceptors/delegation-chain.js";
import { scopesOf, type MandateClaims } from "../../interceptors/mandate-claims.js";

/** The non-secret summary of a mandate's claims that responses and logs carry. */
export function mandateInfo(claims: MandateClaims, kid: string): MessageInitShape<typeof MandateInfoSchema> {
  return {
    mandateId: claims.jti,
    zone: claims.zone,
    use: claims.use === "session" ? Use.SESSION : Use.RESOURCE,
    issuer: claims.iss,
    subject: claims.sub,
    clientId: claims.client_id,
    sessionId: claims.sid,
    rootSessionId: claims.root_sid,
    audience: typeof claims.aud === "string" ? [claims.aud] : [...claims.aud],
    targets: [...claims.target],
    scopes: scopesOf(claims),
    delegationChain: actorsOf(claims.act),
    issuedAt: timestampFromMs(claims.iat * 1000),
    notBefore: timestampFromMs(claims.nbf * 1000),
    expiresAt: timestampFromMs(claims.exp * 1000),
    policySetVersion: BigInt(claims.policy_set_version),
    keyId: kid,
  };
}
