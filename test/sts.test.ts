/**
 * End-to-end tests of the STS and the admin plane (issue 3): a whole server,
 * reached over gRPC the way an agent and the CLI reach it, on both backends
 * Caracal ships with. The clock is the harness's and only moves when a test
 * moves it; nothing sleeps to reach an expiry.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { stat } from "node:fs/promises";
import { toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  exportJWK,
  generateKeyPair,
  importPKCS8,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
} from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ApplicationState, CredentialKind, KeyState } from "../gen/caracal/admin/v1/admin_pb.js";
import { AdminService, GetApplicationResponseSchema, ListApplicationsResponseSchema } from "../gen/caracal/admin/v1/admin_service_pb.js";
import { AuditDecision, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { Use } from "../gen/caracal/mandate/v1/mandate_pb.js";
import type { ExchangeResponse, StartSessionResponse } from "../gen/caracal/sts/v1/token_service_pb.js";
import { errorDetailOf, reasonOf } from "../interceptors/caracal-error.js";
import { issuerForZone, MANDATE_TYPE, stsAudienceForZone } from "../interceptors/mandate-claims.js";
import { requirementOf } from "../interceptors/method-requirement.js";
import { ADMIN_RESOURCE } from "../services/bootstrap.js";
import { KeyEncryptionKey, UnsealError } from "../services/keys/key-encryption-key.js";
import { sealContext } from "../services/keys/zone-keys.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { craftToken, decodeToken } from "./support/mandates.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CLIENT_SECRET = /^cs_[A-Za-z0-9_-]{43}$/;
const KIB = 1024;

/** The refusal a promise ends in; fails the test when it succeeds. */
async function refusal(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to be refused, but it succeeded");
}

/** Code and reason by name, so a failure reads `PermissionDenied / SCOPE_NOT_GRANTED`. */
function outcome(error: ConnectError): { code: string; reason: string } {
  return { code: Code[error.code], reason: Reason[reasonOf(error)] };
}

function expected(code: Code, reason: Reason): { code: string; reason: string } {
  return { code: Code[code], reason: Reason[reason] };
}

/** A gRPC code as the protocol spells it, e.g. `PERMISSION_DENIED`. */
function grpcName(code: Code): string {
  return Code[code].replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
}

function decisionIdOf(error: ConnectError): string {
  return errorDetailOf(error)?.decisionId ?? "";
}

function claimsOf(token: string): Record<string, unknown> {
  return decodeToken(token).claims;
}

function headerOf(token: string): Record<string, unknown> {
  return decodeToken(token).header;
}

function seconds(timestamp: { seconds: bigint } | undefined): number {
  return Number(timestamp?.seconds ?? -1n);
}

// -- The bad-input table ------------------------------------------------------

/** What the bad-input rows are built from; see the `bad input` block below. */
interface BadInputFixture {
  readonly sts: CaracalHarness["sts"];
  readonly zone: string;
  /** The secret of `agent`, granted invoices.read on billing-api. */
  readonly secret: string;
  /** A session mandate of `agent`. */
  readonly session: string;
  /** A resource mandate of `agent` for billing-api. */
  readonly resourceMandate: string;
  /** The zone's current signing kid. */
  readonly kid: string;
  /** The secret of `dormant`, an application disabled after it started `dormantSession`. */
  readonly dormantSecret: string;
  readonly dormantSession: string;
}

/** One malformed or unauthorised request, and the refusal it must get. */
interface BadInput {
  /** What is sent, as the end of the sentence "refuses …". */
  readonly name: string;
  readonly call: (fx: BadInputFixture) => Promise<unknown>;
  readonly code: Code;
  readonly reason: Reason;
  /**
   * Which zone's ledger the refusal is filed in: the fixture's, another named
   * one, or none (input refused before any decision, or a token naming no zone).
   */
  readonly ledger: "fixture" | "none" | { readonly zone: string };
}

const secretSession = (fx: BadInputFixture, clientId: string, secret: string, zone = fx.zone) =>
  fx.sts.startSession({ zone, clientId, credential: { case: "clientSecret", value: secret } });

const exchangeWith = (fx: BadInputFixture, subjectToken: string, resources = ["billing-api"], scopes = ["invoices.read"]) =>
  fx.sts.exchange({ subjectToken, resources, scopes });

async function strangerSigned(fx: BadInputFixture): Promise<string> {
  const stranger = await generateKeyPair("ES256");
  return new SignJWT(claimsOf(fx.session)).setProtectedHeader({ alg: "ES256", typ: MANDATE_TYPE, kid: fx.kid }).sign(stranger.privateKey);
}

const BAD_INPUTS: readonly BadInput[] = [
  {
    name: "a StartSession in a zone that does not exist",
    call: (fx) => secretSession(fx, "agent", fx.secret, "no-such-zone"),
    code: Code.NotFound,
    reason: Reason.ZONE_NOT_FOUND,
    // A zone that does not exist has no ledger; strangers cannot make zone names appear in it.
    ledger: "none",
  },
  {
    name: "a StartSession naming a zone that is not a slug",
    call: (fx) => secretSession(fx, "agent", fx.secret, "Not_A_Zone"),
    code: Code.InvalidArgument,
    reason: Reason.INVALID_ARGUMENT,
    ledger: "none",
  },
  {
    name: "a StartSession without any credential",
    call: (fx) => fx.sts.startSession({ zone: fx.zone, clientId: "agent" }),
    code: Code.InvalidArgument,
    reason: Reason.INVALID_ARGUMENT,
    ledger: "none",
  },
  {
    name: "a client assertion over 8 KiB",
    call: (fx) => fx.sts.startSession({ zone: fx.zone, clientId: "agent", credential: { case: "clientAssertion", value: "a".repeat(8 * KIB + 1) } }),
    code: Code.InvalidArgument,
    reason: Reason.INVALID_ARGUMENT,
    ledger: "none",
  },
  {
    name: "a wrong client secret",
    call: (fx) => secretSession(fx, "agent", `cs_${randomBytes(32).toString("base64url")}`),
    code: Code.Unauthenticated,
    reason: Reason.INVALID_CLIENT,
    ledger: "fixture",
  },
  {
    name: "an application that does not exist",
    call: (fx) => secretSession(fx, "nobody", fx.secret),
    code: Code.Unauthenticated,
    reason: Reason.INVALID_CLIENT,
    ledger: "fixture",
  },
  {
    name: "a disabled application presenting its right secret",
    call: (fx) => secretSession(fx, "dormant", fx.dormantSecret),
    code: Code.PermissionDenied,
    reason: Reason.APPLICATION_DISABLED,
    ledger: "fixture",
  },
  {
    name: "a subject token that is not a JWS",
    call: (fx) => exchangeWith(fx, "not-a-mandate"),
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_MALFORMED,
    ledger: "none",
  },
  {
    name: "a subject token over 8 KiB that names the zone",
    call: (fx) => exchangeWith(fx, craftToken(headerOf(fx.session), { ...claimsOf(fx.session), pad: "x".repeat(8 * KIB) }, "c2ln")),
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_TOO_LARGE,
    ledger: "fixture",
  },
  {
    name: "a subject token of 9 KiB of junk",
    call: (fx) => exchangeWith(fx, "x".repeat(9 * KIB)),
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_TOO_LARGE,
    ledger: "none",
  },
  {
    name: "a session mandate whose subject was changed after signing",
    call: (fx) => {
      const { header, claims, signature } = decodeToken(fx.session);
      return exchangeWith(fx, craftToken(header, { ...claims, sub: "dormant", client_id: "dormant" }, signature));
    },
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_BAD_SIGNATURE,
    ledger: "fixture",
  },
  {
    name: "an unsigned session mandate (alg none)",
    call: (fx) => exchangeWith(fx, craftToken({ ...headerOf(fx.session), alg: "none" }, claimsOf(fx.session), "")),
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_ALGORITHM_REJECTED,
    ledger: "fixture",
  },
  {
    name: "a session mandate signed by a stranger under the zone's kid",
    call: async (fx) => exchangeWith(fx, await strangerSigned(fx)),
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_BAD_SIGNATURE,
    ledger: "fixture",
  },
  {
    name: "a session mandate claiming a zone that does not exist",
    call: (fx) => {
      const { header, claims, signature } = decodeToken(fx.session);
      return exchangeWith(fx, craftToken(header, { ...claims, zone: "ghost-zone", iss: issuerForZone("ghost-zone") }, signature));
    },
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_UNKNOWN_KEY,
    ledger: "none",
  },
  {
    name: "a resource mandate given as the subject token",
    call: (fx) => exchangeWith(fx, fx.resourceMandate),
    code: Code.Unauthenticated,
    reason: Reason.MANDATE_WRONG_USE,
    ledger: "fixture",
  },
  {
    name: "an exchange for a resource that does not exist",
    call: (fx) => exchangeWith(fx, fx.session, ["no-such-api"]),
    code: Code.NotFound,
    reason: Reason.RESOURCE_NOT_FOUND,
    ledger: "fixture",
  },
  {
    name: "an exchange for a scope outside the grant",
    call: (fx) => exchangeWith(fx, fx.session, ["billing-api"], ["invoices.write"]),
    code: Code.PermissionDenied,
    reason: Reason.SCOPE_NOT_GRANTED,
    ledger: "fixture",
  },
  {
    name: "an exchange for a scope the resource does not offer",
    call: (fx) => exchangeWith(fx, fx.session, ["billing-api"], ["payroll.read"]),
    code: Code.PermissionDenied,
    reason: Reason.SCOPE_NOT_GRANTED,
    ledger: "fixture",
  },
  {
    name: "an exchange naming no resource",
    call: (fx) => exchangeWith(fx, fx.session, []),
    code: Code.InvalidArgument,
    reason: Reason.INVALID_ARGUMENT,
    ledger: "none",
  },
  {
    name: "an exchange naming a resource id that is not an id",
    call: (fx) => exchangeWith(fx, fx.session, ["Billing API"]),
    code: Code.InvalidArgument,
    reason: Reason.INVALID_ARGUMENT,
    ledger: "none",
  },
  {
    name: "an exchange without a subject token",
    call: (fx) => exchangeWith(fx, ""),
    code: Code.InvalidArgument,
    reason: Reason.INVALID_ARGUMENT,
    ledger: "none",
  },
  {
    name: "a session mandate of an application disabled since it was issued",
    call: (fx) => exchangeWith(fx, fx.dormantSession),
    code: Code.PermissionDenied,
    reason: Reason.APPLICATION_DISABLED,
    ledger: "fixture",
  },
];

