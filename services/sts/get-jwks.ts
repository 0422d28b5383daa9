import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { JWK } from "jose";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { JwkSchema } from "../../gen/caracal/mandate/v1/mandate_pb.js";
import type { GetJwksRequest, GetJwksResponseSchema } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { issuerForZone } from "../../interceptors/mandate-claims.js";
import { zoneSlug } from "../validation.js";
import type { StsDeps } from "./sts-deps.js";

/**
 * How long verifiers may cache a JWKS. Short, because a rotation promotes the
 * published next key; verifiers also refetch when they meet an unknown kid.
 */
export const JWKS_MAX_AGE_SECONDS = 60;

/** The zone's published keys as a JWK Set document (`/.well-known/jwks.json`). */
export async function zoneJwks(deps: Pick<StsDeps, "directory" | "keys">, slug: string): Promise<{ keys: JWK[] } | undefined> {
  if (!(await deps.directory.zone(slug))) return undefined;
  return { keys: await deps.keys.publishedKeys(slug) };
}

/** `TokenService.GetJwks`. */
export async function getJwks(
  deps: StsDeps,
  request: GetJwksRequest,
): Promise<MessageInitShape<typeof GetJwksResponseSchema>> {
  const slug = zoneSlug(request.zone);
  const jwks = await zoneJwks(deps, slug);
  if (!jwks) throw caracalError(Code.NotFound, Reason.ZONE_NOT_FOUND, `zone ${slug} does not exist`);
  return { keys: jwks.keys.map(toProtoJwk), maxAge: { seconds: BigInt(JWKS_MAX_AGE_SECONDS) }, issuer: issuerForZone(slug) };
}

/** A public JWK as the protobuf `Jwk` message. */
export function toProtoJwk(jwk: JWK): MessageInitShape<typeof JwkSchema> {
  return {
    kty: jwk.kty ?? "",
    kid: jwk.kid ?? "",
    use: jwk.use ?? "",
    alg: jwk.alg ?? "",
    crv: jwk.crv ?? "",
    x: jwk.x ?? "",
    y: jwk.y ?? "",
    n: jwk.n ?? "",
    e: jwk.e ?? "",
  };
}
