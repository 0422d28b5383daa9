import { SignJWT } from "jose";
import { MANDATE_TYPE, type MandateClaims } from "../../interceptors/mandate-claims.js";
import type { SigningKey } from "../keys/zone-key-ring.js";

/** Claims a mandate carries beyond the standard set (session labels ride on session mandates). */
export type IssuedClaims = MandateClaims & { readonly labels?: Readonly<Record<string, string>> };

/** Signs mandate claims into a compact JWS with the zone's current key, `kid` and explicit `typ`. */
export async function signMandate(claims: IssuedClaims, signingKey: SigningKey): Promise<string> {
  return new SignJWT({ ...claims, aud: typeof claims.aud === "string" ? claims.aud : [...claims.aud] })
    .setProtectedHeader({ alg: signingKey.alg, typ: MANDATE_TYPE, kid: signingKey.kid })
    .sign(signingKey.key);
}
