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
 * by the same work, so a caller cannot tell which applications exist. A
 * disabled application is said to be so only after its credential checked out.
 */
export async function authenticateClient(
  deps: StsDeps,
  zone: ZoneRecord,
  clientId: string,
  credential: ClientCredential,
  decision: Decision,
): Promise<ApplicationRecord> {
  const app = await deps.directory.application(zone.id, clientId);
  const authenticated =
    credential.kind === "secret"
      ? secretMatches(deps, app, credential.secret)
      : await assertionVerifies(deps, zone, clientId, app, credential.assertion, decision);
  if (!app || !authenticated) {
    throw decision.refuse(Code.Unauthenticated, Reason.INVALID_CLIENT, "unknown application or wrong credential");
  }
  if (app.state !== "active") {
    throw decision.refuse(Code.PermissionDenied, Reason.APPLICATION_DISABLED, `application ${clientId} is disabled`);
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

async function assertionVerifies(
  deps: StsDeps,
  zone: ZoneRecord,
  clientId: string,
  app: ApplicationRecord | undefined,
  assertion: string,
  decision: Decision,
): Promise<boolean> {
  let header: { kid?: unknown; alg?: unknown };
  try {
    header = decodeProtectedHeader(assertion);
  } catch {
    throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, "client assertion is not a JWS");
  }
  const registered = app?.credentialKind === "private_key_jwt" ? app.keys.find((key) => key.kid === header.kid) : undefined;
  const alg = registered?.jwk.alg;
  if (registered && (typeof alg !== "string" || !ASSERTION_ALGORITHMS.includes(alg))) return false;
  const key = registered ? await importJWK(registered.jwk, alg) : await dummyKey();
  const now = deps.now();
  try {
    const { payload } = await jwtVerify(assertion, key, {
      algorithms: registered ? [alg!] : ["ES256"],
      issuer: clientId,
      subject: clientId,
      audience: stsAudienceForZone(zone.slug),
      currentDate: new Date(now),
      maxTokenAge: MAX_ASSERTION_AGE_SECONDS,
      clockTolerance: 5,
      requiredClaims: ["exp", "iat", "jti"],
    });
    if (!registered || !app) return false;
    if (typeof payload.jti !== "string" || payload.jti.length > 256) {
      throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, "client assertion jti is malformed");
    }
    const first = await claimAssertionJti(deps.store, zone.id, clientId, payload.jti, new Date(payload.exp! * 1000), new Date(now));
    if (!first) throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_REPLAYED, "client assertion was already used");
    return true;
  } catch (error) {
    if (!(error instanceof errors.JOSEError) || !registered) {
      if (error instanceof errors.JOSEError) return false;
      throw error;
    }
    throw decision.refuse(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID, `client assertion refused: ${error.code}`);
  }
}

function dummyKey(): Promise<CryptoKey> {
  dummyAssertionKey ??= generateKeyPair("ES256").then((pair) => pair.publicKey);
  return dummyAssertionKey;
}