// -- private_key_jwt ------------------------------------------------------------

/** An application registered with a public key, and the private half to sign assertions with. */
interface AssertionFixture {
  readonly zone: string;
  readonly clientId: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly now: () => number;
}

interface AssertionOptions {
  readonly iss?: string;
  readonly sub?: string;
  readonly aud?: string;
  /** Seconds relative to now. */
  readonly iat?: number;
  readonly exp?: number;
  /** `null` leaves the jti out. */
  readonly jti?: string | null;
  readonly kid?: string;
  readonly key?: CryptoKey | Uint8Array;
  readonly alg?: string;
}

/** An RFC 7523 client assertion, valid unless told otherwise. */
function clientAssertion(fx: AssertionFixture, options: AssertionOptions = {}): Promise<string> {
  const now = Math.floor(fx.now() / 1000);
  const jti = options.jti === undefined ? randomUUID() : options.jti;
  return new SignJWT(jti === null ? {} : { jti })
    .setProtectedHeader({ alg: options.alg ?? "ES256", kid: options.kid ?? fx.kid })
    .setIssuer(options.iss ?? fx.clientId)
    .setSubject(options.sub ?? fx.clientId)
    .setAudience(options.aud ?? stsAudienceForZone(fx.zone))
    .setIssuedAt(now + (options.iat ?? 0))
    .setExpirationTime(now + (options.exp ?? 60))
    .sign(options.key ?? fx.privateKey);
}

/** Assertions that must each be refused with CLIENT_ASSERTION_INVALID. */
const BAD_ASSERTIONS: readonly { readonly name: string; readonly make: (fx: AssertionFixture) => Promise<string> }[] = [
  { name: "addressed to the zone's issuer instead of its STS", make: (fx) => clientAssertion(fx, { aud: issuerForZone(fx.zone) }) },
  { name: "addressed to another zone's STS", make: (fx) => clientAssertion(fx, { aud: stsAudienceForZone("other-zone") }) },
  { name: "that expired a minute ago", make: (fx) => clientAssertion(fx, { iat: -120, exp: -60 }) },
  { name: "issued ten minutes ago", make: (fx) => clientAssertion(fx, { iat: -600, exp: 60 }) },
  { name: "issued in the future", make: (fx) => clientAssertion(fx, { iat: 120, exp: 180 }) },
  { name: "without a jti", make: (fx) => clientAssertion(fx, { jti: null }) },
  { name: "issued under another client id", make: (fx) => clientAssertion(fx, { iss: "someone-else" }) },
  { name: "that is not a JWS", make: async () => "not-a-jws" },
];

// -- The suite ----------------------------------------------------------------

