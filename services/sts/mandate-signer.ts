import { sign } from "node:crypto";
import { MANDATE_TYPE, type MandateClaims } from "../../interceptors/mandate-claims.js";
import type { SigningKey } from "../keys/zone-key-ring.js";

/** Claims a mandate carries beyond the standard set (session labels ride on session mandates). */
export type IssuedClaims = MandateClaims & { readonly labels?: Readonly<Record<string, string>> };

// ES256 is ECDSA P-256 with SHA-256; a JWS carries the signature as r‖s
// (IEEE P1363), not DER (RFC 7518 §3.4).
const DIGESTS: Readonly<Record<string, string>> = { ES256: "sha256" };

/**
 * Signs mandate claims into a JWS compact token with the zone's current key,
 * its `kid` and the explicit mandate `typ`.
 *
 * Signing is written here rather than with jose's `SignJWT`, on purpose and
 * only for signing: jose 6 signs through WebCrypto, whose per-call overhead
 * was the largest single cost of `Exchange` in the bench/exchange profile,
 * while node:crypto signs the same bytes synchronously. Every verification,
 * here and at the edges, stays with jose; the tests verify what this signs
 * with jose.
 */
export function signMandate(claims: IssuedClaims, signingKey: SigningKey): string {
  const digest = DIGESTS[signingKey.alg];
  if (digest === undefined) throw new TypeError(`cannot sign with ${signingKey.alg}`);
  const header = { alg: signingKey.alg, typ: MANDATE_TYPE, kid: signingKey.kid };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = sign(digest, Buffer.from(input, "ascii"), { key: signingKey.key, dsaEncoding: "ieee-p1363" });
  return `${input}.${signature.toString("base64url")}`;
}

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}
