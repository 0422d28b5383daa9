import type { MandateClaims } from "../../interceptors/mandate-claims.js";

/** 2030-01-01T12:00:00Z, the moment fixture claims are issued. */
export const CLAIMS_ISSUED_AT_MS = Date.UTC(2030, 0, 1, 12);

/** Well-formed resource-mandate claims of zone `acme`, issued at {@link CLAIMS_ISSUED_AT_MS}, for revocation tests. */
export function fixtureClaims(overrides: Partial<MandateClaims> = {}): MandateClaims {
  const iat = CLAIMS_ISSUED_AT_MS / 1000;
  return {
    iss: "urn:caracal:zone:acme",
    sub: "agent-billing",
    aud: ["billing-api"],
    exp: iat + 300,
    iat,
    nbf: iat,
    jti: "mandate-1",
    zone: "acme",
    use: "resource",
    client_id: "agent-billing",
    sid: "sess-1",
    root_sid: "sess-root",
    scope: "invoices.read",
    target: ["billing-api"],
    policy_set_version: 3,
    ...overrides,
  };
}
