import { decodeProtectedHeader, errors, jwtVerify, type CryptoKey, type KeyObject } from "jose";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import {
  issuerForZone,
  MANDATE_ALGORITHMS,
  MANDATE_TYPE,
  MAX_MANDATE_BYTES,
  scopesOf,
  stsAudienceForZone,
  ZONE_PATTERN,
  type MandateClaims,
  type MandateUse,
} from "./mandate-claims.js";
import { MandateError } from "./mandate-error.js";

/** A public key a verifier may check a mandate signature with. */
export interface VerificationKey {
  /** The key. */
  readonly key: CryptoKey | KeyObject;
  /** The one algorithm it is used with. */
  readonly alg: string;
  /** True when the key is past its grace period: its mandates are refused. */
  readonly retired?: boolean;
}

/**
 * Finds the key a zone published under `kid`, or undefined when there is
 * none. Throws a {@link MandateError} with `REASON_KEYS_UNAVAILABLE` when it
 * cannot know (it never obtained the zone's keys): the verifier then refuses.
 */
export type MandateKeyResolver = (zone: string, kid: string) => VerificationKey | undefined | Promise<VerificationKey | undefined>;

/** What a mandate must be to pass. */
export interface VerifyMandateOptions {
  /** Where keys come from. */
  readonly keys: MandateKeyResolver;
  /** The use required here: `session` at the STS, `resource` at an edge. */
  readonly use: MandateUse;
  /** For resource mandates: this service's resource id, which `aud` and `target` must contain. */
  readonly resource?: string;
  /** Scopes the mandate must carry, every one. */
  readonly scopes?: readonly string[];
  /** Zones accepted here; any zone when unset. */
  readonly allowedZones?: readonly string[];
  /** The clock, in milliseconds since the epoch. Injected so tests can freeze it. */
  readonly now?: () => number;
  /** Leeway for `exp`, `nbf` and `iat`, in seconds (default 5). */
  readonly clockToleranceSeconds?: number;
  /** Size limit in bytes (default 8 KiB). */
  readonly maxTokenBytes?: number;
  /** Longest lifetime (`exp - iat`) accepted, in seconds (default 24 h). */
  readonly maxLifetimeSeconds?: number;
}

// Header members that point at keys or certificates elsewhere. Honouring one
// would let the token choose its own verification key, so their mere
// presence refuses the token.
const FORBIDDEN_HEADERS = ["jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256"] as const;
// A kid is looked up, logged and audited; only plain tokens are worth a lookup.
const KID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const CLAIM_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Verifies a mandate and returns its claims, or throws a {@link MandateError}
 * naming the first reason it fails. Transport-free: the Connect and grpc-js
 * adapters, and the STS itself, all call this.
 *
 * Checks, in order: size; header (pinned algorithm, explicit `typ`, no
 * key-pointing headers, no `crit`, a plain `kid`); zone allowed; key known and
 * not retired; signature; issuer of the zone; `exp`, `nbf`, `iat`; claim shapes;
 * `use`; resource in `aud` and `target`; required scopes.
 *
 * @example
 * const claims = await verifyMandate(token, {
 *   keys: jwks.resolve,
 *   use: "resource",
 *   resource: "billing-api",
 *   scopes: ["invoices.read"],
 * });
 */