describe.each(HARNESS_KINDS)("the STS and the admin plane on %s", (kind) => {
  let caracal: CaracalHarness;
  let zones = 0;

  beforeAll(async () => {
    caracal = await startHarness(kind);
  }, 120_000);

  afterAll(async () => {
    await caracal?.stop();
  });

  const now = () => caracal.clock.seconds;

  /** A fresh zone slug for one test. */
  function zoneName(label: string): string {
    return `${label}-${++zones}`;
  }

  /** Creates an application with a client secret and the given grants; returns the secret. */
  async function addApp(zone: string, clientId: string, grants: Record<string, string[]> = {}): Promise<string> {
    const created = await caracal.admin.createApplication({ zone, clientId, displayName: clientId });
    for (const [resourceId, scopes] of Object.entries(grants)) await caracal.admin.createGrant({ zone, clientId, resourceId, scopes });
    return created.clientSecret;
  }

  /**
   * A zone with two resources (billing-api: invoices.read, invoices.write;
   * reports-api: invoices.read, reports.read) and the application `agent`,
   * granted invoices.read on billing-api and both scopes on reports-api.
   */
  async function zoneWithAgent(label = "zone", options: { maxSessionTtlSeconds?: number } = {}): Promise<{ zone: string; secret: string }> {
    const zone = zoneName(label);
    await caracal.admin.createZone({
      zone,
      displayName: `Zone ${zone}`,
      ...(options.maxSessionTtlSeconds === undefined ? {} : { maxSessionTtl: { seconds: BigInt(options.maxSessionTtlSeconds) } }),
    });
    await caracal.admin.createResource({ zone, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
    await caracal.admin.createResource({ zone, resourceId: "reports-api", scopes: [{ name: "invoices.read" }, { name: "reports.read" }] });
    const secret = await addApp(zone, "agent", { "billing-api": ["invoices.read"], "reports-api": ["invoices.read", "reports.read"] });
    return { zone, secret };
  }

  function startSession(zone: string, clientId: string, secret: string, extra: { ttlSeconds?: number; labels?: Record<string, string> } = {}) {
    return caracal.sts.startSession({
      zone,
      clientId,
      credential: { case: "clientSecret", value: secret },
      ...(extra.ttlSeconds === undefined ? {} : { ttl: { seconds: BigInt(extra.ttlSeconds) } }),
      labels: extra.labels ?? {},
    });
  }

  function exchange(subjectToken: string, resources: string[], scopes: string[], extra: { ttlSeconds?: number; actorToken?: string } = {}) {
    return caracal.sts.exchange({
      subjectToken,
      resources,
      scopes,
      actorToken: extra.actorToken ?? "",
      ...(extra.ttlSeconds === undefined ? {} : { ttl: { seconds: BigInt(extra.ttlSeconds) } }),
    });
  }

  async function fetchJwks(zone: string): Promise<{ response: Response; jwks: JSONWebKeySet }> {
    const response = await fetch(caracal.jwksUrl(zone));
    return { response, jwks: (await response.json()) as JSONWebKeySet };
  }

  function kidsOf(jwks: JSONWebKeySet): string[] {
    return jwks.keys.map((key) => key.kid!).sort();
  }

  async function zoneKeys(zone: string) {
    const { keys } = await caracal.admin.listZoneKeys({ zone, includeRetired: true });
    return {
      keys,
      current: keys.find((key) => key.state === KeyState.CURRENT)!.keyId,
      next: keys.find((key) => key.state === KeyState.NEXT)!.keyId,
    };
  }

  /** The events of one decision, after everything recorded so far has crossed the bus. */
  async function auditOf(decisionId: string) {
    await caracal.audit.settle();
    return caracal.audit.forDecision(decisionId);
  }

  /** Verifies a mandate with plain jose against the zone's HTTP JWKS, on the harness clock. */
  function verifyWithJwks(
    token: string,
    zone: string,
    audience: string,
    jwks: JWTVerifyGetKey = createRemoteJWKSet(caracal.jwksUrl(zone)),
  ) {
    return jwtVerify(token, jwks, {
      algorithms: ["ES256"],
      typ: MANDATE_TYPE,
      issuer: issuerForZone(zone),
      audience,
      currentDate: new Date(caracal.clock.now()),
    });
  }

  describe("zone keys and the JWKS", () => {
    it("publishes a new zone's current and next keys over GetJwks and GET /.well-known/jwks.json with a Cache-Control max-age", async () => {
      const { zone } = await zoneWithAgent("jwks");
      const { current, next } = await zoneKeys(zone);
      const grpc = await caracal.sts.getJwks({ zone });
      expect(grpc.issuer).toBe(issuerForZone(zone));
      expect(seconds(grpc.maxAge)).toBeGreaterThan(0);
      expect(grpc.keys.map((key) => key.kid).sort()).toEqual([current, next].sort());
      for (const key of grpc.keys) expect(key).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });

      const { response, jwks } = await fetchJwks(zone);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      expect(response.headers.get("cache-control")).toMatch(new RegExp(`(^|[ ,])max-age=${seconds(grpc.maxAge)}($|[ ,])`));
      expect(kidsOf(jwks)).toEqual([current, next].sort());
      for (const key of jwks.keys) {
        expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
      }
    });

    it("answers the JWKS of an unknown zone with NOT_FOUND and of a malformed zone with INVALID_ARGUMENT", async () => {
      expect(outcome(await refusal(caracal.sts.getJwks({ zone: "no-such-zone" })))).toEqual(expected(Code.NotFound, Reason.ZONE_NOT_FOUND));
      expect(outcome(await refusal(caracal.sts.getJwks({ zone: "No Zone" })))).toEqual(expected(Code.InvalidArgument, Reason.INVALID_ARGUMENT));
      expect((await fetch(caracal.jwksUrl("no-such-zone"))).status).toBe(404);
      expect((await fetch(caracal.jwksUrl("No Zone"))).status).toBe(400);
      expect((await fetch(`${caracal.baseUrl}/.well-known/jwks.json`)).status).toBe(400);
    });

    it("keeps every zone private key sealed under the key-encryption key, bound to its zone and kid", async () => {
      const { zone } = await zoneWithAgent("sealed");
      const rows = await caracal.sql<{ kid: string; zone_id: string; sealed_private_key: Buffer; public_jwk: JWK }>(
        `SELECT k.kid, k.zone_id, k.sealed_private_key, k.public_jwk FROM zone_keys k JOIN zones z ON z.id = k.zone_id WHERE z.slug = $1`,
        [zone],
      );
      expect(rows).toHaveLength(2);
      const dump = await caracal.textDump();
      const strangerKek = new KeyEncryptionKey(randomBytes(32));
      for (const row of rows) {
        const sealed = row.sealed_private_key;
        const pem = caracal.kek.open(sealed, sealContext(row.zone_id, row.kid)).toString("utf8");
        expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
        const pemBody = pem.replace(/-----[A-Z ]+-----|\s/g, "");
        const pkcs8 = Buffer.from(pemBody, "base64");
        const privateJwk = await exportJWK(await importPKCS8(pem, "ES256", { extractable: true }));
        // The sealed key is the published key's private half...
        expect({ x: privateJwk.x, y: privateJwk.y }).toEqual({ x: row.public_jwk.x, y: row.public_jwk.y });
        const d = Buffer.from(privateJwk.d!, "base64url");
        expect(pkcs8.includes(d)).toBe(true);
        // ...and neither the column nor any other row holds it in the clear, in any usual encoding.
        const dInPem = pemBody.slice(Math.ceil((pkcs8.indexOf(d) * 4) / 3) + 4, Math.floor(((pkcs8.indexOf(d) + 32) * 4) / 3) - 4);
        expect(dInPem.length).toBeGreaterThanOrEqual(30);
        expect(sealed.includes(pkcs8)).toBe(false);
        expect(sealed.includes(d)).toBe(false);
        expect(sealed.toString("latin1")).not.toContain("PRIVATE KEY");
        expect(sealed.toString("latin1")).not.toContain(dInPem);
        for (const form of [pkcs8.toString("hex"), d.toString("hex"), d.toString("base64"), privateJwk.d!, dInPem]) {
          expect(dump).not.toContain(form);
        }
        expect(() => strangerKek.open(sealed, sealContext(row.zone_id, row.kid))).toThrow(UnsealError);
        const otherKid = rows.find((other) => other.kid !== row.kid)!.kid;
        expect(() => caracal.kek.open(sealed, sealContext(row.zone_id, otherKid))).toThrow(UnsealError);
      }
    });

    it("publishes the next key before it signs and keeps the old key published until its mandates have expired", async () => {
      const { zone, secret } = await zoneWithAgent("rotate");
      const before = await zoneKeys(zone);
      const { jwks: jwksBefore } = await fetchJwks(zone);
      expect(kidsOf(jwksBefore)).toEqual([before.current, before.next].sort());

      const session = await startSession(zone, "agent", secret);
      const oldMandate = await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]);
      expect(headerOf(oldMandate.mandate).kid).toBe(before.current);

      const rotated = await caracal.admin.rotateZoneKey({ zone });
      expect(rotated.current).toMatchObject({ keyId: before.next, state: KeyState.CURRENT });
      expect(rotated.previous).toMatchObject({ keyId: before.current, state: KeyState.RETIRING });
      expect(rotated.next!.state).toBe(KeyState.NEXT);
      expect([before.current, before.next]).not.toContain(rotated.next!.keyId);
      const retireAt = seconds(rotated.previous!.retireAt);
      // Nothing the old key signed outlives its publication.
      expect(retireAt).toBeGreaterThanOrEqual(seconds(session.info!.expiresAt));
      expect(retireAt).toBeGreaterThanOrEqual(now() + 3_600);

      // The new signer was already in the JWKS a verifier fetched before the rotation.
      const newMandate = await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]);
      expect(headerOf(newMandate.mandate).kid).toBe(before.next);
      await verifyWithJwks(newMandate.mandate, zone, "billing-api", createLocalJWKSet(jwksBefore));

      // The old key stays published: what it signed still verifies.
      const { jwks: jwksAfter } = await fetchJwks(zone);
      expect(kidsOf(jwksAfter)).toEqual([before.current, before.next, rotated.next!.keyId].sort());
      await verifyWithJwks(oldMandate.mandate, zone, "billing-api", createLocalJWKSet(jwksAfter));
      await verifyWithJwks(session.sessionMandate, zone, stsAudienceForZone(zone), createLocalJWKSet(jwksAfter));

      // Until its retire time...
      caracal.clock.advance(retireAt - now() - 1);
      expect(kidsOf((await fetchJwks(zone)).jwks)).toContain(before.current);
      expect((await caracal.sts.getJwks({ zone })).keys.map((key) => key.kid)).toContain(before.current);
      // ...and no longer.
      caracal.clock.advance(1);
      expect(kidsOf((await fetchJwks(zone)).jwks)).toEqual([before.next, rotated.next!.keyId].sort());
      expect((await caracal.admin.listZoneKeys({ zone })).keys.map((key) => key.keyId)).not.toContain(before.current);
      const retired = (await zoneKeys(zone)).keys.find((key) => key.keyId === before.current);
      expect(retired?.state).toBe(KeyState.RETIRED);
    });

    it("rotates a zone key several times under load without failing a single exchange or verification", async () => {
      const { zone, secret } = await zoneWithAgent("load");
      const session = await startSession(zone, "agent", secret);
      // A verifier as a service would run it: cached JWKS, refetched on an unknown kid.
      const jwks = createRemoteJWKSet(caracal.jwksUrl(zone), { cooldownDuration: 0 });
      const failures: unknown[] = [];
      const kids = new Set<string>();
      let completed = 0;
      let running = true;
      const worker = async () => {
        while (running) {
          try {
            const { mandate } = await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]);
            kids.add((await verifyWithJwks(mandate, zone, "billing-api", jwks)).protectedHeader.kid!);
          } catch (error) {
            failures.push(error);
          }
          completed++;
        }
      };
      // Waits on progress of the load, not on a clock.
      const progressTo = async (count: number) => {
        while (completed < count && failures.length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
      };
      const workers = Array.from({ length: 8 }, worker);
      const rotations = 4;
      // Each key signs for at least this many exchanges begun after it became current.
      const perPhase = 40;
      try {
        await progressTo(perPhase);
        for (let rotation = 1; rotation <= rotations; rotation++) {
          await caracal.admin.rotateZoneKey({ zone });
          await progressTo(completed + perPhase + 8);
        }
      } finally {
        running = false;
        await Promise.all(workers);
      }
      expect(failures).toEqual([]);
      expect(completed).toBeGreaterThanOrEqual((rotations + 1) * perPhase);
      expect(kids.size).toBe(rotations + 1);
    });

    it("queues two rotations of one zone started at once, leaving one current and one next key", async () => {
      const { zone, secret } = await zoneWithAgent("rotate-twice");
      const results = await Promise.allSettled([caracal.admin.rotateZoneKey({ zone }), caracal.admin.rotateZoneKey({ zone })]);
      const failures = results.flatMap((result) => (result.status === "rejected" ? [outcome(ConnectError.from(result.reason))] : []));
      expect(failures).toEqual([]);
      const { keys } = await caracal.admin.listZoneKeys({ zone });
      expect(keys.map((key) => KeyState[key.state]).sort()).toEqual(["CURRENT", "NEXT", "RETIRING", "RETIRING"]);
      const session = await startSession(zone, "agent", secret);
      await verifyWithJwks(session.sessionMandate, zone, stsAudienceForZone(zone));
    });
  });

  describe("applications and their credentials", () => {
    it("shows a client secret once and stores only its 32-byte keyed hash", async () => {
      const { zone, secret } = await zoneWithAgent("hashes");
      expect(secret).toMatch(CLIENT_SECRET);
      const got = await caracal.admin.getApplication({ zone, clientId: "agent" });
      const listed = await caracal.admin.listApplications({ zone });
      expect(got.application).toMatchObject({ clientId: "agent", state: ApplicationState.ACTIVE, credentialKind: CredentialKind.CLIENT_SECRET });
      expect(got.application!.secrets).toHaveLength(1);
      const [stored, ...others] = await caracal.sql<{ secret_hash: Buffer }>(
        `SELECT s.secret_hash FROM application_secrets s JOIN zones z ON z.id = s.zone_id WHERE z.slug = $1 AND s.client_id = 'agent'`,
        [zone],
      );
      expect(others).toEqual([]);
      expect(stored!.secret_hash).toHaveLength(32);
      expect(stored!.secret_hash.equals(caracal.kek.hashSecret(secret))).toBe(true);
      // Keyed: not a plain digest anyone could recompute from a guess.
      expect(stored!.secret_hash.equals(createHash("sha256").update(secret).digest())).toBe(false);

      const responses = Buffer.concat([
        toBinary(GetApplicationResponseSchema, got),
        toBinary(ListApplicationsResponseSchema, listed),
      ]).toString("latin1");
      expect(responses).not.toContain(secret);
      expect(responses).not.toContain(stored!.secret_hash.toString("latin1"));
      const dump = await caracal.textDump();
      expect(dump).not.toContain(secret);
      expect(dump).not.toContain(secret.slice(3));
      expect(dump).not.toContain(Buffer.from(secret).toString("hex"));
    });

    it("answers a wrong secret, an unknown application and a secret for a key-only application alike, and writes nothing", async () => {
      const { zone } = await zoneWithAgent("same-answer");
      const { publicKey } = await generateKeyPair("ES256", { extractable: true });
      await caracal.admin.createApplication({
        zone,
        clientId: "keyed",
        credentialKind: CredentialKind.PRIVATE_KEY_JWT,
        publicKey: { ...(await exportJWK(publicKey)), kid: "keyed-1", alg: "ES256" },
      });
      const guess = `cs_${randomBytes(32).toString("base64url")}`;
      const before = await caracal.snapshot();
      const answers = [];
      for (const clientId of ["agent", "nobody", "keyed"]) {
        const error = await refusal(startSession(zone, clientId, guess));
        answers.push({ ...outcome(error), message: error.rawMessage, metadata: errorDetailOf(error)?.metadata });
        const events = await auditOf(decisionIdOf(error));
        expect(events).toHaveLength(1);
        expect(events[0]).toMatchObject({ zone, clientId, decision: AuditDecision.DENY, reason: Reason.INVALID_CLIENT });
      }
      expect(answers[0]).toMatchObject(expected(Code.Unauthenticated, Reason.INVALID_CLIENT));
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("refuses a disabled application only once its credential checks out, and refuses its live sessions too", async () => {
      const { zone, secret } = await zoneWithAgent("disabled");
      const session = await startSession(zone, "agent", secret);
      await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]);
      const disabled = await caracal.admin.disableApplication({ zone, clientId: "agent" });
      expect(disabled.application!.state).toBe(ApplicationState.DISABLED);
      const before = await caracal.snapshot();

      const refused = await refusal(startSession(zone, "agent", secret));
      expect(outcome(refused)).toEqual(expected(Code.PermissionDenied, Reason.APPLICATION_DISABLED));
      // A wrong secret says nothing about the application's state.
      expect(outcome(await refusal(startSession(zone, "agent", `cs_${randomBytes(32).toString("base64url")}`)))).toEqual(
        expected(Code.Unauthenticated, Reason.INVALID_CLIENT),
      );
      const live = await refusal(exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]));
      expect(outcome(live)).toEqual(expected(Code.PermissionDenied, Reason.APPLICATION_DISABLED));
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("keeps the old secret valid for the rotation's overlap and refuses it from the end of the overlap", async () => {
      const { zone, secret: oldSecret } = await zoneWithAgent("overlap");
      const rotated = await caracal.admin.rotateApplicationSecret({ zone, clientId: "agent", overlap: { seconds: 300n } });
      const newSecret = rotated.clientSecret;
      expect(newSecret).toMatch(CLIENT_SECRET);
      expect(newSecret).not.toBe(oldSecret);
      const secrets = rotated.application!.secrets;
      expect(secrets).toHaveLength(2);
      expect(secrets.map((s) => (s.expiresAt ? seconds(s.expiresAt) : null)).sort()).toEqual([now() + 300, null].sort());

      await startSession(zone, "agent", oldSecret);
      await startSession(zone, "agent", newSecret);
      caracal.clock.advance(299);
      await startSession(zone, "agent", oldSecret);
      caracal.clock.advance(1);
      expect(outcome(await refusal(startSession(zone, "agent", oldSecret)))).toEqual(expected(Code.Unauthenticated, Reason.INVALID_CLIENT));
      await startSession(zone, "agent", newSecret);
    });

    it("ends the old secret at once when it is rotated with no overlap", async () => {
      const { zone, secret: oldSecret } = await zoneWithAgent("no-overlap");
      const rotated = await caracal.admin.rotateApplicationSecret({ zone, clientId: "agent", overlap: { seconds: 0n } });
      expect(outcome(await refusal(startSession(zone, "agent", oldSecret)))).toEqual(expected(Code.Unauthenticated, Reason.INVALID_CLIENT));
      await startSession(zone, "agent", rotated.clientSecret);
    });
  });

  describe("private_key_jwt client assertions", () => {
    let fx: AssertionFixture;

    beforeAll(async () => {
      const zone = zoneName("assert");
      await caracal.admin.createZone({ zone });
      const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
      const created = await caracal.admin.createApplication({
        zone,
        clientId: "signer",
        credentialKind: CredentialKind.PRIVATE_KEY_JWT,
        publicKey: { ...(await exportJWK(publicKey)), kid: "signer-key-1", alg: "ES256" },
      });
      expect(created.clientSecret).toBe("");
      fx = { zone, clientId: "signer", kid: "signer-key-1", privateKey, now: caracal.clock.now };
    });

    const withAssertion = (assertion: string, clientId = fx.clientId) =>
      caracal.sts.startSession({ zone: fx.zone, clientId, credential: { case: "clientAssertion", value: assertion } });

    it("starts a session with an assertion addressed to the zone's STS and remembers its jti until it expires", async () => {
      const assertion = await clientAssertion(fx, { exp: 90 });
      const session = await withAssertion(assertion);
      expect(claimsOf(session.sessionMandate)).toMatchObject({ sub: "signer", client_id: "signer", use: "session", zone: fx.zone });
      const jti = claimsOf(assertion).jti as string;
      const [row] = await caracal.sql<{ expires_at: Date }>(
        `SELECT j.expires_at FROM client_assertion_jtis j JOIN zones z ON z.id = j.zone_id WHERE z.slug = $1 AND j.jti = $2`,
        [fx.zone, jti],
      );
      expect(row!.expires_at.getTime()).toBe((now() + 90) * 1000);
    });

    it("refuses a replayed assertion with REASON_CLIENT_ASSERTION_REPLAYED and writes nothing", async () => {
      const assertion = await clientAssertion(fx);
      await withAssertion(assertion);
      const before = await caracal.snapshot();
      const replayed = await refusal(withAssertion(assertion));
      expect(outcome(replayed)).toEqual(expected(Code.Unauthenticated, Reason.CLIENT_ASSERTION_REPLAYED));
      expect(await caracal.snapshot()).toEqual(before);
      expect(await auditOf(decisionIdOf(replayed))).toMatchObject([{ decision: AuditDecision.DENY, reason: Reason.CLIENT_ASSERTION_REPLAYED }]);
      // A fresh jti from the same key is fine.
      await withAssertion(await clientAssertion(fx));
    });

    for (const { name, make } of BAD_ASSERTIONS) {
      it(`refuses an assertion ${name} with REASON_CLIENT_ASSERTION_INVALID and writes nothing`, async () => {
        const assertion = await make(fx);
        const before = await caracal.snapshot();
        const error = await refusal(withAssertion(assertion));
        expect(outcome(error)).toEqual(expected(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID));
        expect(await caracal.snapshot()).toEqual(before);
        expect(await auditOf(decisionIdOf(error))).toMatchObject([
          { zone: fx.zone, clientId: "signer", decision: AuditDecision.DENY, reason: Reason.CLIENT_ASSERTION_INVALID },
        ]);
      });
    }

    it("lets exactly one of several concurrent uses of one assertion through", async () => {
      const assertion = await clientAssertion(fx);
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => withAssertion(assertion)));
      expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
      for (const result of results) {
        if (result.status === "rejected") {
          expect(outcome(ConnectError.from(result.reason))).toEqual(expected(Code.Unauthenticated, Reason.CLIENT_ASSERTION_REPLAYED));
        }
      }
    });

    it("refuses a disabled key-only application's valid assertion with REASON_APPLICATION_DISABLED and writes nothing", async () => {
      const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
      await caracal.admin.createApplication({
        zone: fx.zone,
        clientId: "retired-signer",
        credentialKind: CredentialKind.PRIVATE_KEY_JWT,
        publicKey: { ...(await exportJWK(publicKey)), kid: "retired-1", alg: "ES256" },
      });
      await caracal.admin.disableApplication({ zone: fx.zone, clientId: "retired-signer" });
      const retired: AssertionFixture = { ...fx, clientId: "retired-signer", kid: "retired-1", privateKey };
      const before = await caracal.snapshot();
      const error = await refusal(withAssertion(await clientAssertion(retired), "retired-signer"));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.APPLICATION_DISABLED));
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("refuses an assertion that would stay valid for a whole day", async () => {
      const assertion = await clientAssertion(fx, { exp: 24 * 3_600 });
      const before = await caracal.snapshot();
      const error = await refusal(withAssertion(assertion));
      expect(outcome(error)).toEqual(expected(Code.Unauthenticated, Reason.CLIENT_ASSERTION_INVALID));
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("answers a badly signed assertion for a known application as it answers one for an unknown application", async () => {
      const stranger = (await generateKeyPair("ES256")).privateKey;
      const unknown = await refusal(
        withAssertion(await clientAssertion(fx, { iss: "nobody", sub: "nobody", key: stranger }), "nobody"),
      );
      expect(outcome(unknown)).toEqual(expected(Code.Unauthenticated, Reason.INVALID_CLIENT));
      for (const forged of [
        await clientAssertion(fx, { key: stranger }),
        await clientAssertion(fx, { alg: "HS256", key: randomBytes(32) }),
      ]) {
        const known = await refusal(withAssertion(forged));
        expect({ ...outcome(known), message: known.rawMessage }).toEqual({ ...outcome(unknown), message: unknown.rawMessage });
      }
    });
  });

  describe("StartSession", () => {
    it("signs a session mandate with the zone's current key, with exact claims and headers", async () => {
      const { zone, secret } = await zoneWithAgent("session");
      const { current } = await zoneKeys(zone);
      const issuedAt = now();
      const session = await startSession(zone, "agent", secret, { labels: { task: "nightly-close" } });
      expect(headerOf(session.sessionMandate)).toEqual({ alg: "ES256", typ: MANDATE_TYPE, kid: current });
      const claims = claimsOf(session.sessionMandate);
      expect(claims).toEqual({
        iss: issuerForZone(zone),
        sub: "agent",
        aud: [stsAudienceForZone(zone)],
        iat: issuedAt,
        nbf: issuedAt,
        exp: issuedAt + 3_600,
        jti: expect.stringMatching(UUID),
        zone,
        use: "session",
        client_id: "agent",
        sid: expect.stringMatching(UUID),
        root_sid: claims.sid,
        scope: "",
        target: [],
        policy_set_version: 0,
        labels: { task: "nightly-close" },
      });
      expect(session.info).toMatchObject({
        mandateId: claims.jti,
        zone,
        use: Use.SESSION,
        clientId: "agent",
        sessionId: claims.sid,
        rootSessionId: claims.sid,
        keyId: current,
      });
      expect(seconds(session.info!.expiresAt)).toBe(issuedAt + 3_600);
      expect(session.decisionId).toMatch(UUID);
      await verifyWithJwks(session.sessionMandate, zone, stsAudienceForZone(zone));

      const again = claimsOf((await startSession(zone, "agent", secret)).sessionMandate);
      expect(again.jti).not.toBe(claims.jti);
      expect(again.sid).not.toBe(claims.sid);
    });

    it("caps a session at the requested ttl and at the zone's maximum", async () => {
      const { zone, secret } = await zoneWithAgent("session-cap", { maxSessionTtlSeconds: 600 });
      const lifetime = async (ttlSeconds?: number) => {
        const claims = claimsOf((await startSession(zone, "agent", secret, { ttlSeconds })).sessionMandate);
        return (claims.exp as number) - (claims.iat as number);
      };
      expect(await lifetime()).toBe(600);
      expect(await lifetime(120)).toBe(120);
      expect(await lifetime(7_200)).toBe(600);
    });
  });

  describe("Exchange", () => {
    it("issues a resource mandate whose aud and target are exactly the requested resources", async () => {
      const { zone, secret } = await zoneWithAgent("exchange");
      const { current } = await zoneKeys(zone);
      const session = await startSession(zone, "agent", secret);
      const sessionClaims = claimsOf(session.sessionMandate);
      caracal.clock.advance(7);
      const issuedAt = now();
      const response = await exchange(session.sessionMandate, ["billing-api", "reports-api", "billing-api"], ["invoices.read"]);
      expect(headerOf(response.mandate)).toEqual({ alg: "ES256", typ: MANDATE_TYPE, kid: current });
      const claims = claimsOf(response.mandate);
      expect(claims).toEqual({
        iss: issuerForZone(zone),
        sub: "agent",
        aud: ["billing-api", "reports-api"],
        iat: issuedAt,
        nbf: issuedAt,
        exp: issuedAt + 900,
        jti: expect.stringMatching(UUID),
        zone,
        use: "resource",
        client_id: "agent",
        sid: sessionClaims.sid,
        root_sid: sessionClaims.root_sid,
        scope: "invoices.read",
        target: ["billing-api", "reports-api"],
        policy_set_version: 0,
      });
      expect(claims.jti).not.toBe(sessionClaims.jti);
      expect(response.info).toMatchObject({
        mandateId: claims.jti,
        use: Use.RESOURCE,
        audience: ["billing-api", "reports-api"],
        targets: ["billing-api", "reports-api"],
        scopes: ["invoices.read"],
        sessionId: sessionClaims.sid,
        keyId: current,
      });
      for (const audience of ["billing-api", "reports-api"]) await verifyWithJwks(response.mandate, zone, audience);
      await expect(verifyWithJwks(response.mandate, zone, "ledger-api")).rejects.toMatchObject({ code: "ERR_JWT_CLAIM_VALIDATION_FAILED", claim: "aud" });

      const other = claimsOf((await exchange(session.sessionMandate, ["reports-api"], ["reports.read", "invoices.read"])).mandate);
      expect(other).toMatchObject({ aud: ["reports-api"], target: ["reports-api"], scope: "reports.read invoices.read" });
      expect(other.jti).not.toBe(claims.jti);
    });

    it("requires every requested scope on every requested resource", async () => {
      const { zone, secret } = await zoneWithAgent("every-scope");
      const session = await startSession(zone, "agent", secret);
      // reports.read is granted on reports-api only.
      const error = await refusal(exchange(session.sessionMandate, ["reports-api", "billing-api"], ["reports.read"]));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED));
      expect(errorDetailOf(error)?.metadata).toEqual({ resource: "billing-api", scope: "reports.read" });
      await exchange(session.sessionMandate, ["reports-api", "billing-api"], ["invoices.read"]);
    });

    it("caps a resource mandate at the requested ttl, the zone's maximum and the session's expiry", async () => {
      const { zone, secret } = await zoneWithAgent("exchange-cap");
      const long = (await startSession(zone, "agent", secret)).sessionMandate;
      const lifetime = async (session: string, ttlSeconds?: number) => {
        const claims = claimsOf((await exchange(session, ["billing-api"], ["invoices.read"], { ttlSeconds })).mandate);
        return (claims.exp as number) - (claims.iat as number);
      };
      expect(await lifetime(long)).toBe(900);
      expect(await lifetime(long, 60)).toBe(60);
      expect(await lifetime(long, 3_600)).toBe(900);

      const short = await startSession(zone, "agent", secret, { ttlSeconds: 300 });
      const sessionExp = claimsOf(short.sessionMandate).exp as number;
      expect(claimsOf((await exchange(short.sessionMandate, ["billing-api"], ["invoices.read"])).mandate).exp).toBe(sessionExp);
      caracal.clock.advance(100);
      const late = claimsOf((await exchange(short.sessionMandate, ["billing-api"], ["invoices.read"])).mandate);
      expect({ iat: late.iat, exp: late.exp }).toEqual({ iat: now(), exp: sessionExp });

      await caracal.sql(`UPDATE zones SET max_resource_ttl_seconds = 120 WHERE slug = $1`, [zone]);
      caracal.clock.advance(2); // past the directory cache's TTL
      expect(await lifetime(long)).toBe(120);
    });

    it("refuses a session mandate once the clock passes its expiry", async () => {
      const { zone, secret } = await zoneWithAgent("expiry");
      const session = await startSession(zone, "agent", secret, { ttlSeconds: 120 });
      await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]);
      caracal.clock.advance(120 + 6); // beyond the 5 s clock tolerance
      const error = await refusal(exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]));
      expect(outcome(error)).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_EXPIRED));
      expect(await auditOf(decisionIdOf(error))).toMatchObject([{ zone, decision: AuditDecision.DENY, reason: Reason.MANDATE_EXPIRED }]);
    });

    it("never issues a resource mandate that is already expired, even within the clock tolerance of its session", async () => {
      const { zone, secret } = await zoneWithAgent("tolerance");
      const session = await startSession(zone, "agent", secret, { ttlSeconds: 120 });
      caracal.clock.advance(120 + 3); // past exp, within the 5 s tolerance
      const result = await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]).catch((error: unknown) => ConnectError.from(error));
      if (result instanceof ConnectError) {
        expect(outcome(result)).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_EXPIRED));
      } else {
        const claims = claimsOf(result.mandate);
        expect(claims.exp as number).toBeGreaterThan(claims.iat as number);
      }
    });

    it("decides by grants alone: a deleted grant stops the next exchange and a new one allows it", async () => {
      const { zone, secret } = await zoneWithAgent("grants");
      const session = await startSession(zone, "agent", secret);
      await exchange(session.sessionMandate, ["billing-api"], ["invoices.read"]);
      const { grants } = await caracal.admin.listGrants({ zone, clientId: "agent", resourceId: "billing-api" });
      expect(grants).toHaveLength(1);
      await caracal.admin.deleteGrant({ zone, grantId: grants[0]!.grantId });
      expect(outcome(await refusal(exchange(session.sessionMandate, ["billing-api"], ["invoices.read"])))).toEqual(
        expected(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED),
      );
      await exchange(session.sessionMandate, ["reports-api"], ["invoices.read"]);
      await caracal.admin.createGrant({ zone, clientId: "agent", resourceId: "billing-api", scopes: ["invoices.write"] });
      await exchange(session.sessionMandate, ["billing-api"], ["invoices.write"]);
    });

    it("writes nothing to the store to start a secret session or to exchange, but its replay sample of policy questions", async () => {
      const { zone, secret } = await zoneWithAgent("no-writes");
      const before = await caracal.snapshot();
      const session = await startSession(zone, "agent", secret);
      for (let i = 0; i < 5; i++) await exchange(session.sessionMandate, ["billing-api", "reports-api"], ["invoices.read"]);
      expect(await caracal.snapshot()).toEqual(before);
      // The sample is written in the background: one row per decision, one question per resource and scope.
      const recorded = async () =>
        caracal.sql<{ questions: number }>(
          `SELECT jsonb_array_length(d.questions) AS questions FROM policy_decisions d JOIN zones z ON z.id = d.zone_id
           WHERE z.slug = $1 ORDER BY d.seq`,
          [zone],
        );
      await vi.waitFor(async () => expect(await recorded()).toHaveLength(6), { timeout: 5_000 });
      expect((await recorded()).map((r) => r.questions)).toEqual([1, 2, 2, 2, 2, 2]);
    });
  });

  describe("delegation", () => {
    let zone: string;
    let orchestrator: StartSessionResponse;
    let worker: StartSessionResponse;
    let idle: StartSessionResponse;

    beforeAll(async () => {
      ({ zone } = await zoneWithAgent("delegation"));
      const grants = { "billing-api": ["invoices.read"] };
      orchestrator = await startSession(zone, "orchestrator", await addApp(zone, "orchestrator", grants));
      worker = await startSession(zone, "worker", await addApp(zone, "worker", grants));
      idle = await startSession(zone, "idle", await addApp(zone, "idle"));
    });

    it("records an actor token as an act claim naming the actor's application and session", async () => {
      const response = await exchange(orchestrator.sessionMandate, ["billing-api"], ["invoices.read"], { actorToken: worker.sessionMandate });
      const claims = claimsOf(response.mandate);
      expect(claims).toMatchObject({ sub: "orchestrator", client_id: "orchestrator", sid: orchestrator.info!.sessionId });
      expect(claims.act).toEqual({ sub: "worker", client_id: "worker", sid: worker.info!.sessionId });
      expect(response.info!.delegationChain).toMatchObject([{ clientId: "worker", subject: "worker", sessionId: worker.info!.sessionId }]);
      const [event] = await auditOf(response.decisionId);
      expect(event!.delegationChain).toMatchObject([{ clientId: "worker", sessionId: worker.info!.sessionId }]);
      await verifyWithJwks(response.mandate, zone, "billing-api");
    });

    it("refuses an actor that lacks the grants itself: delegation never widens authority", async () => {
      const error = await refusal(exchange(orchestrator.sessionMandate, ["billing-api"], ["invoices.read"], { actorToken: idle.sessionMandate }));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED));
    });

    it("refuses a resource mandate given as the actor token", async () => {
      const { mandate } = await exchange(worker.sessionMandate, ["billing-api"], ["invoices.read"]);
      const error = await refusal(exchange(orchestrator.sessionMandate, ["billing-api"], ["invoices.read"], { actorToken: mandate }));
      expect(outcome(error)).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_WRONG_USE));
    });

    it("refuses delegation beyond the zone's hop limit with REASON_DELEGATION_TOO_DEEP", async () => {
      await caracal.sql(`UPDATE zones SET max_delegation_hops = 0 WHERE slug = $1`, [zone]);
      caracal.clock.advance(2); // past the directory cache's TTL
      const before = await caracal.snapshot();
      const error = await refusal(exchange(orchestrator.sessionMandate, ["billing-api"], ["invoices.read"], { actorToken: worker.sessionMandate }));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.DELEGATION_TOO_DEEP));
      expect(await caracal.snapshot()).toEqual(before);
      expect(await auditOf(decisionIdOf(error))).toMatchObject([{ decision: AuditDecision.DENY, reason: Reason.DELEGATION_TOO_DEEP }]);
      await exchange(orchestrator.sessionMandate, ["billing-api"], ["invoices.read"]);
    });
  });

  describe("bad input", () => {
    const fixture = {} as { current: BadInputFixture };

    beforeAll(async () => {
      const { zone, secret } = await zoneWithAgent("bad-input");
      const dormantSecret = await addApp(zone, "dormant", { "billing-api": ["invoices.read"] });
      const dormantSession = (await startSession(zone, "dormant", dormantSecret)).sessionMandate;
      await caracal.admin.disableApplication({ zone, clientId: "dormant" });
      const session = (await startSession(zone, "agent", secret)).sessionMandate;
      fixture.current = {
        sts: caracal.sts,
        zone,
        secret,
        session,
        resourceMandate: (await exchange(session, ["billing-api"], ["invoices.read"])).mandate,
        kid: (await zoneKeys(zone)).current,
        dormantSecret,
        dormantSession,
      };
    });

    for (const row of BAD_INPUTS) {
      it(`refuses ${row.name} with ${grpcName(row.code)} and REASON_${Reason[row.reason]}, and writes nothing`, async () => {
        const fx = fixture.current;
        const before = await caracal.snapshot();
        const error = await refusal(row.call(fx));
        expect(outcome(error)).toEqual(expected(row.code, row.reason));
        expect(await caracal.snapshot()).toEqual(before);
        const decisionId = decisionIdOf(error);
        if (row.ledger === "none") {
          if (decisionId !== "") expect(await auditOf(decisionId)).toEqual([]);
          return;
        }
        expect(decisionId).toMatch(UUID);
        const events = await auditOf(decisionId);
        expect(events).toHaveLength(1);
        expect(events[0]).toMatchObject({
          zone: row.ledger === "fixture" ? fx.zone : row.ledger.zone,
          decision: AuditDecision.DENY,
          reason: row.reason,
          decisionId,
        });
      });
    }
  });

  describe("zones as hard boundaries", () => {
    it("keeps two zones apart where their application and resource ids are the same", async () => {
      const { zone: acme, secret: acmeSecret } = await zoneWithAgent("acme");
      const globex = zoneName("globex");
      await caracal.admin.createZone({ zone: globex });
      await caracal.admin.createResource({ zone: globex, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
      const globexSecret = await addApp(globex, "agent", { "billing-api": ["invoices.write"] });

      // One zone's secret does not open the other zone's application of the same id.
      for (const [zone, secret] of [[acme, globexSecret], [globex, acmeSecret]] as const) {
        expect(outcome(await refusal(startSession(zone, "agent", secret)))).toEqual(expected(Code.Unauthenticated, Reason.INVALID_CLIENT));
      }
      // Each zone's agent holds its own zone's grants and nothing from the other.
      const acmeSession = await startSession(acme, "agent", acmeSecret);
      const globexSession = await startSession(globex, "agent", globexSecret);
      await exchange(acmeSession.sessionMandate, ["billing-api"], ["invoices.read"]);
      await exchange(globexSession.sessionMandate, ["billing-api"], ["invoices.write"]);
      expect(outcome(await refusal(exchange(acmeSession.sessionMandate, ["billing-api"], ["invoices.write"])))).toEqual(
        expected(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED),
      );
      expect(outcome(await refusal(exchange(globexSession.sessionMandate, ["billing-api"], ["invoices.read"])))).toEqual(
        expected(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED),
      );
      // A resource of one zone does not exist in the other.
      expect(outcome(await refusal(exchange(globexSession.sessionMandate, ["reports-api"], ["reports.read"])))).toEqual(
        expected(Code.NotFound, Reason.RESOURCE_NOT_FOUND),
      );
      expect(outcome(await refusal(caracal.admin.getResource({ zone: globex, resourceId: "reports-api" })))).toEqual(
        expected(Code.NotFound, Reason.RESOURCE_NOT_FOUND),
      );
      // The admin plane lists each zone's own objects only.
      const acmeApp = (await caracal.admin.getApplication({ zone: acme, clientId: "agent" })).application!;
      const globexApps = (await caracal.admin.listApplications({ zone: globex })).applications;
      expect(globexApps.map((app) => [app.zone, app.clientId])).toEqual([[globex, "agent"]]);
      expect(globexApps[0]!.secrets.map((s) => s.secretId)).not.toContain(acmeApp.secrets[0]!.secretId);
      expect((await caracal.admin.listResources({ zone: globex })).resources.map((r) => r.resourceId)).toEqual(["billing-api"]);
      const globexGrants = (await caracal.admin.listGrants({ zone: globex })).grants;
      expect(globexGrants.map((g) => [g.zone, g.clientId, g.resourceId, g.scopes])).toEqual([[globex, "agent", "billing-api", ["invoices.write"]]]);
      const acmeGrantIds = (await caracal.admin.listGrants({ zone: acme })).grants.map((g) => g.grantId);
      expect(outcome(await refusal(caracal.admin.deleteGrant({ zone: globex, grantId: acmeGrantIds[0]! })))).toEqual(
        expected(Code.NotFound, Reason.NOT_FOUND),
      );
      expect((await caracal.admin.listGrants({ zone: acme })).grants.map((g) => g.grantId)).toEqual(acmeGrantIds);
      // Keys: disjoint sets, each zone's mandates signed by its own.
      const acmeKids = kidsOf((await fetchJwks(acme)).jwks);
      const globexKids = kidsOf((await fetchJwks(globex)).jwks);
      expect(acmeKids.filter((kid) => globexKids.includes(kid))).toEqual([]);
      expect(globexKids).toContain(headerOf(globexSession.sessionMandate).kid);
      // Disabling one zone's agent leaves the other's alone.
      await caracal.admin.disableApplication({ zone: acme, clientId: "agent" });
      await exchange((await startSession(globex, "agent", globexSecret)).sessionMandate, ["billing-api"], ["invoices.write"]);
      expect((await caracal.admin.getApplication({ zone: globex, clientId: "agent" })).application!.state).toBe(ApplicationState.ACTIVE);
    });

    it("refuses a mandate signed with one zone's key that claims another zone", async () => {
      const { zone: acme } = await zoneWithAgent("acme-key");
      const { zone: globex, secret: globexSecret } = await zoneWithAgent("globex-key");
      const [row] = await caracal.sql<{ kid: string; zone_id: string; sealed_private_key: Buffer }>(
        `SELECT k.kid, k.zone_id, k.sealed_private_key FROM zone_keys k JOIN zones z ON z.id = k.zone_id WHERE z.slug = $1 AND k.state = 'current'`,
        [acme],
      );
      const acmeKey = await importPKCS8(caracal.kek.open(row!.sealed_private_key, sealContext(row!.zone_id, row!.kid)).toString("utf8"), "ES256");
      // A genuine globex session, re-signed with acme's key as if acme's STS had issued it.
      const genuine = claimsOf((await startSession(globex, "agent", globexSecret)).sessionMandate);
      const forged = await new SignJWT(genuine).setProtectedHeader({ alg: "ES256", typ: MANDATE_TYPE, kid: row!.kid }).sign(acmeKey);
      const error = await refusal(exchange(forged, ["billing-api"], ["invoices.read"]));
      expect(outcome(error)).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_UNKNOWN_KEY));
    });

    it("refuses an actor token from another zone with REASON_WRONG_ZONE", async () => {
      const { zone: acme, secret: acmeSecret } = await zoneWithAgent("acme-actor");
      const { zone: globex, secret: globexSecret } = await zoneWithAgent("globex-actor");
      const subject = await startSession(acme, "agent", acmeSecret);
      const actor = await startSession(globex, "agent", globexSecret);
      const error = await refusal(exchange(subject.sessionMandate, ["billing-api"], ["invoices.read"], { actorToken: actor.sessionMandate }));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.WRONG_ZONE));
    });

    it("does not let a zone's own caracal-admin resource administer Caracal", async () => {
      const zone = zoneName("pretender");
      await caracal.admin.createZone({ zone });
      await caracal.admin.createResource({ zone, resourceId: ADMIN_RESOURCE, scopes: [{ name: "admin.read" }, { name: "admin.write" }] });
      const secret = await addApp(zone, "pretender", { [ADMIN_RESOURCE]: ["admin.read", "admin.write"] });
      const session = await startSession(zone, "pretender", secret);
      const { mandate } = await exchange(session.sessionMandate, [ADMIN_RESOURCE], ["admin.write"]);
      const before = await caracal.snapshot();
      const error = await refusal(caracal.bareAdmin.createZone({ zone: "pretender-made" }, { headers: { authorization: `Bearer ${mandate}` } }));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.WRONG_ZONE));
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("accepts only slug zone names, refuses a duplicate zone, and writes nothing for either", async () => {
      const zone = zoneName("slug");
      await caracal.admin.createZone({ zone });
      const before = await caracal.snapshot();
      for (const bad of ["", "Acme", "acme_corp", "a".repeat(64), "acme.example"]) {
        const error = await refusal(caracal.admin.createZone({ zone: bad }));
        expect(outcome(error)).toEqual(expected(Code.InvalidArgument, Reason.INVALID_ARGUMENT));
        expect(errorDetailOf(error)?.metadata).toEqual({ field: "zone" });
      }
      expect(outcome(await refusal(caracal.admin.createZone({ zone })))).toEqual(expected(Code.AlreadyExists, Reason.ALREADY_EXISTS));
      expect(outcome(await refusal(caracal.admin.createApplication({ zone: "no-such-zone", clientId: "agent" })))).toEqual(
        expected(Code.NotFound, Reason.ZONE_NOT_FOUND),
      );
      expect(await caracal.snapshot()).toEqual(before);
      expect((await caracal.admin.getZone({ zone })).zone!.zone).toBe(zone);
    });
  });

  describe("the admin plane's own protection", () => {
    it("bootstraps an admin profile readable by its owner only, holding a working admin credential", async () => {
      const info = await stat(caracal.profilePath);
      expect(info.mode & 0o777).toBe(0o600);
      expect(caracal.profile).toMatchObject({ target: caracal.baseUrl, zone: "default", client_id: "caracal-admin-cli" });
      expect(caracal.profile.client_secret).toMatch(CLIENT_SECRET);
      const session = await startSession("default", caracal.profile.client_id, caracal.profile.client_secret);
      await exchange(session.sessionMandate, [ADMIN_RESOURCE], ["admin.read", "admin.write"]);
    });

    it("refuses AdminService calls without a mandate with UNAUTHENTICATED and REASON_MANDATE_MISSING, and writes nothing", async () => {
      const before = await caracal.snapshot();
      for (const call of [caracal.bareAdmin.createZone({ zone: zoneName("anonymous") }), caracal.bareAdmin.listZones({})]) {
        expect(outcome(await refusal(call))).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_MISSING));
      }
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("refuses an admin write with a mandate that lacks admin.write with PERMISSION_DENIED and REASON_SCOPE_MISSING", async () => {
      const secret = await addApp("default", "auditor", { [ADMIN_RESOURCE]: ["admin.read"] });
      const session = await startSession("default", "auditor", secret);
      // The STS will not mint admin.write for it...
      expect(outcome(await refusal(exchange(session.sessionMandate, [ADMIN_RESOURCE], ["admin.write"])))).toEqual(
        expected(Code.PermissionDenied, Reason.SCOPE_NOT_GRANTED),
      );
      // ...and its admin.read mandate reads but does not write.
      const { mandate } = await exchange(session.sessionMandate, [ADMIN_RESOURCE], ["admin.read"]);
      const headers = { authorization: `Bearer ${mandate}` };
      expect((await caracal.bareAdmin.listZones({}, { headers })).zones.map((z) => z.zone)).toContain("default");
      const before = await caracal.snapshot();
      const error = await refusal(caracal.bareAdmin.createZone({ zone: zoneName("read-only") }, { headers }));
      expect(outcome(error)).toEqual(expected(Code.PermissionDenied, Reason.SCOPE_MISSING));
      expect(errorDetailOf(error)?.metadata).toEqual({ scope: "admin.write" });
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("demands of every AdminService method a caracal-admin mandate carrying the scope its proto declares", async () => {
      const secret = await addApp("default", "inspector", { [ADMIN_RESOURCE]: ["admin.read"] });
      const session = await startSession("default", "inspector", secret);
      const { mandate } = await exchange(session.sessionMandate, [ADMIN_RESOURCE], ["admin.read"]);
      const admin = caracal.bareAdmin as unknown as Record<string, (request: object, options?: CallOptions) => Promise<unknown>>;
      const authReasons = [Reason.MANDATE_MISSING, Reason.SCOPE_MISSING, Reason.WRONG_AUDIENCE, Reason.WRONG_ZONE, Reason.METHOD_NOT_DECLARED];
      const before = await caracal.snapshot();
      expect(AdminService.methods.length).toBeGreaterThan(15);
      for (const method of AdminService.methods) {
        const requirement = requirementOf(method);
        expect({ method: method.name, requirement }).toMatchObject({ method: method.name, requirement: { resource: ADMIN_RESOURCE } });
        if (!requirement || requirement.public) continue;
        expect(requirement.scopes.length).toBeGreaterThan(0);
        const call = admin[method.localName]!;
        const anonymous = await refusal(call({}));
        expect({ method: method.name, ...outcome(anonymous) }).toEqual({ method: method.name, ...expected(Code.Unauthenticated, Reason.MANDATE_MISSING) });
        const withRead = await call({}, { headers: { authorization: `Bearer ${mandate}` } }).then(
          () => undefined,
          (error: unknown) => ConnectError.from(error),
        );
        const missing = requirement.scopes.find((scope) => scope !== "admin.read");
        if (missing === undefined) {
          // Past the interceptor: whatever the handler says of an empty request, it is not an authorization refusal.
          const reason = withRead ? reasonOf(withRead) : Reason.UNSPECIFIED;
          expect({ method: method.name, refusedByAuthorization: authReasons.includes(reason) }).toEqual({
            method: method.name,
            refusedByAuthorization: false,
          });
        } else {
          expect({ method: method.name, ...outcome(withRead!), scope: errorDetailOf(withRead)?.metadata.scope }).toEqual({
            method: method.name,
            ...expected(Code.PermissionDenied, Reason.SCOPE_MISSING),
            scope: missing,
          });
        }
      }
      expect(await caracal.snapshot()).toEqual(before);
    });

    it("refuses a session mandate, a mandate for another resource and an expired mandate at the admin plane", async () => {
      await caracal.admin.createResource({ zone: "default", resourceId: "helpdesk-api", scopes: [{ name: "admin.read" }] });
      const secret = await addApp("default", "helpdesk", { [ADMIN_RESOURCE]: ["admin.read"], "helpdesk-api": ["admin.read"] });
      const session = await startSession("default", "helpdesk", secret);
      const asBearer = (token: string) => refusal(caracal.bareAdmin.listZones({}, { headers: { authorization: `Bearer ${token}` } }));

      expect(outcome(await asBearer(session.sessionMandate))).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_WRONG_USE));
      const elsewhere = await exchange(session.sessionMandate, ["helpdesk-api"], ["admin.read"]);
      expect(outcome(await asBearer(elsewhere.mandate))).toEqual(expected(Code.PermissionDenied, Reason.WRONG_AUDIENCE));
      const admin = await exchange(session.sessionMandate, [ADMIN_RESOURCE], ["admin.read"]);
      caracal.clock.advance(900 + 6);
      expect(outcome(await asBearer(admin.mandate))).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_EXPIRED));
      expect(outcome(await refusal(caracal.bareAdmin.listZones({}, { headers: { authorization: "Basic abc" } })))).toEqual(
        expected(Code.Unauthenticated, Reason.MANDATE_MALFORMED),
      );
      const oversized = craftToken(headerOf(admin.mandate), { ...claimsOf(admin.mandate), pad: "x".repeat(8 * KIB) }, "c2ln");
      expect(outcome(await asBearer(oversized))).toEqual(expected(Code.Unauthenticated, Reason.MANDATE_TOO_LARGE));
    });
  });

  describe("audit events", () => {
    it("publishes exactly one event per issuance, carrying the response's decision id and what was decided", async () => {
      const { zone, secret } = await zoneWithAgent("audit-allow");
      const session = await startSession(zone, "agent", secret);
      const sid = session.info!.sessionId;
      const sessionEvents = await auditOf(session.decisionId);
      expect(sessionEvents).toHaveLength(1);
      expect(sessionEvents[0]).toMatchObject({
        zone,
        type: EventType.START_SESSION,
        decision: AuditDecision.ALLOW,
        reason: Reason.UNSPECIFIED,
        decisionId: session.decisionId,
        clientId: "agent",
        subject: "agent",
        sessionId: sid,
        rootSessionId: sid,
        mandateId: session.info!.mandateId,
      });
      expect(sessionEvents[0]!.eventId).toMatch(UUID);
      expect(seconds(sessionEvents[0]!.time)).toBe(now());

      const exchanged: ExchangeResponse = await exchange(session.sessionMandate, ["billing-api", "reports-api"], ["invoices.read"]);
      const exchangeEvents = await auditOf(exchanged.decisionId);
      expect(exchangeEvents).toHaveLength(1);
      expect(exchangeEvents[0]).toMatchObject({
        zone,
        type: EventType.EXCHANGE,
        decision: AuditDecision.ALLOW,
        reason: Reason.UNSPECIFIED,
        decisionId: exchanged.decisionId,
        clientId: "agent",
        subject: "agent",
        sessionId: sid,
        rootSessionId: sid,
        resources: ["billing-api", "reports-api"],
        scopes: ["invoices.read"],
        mandateId: exchanged.info!.mandateId,
      });
      expect(exchanged.decisionId).not.toBe(session.decisionId);
    });

    it("publishes exactly one event per refusal, carrying the ErrorDetail's decision id and reason", async () => {
      const { zone, secret } = await zoneWithAgent("audit-deny");
      const session = await startSession(zone, "agent", secret);
      const denied = await refusal(exchange(session.sessionMandate, ["billing-api"], ["invoices.write"]));
      const [event, ...more] = await auditOf(decisionIdOf(denied));
      expect(more).toEqual([]);
      expect(event).toMatchObject({
        zone,
        type: EventType.EXCHANGE,
        decision: AuditDecision.DENY,
        reason: Reason.SCOPE_NOT_GRANTED,
        clientId: "agent",
        sessionId: session.info!.sessionId,
        resources: ["billing-api"],
        scopes: ["invoices.write"],
        mandateId: "",
      });

      const wrongSecret = await refusal(startSession(zone, "agent", `cs_${randomBytes(32).toString("base64url")}`));
      expect(await auditOf(decisionIdOf(wrongSecret))).toMatchObject([
        { zone, type: EventType.START_SESSION, decision: AuditDecision.DENY, reason: Reason.INVALID_CLIENT, clientId: "agent", sessionId: "" },
      ]);
    });

    it("records each admin change with the operator who made it", async () => {
      const zone = zoneName("audit-admin");
      await caracal.admin.createZone({ zone });
      await caracal.audit.settle();
      const changes = caracal.audit.events.filter((tapped) => tapped.event.zone === zone && tapped.event.type === EventType.ADMIN_CHANGE);
      expect(changes.map((tapped) => tapped.event)).toMatchObject([{ action: "zone created", actor: caracal.profile.client_id }]);
    });

    it("logs a refusal of a token that names no zone under its decision id, there being no zone ledger to file it in", async () => {
      const error = await refusal(exchange("garbage", ["billing-api"], ["invoices.read"]));
      const decisionId = decisionIdOf(error);
      expect(decisionId).toMatch(UUID);
      expect(await auditOf(decisionId)).toEqual([]);
      expect(caracal.logLines.filter((line) => line.decision_id === decisionId)).toMatchObject([{ reason: "MANDATE_MALFORMED" }]);
    });

    // Runs last in this block: it checks everything the suite has sent and received so far.
    it("never puts a token or a secret into an audit event or a log line", async () => {
      await caracal.audit.settle();
      expect(caracal.sensitive.size).toBeGreaterThan(50);
      expect(caracal.sensitive).toContain(caracal.profile.client_secret);
      const events = caracal.audit.events.map((tapped) => Buffer.from(tapped.data).toString("latin1"));
      const lines = caracal.logLines.map((line) => JSON.stringify(line));
      expect(events.length).toBeGreaterThan(100);
      expect(lines.length).toBeGreaterThan(100);
      const leaked = [...caracal.sensitive].filter((value) => events.some((e) => e.includes(value)) || lines.some((l) => l.includes(value)));
      expect(leaked).toEqual([]);
    });
  });
});
