import { Code } from "@connectrpc/connect";
import { decodeProtectedHeader, errors, generateKeyPair, importJWK, jwtVerify, type CryptoKey } from "jose";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { stsAudienceForZone } from "../../interceptors/mandate-claims.js";
import { claimAssertionJti, type ApplicationRecord } from "../directory/applications.js";
import type { ZoneRecord } from "../directory/zones.js";
import type { Decision } from "./decision.js";
import type { StsDeps } from "./sts-deps.js";

/** A credential presented to `StartSession`. */
export type ClientCredential = { readonly kind: "secret"; readonly secret: string } | { readonly kind: "assertion"; readonly assertion: string };

/** Algorithms a registered client key may use. */
const ASSERTION_ALGORITHMS = ["ES256", "ES384", "EdDSA", "PS256", "RS256"];
/** Longest lifetime accepted for a client assertion (RFC 7523 asks for short ones). */
const MAX_ASSERTION_AGE_SECONDS = 300;

// Compared against when the application does not exist, so an unknown
// client id costs the same work as a wrong secret and answers alike.
const DUMMY_SECRET_HASH = Buffer.alloc(32);
let dummyAssertionKey: Promise<CryptoKey> | undefined;

/**
 * Authenticates an application to the STS. Unknown application and wrong
 * credential are one answer (UNAUTHENTICATED, REASON_INVALID_CLIENT) reached
 * by the same work, so a caller cannot tell which applications (or which
 * registered key ids) exist. Only a caller whose assertion signature checked
 * out hears more (expired, wrong audience, replayed, disabled), and a
 * single-use jti is spent only once everything else has passed.
 */
export async function authenticateClient(
  deps: StsDeps,
  zone: ZoneRecord,
  clientId: string,
  credential: ClientCredential,
  decision: Decision,
): Promise<ApplicationRecord> {
  const app = await deps.directory.application(zone.id, clientId);
  const assertion = credential.kind === "assertion" ? await verifyAssertion(deps, zone, clientId, app, credential.assertion, decision) : undefined;
  const authenticated = credential.kind === "secret" ? secretMatches(deps, app, credential.secret) : assertion !== undefined;
  if (!app || !authenticated) {
    throw decision.refuse(Code.Unauthenticated, Reason.INVALID_CLIENT, "unknown application or wrong credential");
  }
  if (app.state !== "active") {
    throw decision.refuse(Code.PermissionDenied, Reason.APPLICATION_DISABLED, `application ${clientId} is disabled`);
  }
  if (assertion) {
    const first = await claimAssertionJti(deps.store, zone.id, clientId, assertion.jti, assertion.expiresAt, new Date(deps.now()));
    if (!first) throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_REPLAYED, "client assertion was already used");
  }
  return app;
}

function secretMatches(deps: StsDeps, app: ApplicationRecord | undefined, secret: string): boolean {
  const now = deps.now();
  const hashes =
    app?.credentialKind === "client_secret"
      ? app.secrets.filter((s) => s.expiresAt === null || s.expiresAt.getTime() > now).map((s) => s.hash)
      : [DUMMY_SECRET_HASH];
  let matched = false;
  // Every stored hash is compared, so timing does not tell which one matched.
  for (const hash of hashes) matched = deps.kek.secretMatches(secret, hash) || matched;
  return matched && app !== undefined;
}

/**
 * Checks a `private_key_jwt` assertion (RFC 7523). Returns its jti and expiry
 * when it is good, undefined when the signature does not verify under a
 * registered key (or there is none), and refuses with
 * REASON_CLIENT_ASSERTION_INVALID when a properly signed assertion is
 * unacceptable (audience, expiry, lifetime).
 */
async function verifyAssertion(
  deps: StsDeps,
  zone: ZoneRecord,
  clientId: string,
  app: ApplicationRecord | undefined,
  assertion: string,
  decision: Decision,
): Promise<{ jti: string; expiresAt: Date } | undefined> {
  let header: { kid?: unknown };
  try {
    header = decodeProtectedHeader(assertion);
  } catch {
    throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, "client assertion is not a JWS");
  }
  const registered = app?.credentialKind === "private_key_jwt" ? app.keys.find((key) => key.kid === header.kid) : undefined;
  const alg = registered?.jwk.alg;
  const usable = registered !== undefined && typeof alg === "string" && ASSERTION_ALGORITHMS.includes(alg);
  // Without a usable registered key the assertion is checked against a
  // throwaway key anyway: the same work, and the same answer, as a bad signature.
  const key = usable ? await importJWK(registered.jwk, alg) : await dummyKey();
  const now = deps.now();
  let payload: { jti?: unknown; exp?: number; iat?: number };
  try {
    ({ payload } = await jwtVerify(assertion, key, {
      algorithms: usable ? [alg] : ["ES256"],
      issuer: clientId,
      subject: clientId,
      audience: stsAudienceForZone(zone.slug),
      currentDate: new Date(now),
      maxTokenAge: MAX_ASSERTION_AGE_SECONDS,
      clockTolerance: 5,
      requiredClaims: ["exp", "iat", "jti"],
    }));
  } catch (error) {
    if (!(error instanceof errors.JOSEError)) throw error;
    // Claim checks run only after the signature verified: the caller holds the key.
    const signed = error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTExpired;
    if (usable && signed) {
      throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, `client assertion refused: ${error.message}`);
    }
    return undefined;
  }
  if (!usable) return undefined;
  // RFC 7523 wants assertions short-lived: bound the whole lifetime, not only the age.
  if (payload.exp! - payload.iat! > MAX_ASSERTION_AGE_SECONDS) {
    throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, `client assertion may live at most ${MAX_ASSERTION_AGE_SECONDS} s`);
  }
  if (typeof payload.jti !== "string" || payload.jti === "" || payload.jti.length > 256) {
    throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, "client assertion jti is malformed");
  }
  return { jti: payload.jti, expiresAt: new Date(payload.exp! * 1000) };
}
function dummyKey(): Promise<CryptoKey> {
  dummyAssertionKey ??= generateKeyPair("ES256").then((pair) => pair.publicKey);
  return dummyAssertionKey;
}