export async function verifyMandate(token: string, options: VerifyMandateOptions): Promise<MandateClaims> {
  checkOptions(options);
  const maxBytes = options.maxTokenBytes ?? MAX_MANDATE_BYTES;
  if (token.length > maxBytes || Buffer.byteLength(token, "utf8") > maxBytes) {
    throw new MandateError(Reason.MANDATE_TOO_LARGE, `mandate is larger than ${maxBytes} bytes`);
  }
  // The signature part may be empty here, so that an unsecured `alg: none`
  // token is refused for its algorithm, by name, a few lines below.
  const parts = token.split(".");
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[0]!) || !/^[A-Za-z0-9_-]+$/.test(parts[1]!) || !/^[A-Za-z0-9_-]*$/.test(parts[2]!)) {
    throw new MandateError(Reason.MANDATE_MALFORMED, "mandate is not a compact JWS");
  }
  const header = decodeHeader(token);
  if (typeof header.alg !== "string" || !MANDATE_ALGORITHMS.includes(header.alg)) {
    throw new MandateError(Reason.MANDATE_ALGORITHM_REJECTED, `algorithm ${JSON.stringify(header.alg)} is not accepted`);
  }
  if (header.typ !== MANDATE_TYPE) {
    throw new MandateError(Reason.MANDATE_TYPE_REJECTED, `typ ${JSON.stringify(header.typ)} is not ${MANDATE_TYPE}`);
  }
  const forbidden = FORBIDDEN_HEADERS.find((name) => name in header);
  if (forbidden) throw new MandateError(Reason.MANDATE_HEADER_REJECTED, `header ${forbidden} is never honoured`);
  if ("crit" in header) throw new MandateError(Reason.MANDATE_HEADER_REJECTED, "no crit extension is understood");
  if (typeof header.kid !== "string" || !KID_PATTERN.test(header.kid)) {
    throw new MandateError(Reason.MANDATE_UNKNOWN_KEY, "kid is missing or not a plain key id");
  }

  const zone = unverifiedZone(parts[1]!);
  if (options.allowedZones && !options.allowedZones.includes(zone)) {
    throw new MandateError(Reason.WRONG_ZONE, `zone ${zone} is not accepted here`);
  }
  const key = await options.keys(zone, header.kid);
  if (!key) throw new MandateError(Reason.MANDATE_UNKNOWN_KEY, `zone ${zone} has no published key ${header.kid}`);
  if (key.retired) throw new MandateError(Reason.MANDATE_KEY_RETIRED, `key ${header.kid} is retired`);
  if (key.alg !== header.alg) {
    throw new MandateError(Reason.MANDATE_ALGORITHM_REJECTED, `key ${header.kid} is for ${key.alg}, not ${header.alg}`);
  }

  const nowMs = options.now?.() ?? Date.now();
  const tolerance = options.clockToleranceSeconds ?? 5;
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key.key, {
      algorithms: [key.alg],
      typ: MANDATE_TYPE,
      issuer: issuerForZone(zone),
      currentDate: new Date(nowMs),
      clockTolerance: tolerance,
      requiredClaims: ["exp", "iat", "nbf", "jti", "sub"],
    }));
  } catch (error) {
    throw joseFailure(error);
  }
  const claims = checkShape(payload, zone);
  if (claims.iat > nowMs / 1000 + tolerance) {
    throw new MandateError(Reason.MANDATE_NOT_YET_VALID, "mandate was issued in the future");
  }
  const maxLifetime = options.maxLifetimeSeconds ?? 24 * 3_600;
  if (claims.exp - claims.iat > maxLifetime) {
    throw new MandateError(Reason.MANDATE_MALFORMED, `mandate lifetime exceeds ${maxLifetime} s`);
  }

  try {
    checkAuthority(claims, options);
  } catch (error) {
    throw error instanceof MandateError ? error.withClaims(claims) : error;
  }
  return claims;
}

/**
 * The checks that depend on where and how a mandate is used rather than on
 * the token itself: zone allowed, `use`, resource in `aud` and `target`,
 * required scopes. `verifyMandate` ends with them; a verifier holding claims
 * it verified earlier (a cache hit) runs them again for each call.
 */
export function checkAuthority(
  claims: MandateClaims,
  options: Pick<VerifyMandateOptions, "use" | "resource" | "scopes" | "allowedZones">,
): void {
  if (options.allowedZones && !options.allowedZones.includes(claims.zone)) {
    throw new MandateError(Reason.WRONG_ZONE, `zone ${claims.zone} is not accepted here`);
  }
  if (claims.use !== options.use) {
    throw new MandateError(Reason.MANDATE_WRONG_USE, `a ${claims.use} mandate is not accepted where a ${options.use} mandate is required`);
  }
  const audiences = typeof claims.aud === "string" ? [claims.aud] : claims.aud;
  if (options.use === "resource") {
    const resource = options.resource!;
    if (!claims.target.includes(resource) || !audiences.includes(resource)) {
      throw new MandateError(Reason.WRONG_AUDIENCE, `mandate is not for resource ${resource}`, { resource });
    }
  } else if (!audiences.includes(stsAudienceForZone(claims.zone))) {
    throw new MandateError(Reason.WRONG_AUDIENCE, "session mandate is not addressed to this zone's STS");
  }
  if (options.scopes && options.scopes.length > 0) {
    const held = new Set(scopesOf(claims));
    const missing = options.scopes.find((scope) => !held.has(scope));
    if (missing !== undefined) throw new MandateError(Reason.SCOPE_MISSING, `scope ${missing} not in mandate`, { scope: missing });
  }
}

/** Misuse by the caller is a TypeError, never a refusal blamed on the token. */
function checkOptions(options: VerifyMandateOptions): void {
  if (options.use === "resource" && (typeof options.resource !== "string" || options.resource === "")) {
    throw new TypeError("verifyMandate: a resource edge must name its resource");
  }
  if (options.use === "session" && options.resource !== undefined) {
    throw new TypeError("verifyMandate: session mandates are not checked against a resource");
  }
  const tolerance = options.clockToleranceSeconds ?? 5;
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new TypeError("verifyMandate: clockToleranceSeconds must be a non-negative number");
}

function decodeHeader(token: string): Record<string, unknown> {
  try {
    return decodeProtectedHeader(token) as Record<string, unknown>;
  } catch (error) {
    throw new MandateError(Reason.MANDATE_MALFORMED, "mandate header is not valid JSON", {}, { cause: error });
  }
}

/** The zone the token claims, read before the signature is checked only to pick the key set. */
function unverifiedZone(encodedPayload: string): string {
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(encodedPayload, "base64url").toString("utf8"));
  } catch (error) {
    throw new MandateError(Reason.MANDATE_MALFORMED, "mandate claims are not valid JSON", {}, { cause: error });
  }
  const zone = (payload as { zone?: unknown } | null)?.zone;
  if (typeof zone !== "string" || !ZONE_PATTERN.test(zone)) {
    throw new MandateError(Reason.MANDATE_MALFORMED, "mandate names no valid zone");
  }
  return zone;
}

function joseFailure(error: unknown): MandateError {
  if (error instanceof errors.JWTExpired) return new MandateError(Reason.MANDATE_EXPIRED, "mandate has expired", {}, { cause: error });
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new MandateError(Reason.MANDATE_BAD_SIGNATURE, "mandate signature does not verify", {}, { cause: error });
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return new MandateError(Reason.MANDATE_ALGORITHM_REJECTED, "algorithm not accepted", {}, { cause: error });
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "iss":
        return new MandateError(Reason.MANDATE_WRONG_ISSUER, "mandate is from another issuer", {}, { cause: error });
      case "nbf":
      case "iat":
        // jose also reports a missing or non-numeric nbf/iat here: that is a shape problem, not timing.
        return error.reason === "check_failed"
          ? new MandateError(Reason.MANDATE_NOT_YET_VALID, "mandate is not valid yet", {}, { cause: error })
          : new MandateError(Reason.MANDATE_MALFORMED, `mandate claim ${error.claim} is missing or malformed`, {}, { cause: error });
      case "typ":
        return new MandateError(Reason.MANDATE_TYPE_REJECTED, "wrong typ", {}, { cause: error });
    }
  }
  if (error instanceof errors.JOSEError) return new MandateError(Reason.MANDATE_MALFORMED, "mandate is malformed", {}, { cause: error });
  // Anything else (a key of the wrong type from the resolver, say) is the
  // verifier's fault, not the token's: let it surface as an internal error.
  throw error;
}

function checkShape(payload: Record<string, unknown>, zone: string): MandateClaims {
  const fail = (what: string) => new MandateError(Reason.MANDATE_MALFORMED, `mandate claim ${what} is missing or malformed`);
  const id = (name: string) => {
    const value = payload[name];
    if (typeof value !== "string" || !CLAIM_ID_PATTERN.test(value)) throw fail(name);
    return value;
  };
  if (payload.zone !== zone) throw fail("zone");
  // JSON numbers such as 1e400 parse to Infinity; a NumericDate must be a real, whole second.
  for (const name of ["exp", "iat", "nbf"] as const) {
    if (!Number.isSafeInteger(payload[name]) || (payload[name] as number) < 0) throw fail(name);
  }
  if (payload.use !== "session" && payload.use !== "resource") throw fail("use");
  id("jti");
  id("sub");
  id("client_id");
  id("sid");
  id("root_sid");
  if (typeof payload.scope !== "string") throw fail("scope");
  const target = payload.target;
  if (!Array.isArray(target) || !target.every((entry) => typeof entry === "string")) throw fail("target");
  const aud = payload.aud;
  if (typeof aud !== "string" && !(Array.isArray(aud) && aud.every((entry) => typeof entry === "string"))) throw fail("aud");
  if (!Number.isSafeInteger(payload.policy_set_version) || (payload.policy_set_version as number) < 0) {
    throw fail("policy_set_version");
  }
  if (payload.act !== undefined && !isActor(payload.act, 0)) throw fail("act");
  const labels = payload.labels;
  if (labels !== undefined && (labels === null || typeof labels !== "object" || Array.isArray(labels) || !Object.values(labels).every((v) => typeof v === "string"))) {
    throw fail("labels");
  }
  return payload as unknown as MandateClaims;
}

// Real chains are a few hops; the bound only stops a crafted deep nest.
const MAX_ACT_DEPTH = 16;

function isActor(value: unknown, depth: number): boolean {
  if (depth >= MAX_ACT_DEPTH || typeof value !== "object" || value === null) return false;
  const actor = value as Record<string, unknown>;
  const id = (value: unknown) => typeof value === "string" && CLAIM_ID_PATTERN.test(value);
  return id(actor.sub) && id(actor.client_id) && id(actor.sid) && (actor.act === undefined || isActor(actor.act, depth + 1));
}
