/**
 * A test mint for mandates: zone keys, a key resolver over them, well-formed
 * mandates with overridable header and claims, and hand-crafted hostile
 * tokens that jose refuses to produce. Shared by the verifier's tests and the
 * attack-vector tests of the gRPC adapters.
 */
import { createHmac, randomUUID } from "node:crypto";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTHeaderParameters } from "jose";
import {
  issuerForZone,
  MANDATE_TYPE,
  stsAudienceForZone,
  type MandateUse,
} from "../../interceptors/mandate-claims.js";
import type { MandateKeyResolver, VerifyMandateOptions } from "../../interceptors/verify-mandate.js";

/** A zone signing key pair, as the STS holds it. */
export interface ZoneKey {
  readonly zone: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

/** Generates an ES256 zone key (extractable, so tests can misuse its public half). */
export async function generateZoneKey(zone: string, kid: string): Promise<ZoneKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { zone, kid, privateKey, publicKey };
}

/**
 * The keys zones have published, as a verifier sees them. `resolve` is a
 * {@link MandateKeyResolver}: it looks a `kid` up only within the named zone.
 */
export class ZoneKeyring {
  readonly #zones = new Map<string, Map<string, { key: ZoneKey; retired: boolean }>>();

  /** Generates a key and publishes it. */
  async generate(zone: string, kid: string): Promise<ZoneKey> {
    const key = await generateZoneKey(zone, kid);
    this.publish(key);
    return key;
  }

  publish(key: ZoneKey): void {
    let zone = this.#zones.get(key.zone);
    if (!zone) this.#zones.set(key.zone, (zone = new Map()));
    zone.set(key.kid, { key, retired: false });
  }

  /** Marks a published key as retired past its grace period. */
  retire(key: ZoneKey): void {
    const entry = this.#zones.get(key.zone)?.get(key.kid);
    if (!entry) throw new TypeError(`key ${key.kid} of zone ${key.zone} is not published`);
    entry.retired = true;
  }

  readonly resolve: MandateKeyResolver = (zone, kid) => {
    const entry = this.#zones.get(zone)?.get(kid);
    return entry && { key: entry.key.publicKey, alg: "ES256", retired: entry.retired };
  };
}

/** Header or claim overrides: a value replaces the default, `undefined` removes the member. */
export type Overrides = Readonly<Record<string, unknown>>;

/** The resource and scope a default resource mandate is for. */
export const TEST_RESOURCE = "billing-api";
export const TEST_SCOPE = "invoices.read";

export interface MintOptions {
  /** The signing key; its zone and kid are the defaults. */
  readonly key: ZoneKey;
  /** The clock, in milliseconds since the epoch. */
  readonly now: () => number;
  /** `resource` (default: for {@link TEST_RESOURCE}, 5 minutes) or `session` (for the STS, 1 hour). */
  readonly use?: MandateUse;
  /** The zone the mandate claims (`zone` and `iss`); the key's zone by default. */
  readonly zone?: string;
  readonly header?: Overrides;
  readonly claims?: Overrides;
}

/** The protected header the mint signs: `{alg, typ, kid}` plus overrides. */
export function mandateHeader(options: Pick<MintOptions, "key" | "header">): Record<string, unknown> {
  return applyOverrides({ alg: "ES256", typ: MANDATE_TYPE, kid: options.key.kid }, options.header);
}

/** The claims the mint signs, exactly as `MandateClaims` describes them, plus overrides. */
export function mandateClaims(options: Omit<MintOptions, "header">): Record<string, unknown> {
  const zone = options.zone ?? options.key.zone;
  const use = options.use ?? "resource";
  const iat = Math.floor(options.now() / 1000);
  const defaults: Record<string, unknown> = {
    iss: issuerForZone(zone),
    sub: "agent-billing",
    aud: use === "resource" ? [TEST_RESOURCE] : [stsAudienceForZone(zone)],
    exp: iat + (use === "resource" ? 300 : 3600),
    iat,
    nbf: iat,
    jti: randomUUID(),
    zone,
    use,
    client_id: "agent-billing",
    sid: "sess-1",
    root_sid: "sess-root",
    scope: TEST_SCOPE,
    target: use === "resource" ? [TEST_RESOURCE] : [],
    policy_set_version: 3,
  };
  return applyOverrides(defaults, options.claims);
}

/**
 * Signs a mandate with jose, as the STS would.
 *
 * @example
 * const token = await mintMandate({ key, now: () => t, claims: { scope: "invoices.read invoices.write" } });
 */
export async function mintMandate(options: MintOptions): Promise<string> {
  return new SignJWT(mandateClaims(options))
    .setProtectedHeader(mandateHeader(options) as JWTHeaderParameters)
    .sign(options.key.privateKey);
}

// -- Hostile tokens, assembled by hand -------------------------------------

/** base64url without padding. */
export function base64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString("base64url");
}

/**
 * A token from any header and claims and any signature text. Objects are
 * JSON-encoded; a string is taken as the JSON text itself, for what
 * `JSON.stringify` cannot write (`1e400`, duplicate members).
 */
export function craftToken(header: unknown, claims: unknown, signature = ""): string {
  const segment = (value: unknown) => base64url(typeof value === "string" ? value : JSON.stringify(value));
  return `${segment(header)}.${segment(claims)}.${signature}`;
}

/** Signs any header and claims (as {@link craftToken} takes them) with ES256 through WebCrypto, including what jose will not sign. */
export async function signCompact(header: unknown, claims: unknown, privateKey: CryptoKey): Promise<string> {
  const input = craftToken(header, claims).slice(0, -1);
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, Buffer.from(input));
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

/** Signs any header and claims (as {@link craftToken} takes them) with HMAC-SHA256 under `secret`: the key-confusion attack. */
export function signHs256(header: unknown, claims: unknown, secret: string | Uint8Array): string {
  const input = craftToken(header, claims).slice(0, -1);
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

/** The forms in which an attacker may feed a public key to a verifier as an HMAC secret. */
export async function publicKeyAsSecret(
  publicKey: CryptoKey,
  encoding: "pem" | "pem-leading-newline" | "pem-leading-spaces" | "der" | "der-base64" | "jwk-json",
): Promise<string | Uint8Array> {
  const pem = await exportSPKI(publicKey);
  const body = pem.replace(/-----[A-Z ]+-----|\s/g, "");
  switch (encoding) {
    case "pem":
      return pem;
    case "pem-leading-newline":
      return `\n${pem}`;
    case "pem-leading-spaces":
      return `  ${pem}`;
    case "der":
      return new Uint8Array(Buffer.from(body, "base64"));
    case "der-base64":
      return body;
    case "jwk-json":
      return JSON.stringify(await exportJWK(publicKey));
  }
}

/** The three segments of a compact token, the first two decoded. */
export function decodeToken(token: string): { header: Record<string, unknown>; claims: Record<string, unknown>; signature: string } {
  const [header = "", claims = "", signature = ""] = token.split(".");
  return {
    header: JSON.parse(Buffer.from(header, "base64url").toString("utf8")),
    claims: JSON.parse(Buffer.from(claims, "base64url").toString("utf8")),
    signature,
  };
}

/** A delegation chain `depth` actors deep. */
export function actorChain(depth: number): Record<string, unknown> | undefined {
  let act: Record<string, unknown> | undefined;
  for (let hop = depth; hop >= 1; hop -= 1) {
    act = { sub: `actor-${hop}`, client_id: `actor-${hop}`, sid: `sess-actor-${hop}`, ...(act && { act }) };
  }
  return act;
}

function applyOverrides(defaults: Record<string, unknown>, overrides: Overrides = {}): Record<string, unknown> {
  const result = { ...defaults, ...overrides };
  for (const [name, value] of Object.entries(overrides)) if (value === undefined) delete result[name];
  return result;
}

// -- Attack vectors: the data in interceptors/attack-vectors.json ----------

/** One row of the attack-vector table. */
export interface AttackVector {
  /** What is shown, as a sentence; also the test name. */
  readonly name: string;
  /** How the token is made; see {@link buildAttackToken}. */
  readonly build: string;
  readonly params?: Readonly<Record<string, unknown>>;
  /** Verifier options overriding {@link ATTACK_EDGE}; `null` unsets one. */
  readonly edge?: Readonly<Record<string, unknown>>;
  /** `{code: "OK"}` when accepted, else the gRPC code name, the reason name and any metadata. */
  readonly expect: { readonly code: string; readonly reason?: string; readonly metadata?: Readonly<Record<string, string>> };
}

/** The keys the vectors are built from: zone `acme` is the zone under attack, `globex` another zone. */
export interface AttackFixture {
  readonly keyring: ZoneKeyring;
  /** acme's current key, `acme-k1`. */
  readonly zoneKey: ZoneKey;
  /** acme's retired key, `acme-k0`. */
  readonly retiredKey: ZoneKey;
  /** globex's key, `globex-k1`. */
  readonly otherZoneKey: ZoneKey;
  readonly now: () => number;
}

/** The edge the vectors are presented at, before each vector's `edge` overrides. */
export const ATTACK_EDGE = {
  use: "resource",
  resource: TEST_RESOURCE,
  scopes: [TEST_SCOPE],
  allowedZones: ["acme"],
} as const;

export async function createAttackFixture(now: () => number): Promise<AttackFixture> {
  const keyring = new ZoneKeyring();
  const retiredKey = await keyring.generate("acme", "acme-k0");
  keyring.retire(retiredKey);
  const zoneKey = await keyring.generate("acme", "acme-k1");
  const otherZoneKey = await keyring.generate("globex", "globex-k1");
  return { keyring, zoneKey, retiredKey, otherZoneKey, now };
}

/** The verifier options for a vector: {@link ATTACK_EDGE} with its overrides, keys from the fixture. */
export function attackEdgeOptions(vector: AttackVector, fixture: AttackFixture): VerifyMandateOptions {
  const options: Record<string, unknown> = { ...ATTACK_EDGE, keys: fixture.keyring.resolve, now: fixture.now };
  for (const [name, value] of Object.entries(vector.edge ?? {})) {
    if (value === null) delete options[name];
    else options[name] = value;
  }
  return options as unknown as VerifyMandateOptions;
}

/**
 * Builds the token a vector describes. Kinds (`build`) and their params:
 * - `mandate`: signed by jose. `signer` (`zone` | `retired-key` | `other-zone`),
 *   `use`, `zone`, `header`, `claims`, `omitHeader`, `omitClaims`,
 *   `secondsFromNow` (`exp`/`nbf`/`iat` relative to now), `actDepth`, `padBytes`.
 * - `hand-signed`: the same, signed through WebCrypto (for what jose refuses);
 *   `rawClaims` splices JSON text in verbatim, e.g. `{"exp": "1e400"}`.
 * - `attacker-signed`: a well-formed mandate signed with a fresh attacker key of
 *   `alg` (`ES256`, `ES384`, `RS256`, `EdDSA`); `embedJwk` puts that key in the header.
 * - `hmac-with-public-key`: HS256 with the zone public key in `encoding` as secret.
 * - `unsigned`: the mandate's header and claims with overrides, and `signature` as given.
 * - `raw-segments`: a valid mandate with `headerText` and/or `payloadText` swapped in verbatim.
 * - `tampered`: a valid mandate whose claims are overridden after signing.
 * - `truncated`: a valid mandate cut to `parts` segments or `signatureChars` of signature.
 * - `mangled`: a valid mandate with `append` added to segment `part`.
 * - `literal`: `token` as given.
 */
export async function buildAttackToken(vector: AttackVector, fixture: AttackFixture): Promise<string> {
  // Params are JSON from the table; each kind reads the few it documents.
  const params = (vector.params ?? {}) as Record<string, any>;
  const signer = { zone: fixture.zoneKey, "retired-key": fixture.retiredKey, "other-zone": fixture.otherZoneKey }[
    (params.signer ?? "zone") as string
  ];
  if (!signer) throw new TypeError(`vector "${vector.name}": unknown signer ${params.signer}`);
  const mint: MintOptions = {
    key: signer,
    now: fixture.now,
    use: params.use,
    zone: params.zone,
    header: { ...params.header, ...omitted(params.omitHeader) },
    claims: { ...timeClaims(fixture.now, params.secondsFromNow), ...actAndPad(params), ...params.claims, ...omitted(params.omitClaims) },
  };
  const valid = () => mintMandate({ key: fixture.zoneKey, now: fixture.now });
  switch (vector.build) {
    case "mandate":
      return mintMandate(mint);
    case "hand-signed": {
      let claims = JSON.stringify(mandateClaims(mint));
      for (const [name, text] of Object.entries<string>(params.rawClaims ?? {})) {
        claims = claims.replace(new RegExp(`"${name}":("[^"]*"|[^,}]*)`), `"${name}":${text}`);
      }
      return signCompact(mandateHeader(mint), claims, signer.privateKey);
    }
    case "attacker-signed": {
      const alg = (params.alg ?? "ES256") as string;
      const attacker = await generateKeyPair(alg, { extractable: true });
      const header = { ...mandateHeader(mint), alg, ...(params.embedJwk && { jwk: await exportJWK(attacker.publicKey) }) };
      return new SignJWT(mandateClaims(mint)).setProtectedHeader(header as JWTHeaderParameters).sign(attacker.privateKey);
    }
    case "hmac-with-public-key": {
      const secret = await publicKeyAsSecret(fixture.zoneKey.publicKey, params.encoding);
      return signHs256(mandateHeader({ ...mint, header: { alg: "HS256", ...mint.header } }), mandateClaims(mint), secret);
    }
    case "unsigned":
      return craftToken(mandateHeader(mint), mandateClaims(mint), params.signature ?? "");
    case "raw-segments": {
      const [header, payload, signature] = (await valid()).split(".");
      const headerSegment = params.headerText === undefined ? header : base64url(params.headerText);
      const payloadSegment = params.payloadText === undefined ? payload : base64url(params.payloadText);
      return `${headerSegment}.${payloadSegment}.${signature}`;
    }
    case "tampered": {
      const { header, claims, signature } = decodeToken(await valid());
      return craftToken(header, { ...claims, ...params.claims }, signature);
    }
    case "truncated": {
      const token = await valid();
      if (params.parts !== undefined) return token.split(".").slice(0, params.parts).join(".");
      const [header, payload, signature] = token.split(".");
      return `${header}.${payload}.${signature!.slice(0, params.signatureChars)}`;
    }
    case "mangled": {
      const segments = (await valid()).split(".");
      const index = ["header", "payload", "signature"].indexOf(params.part);
      segments[index] += params.append;
      return segments.join(".");
    }
    case "literal":
      return params.token;
    default:
      throw new TypeError(`vector "${vector.name}": unknown build kind ${vector.build}`);
  }
}

function omitted(names: readonly string[] = []): Overrides {
  return Object.fromEntries(names.map((name) => [name, undefined]));
}

function timeClaims(now: () => number, offsets: Readonly<Record<string, number>> = {}): Overrides {
  const seconds = Math.floor(now() / 1000);
  return Object.fromEntries(Object.entries(offsets).map(([claim, offset]) => [claim, seconds + offset]));
}

function actAndPad(params: Record<string, any>): Overrides {
  return {
    ...(params.actDepth !== undefined && { act: actorChain(params.actDepth) }),
    ...(params.padBytes !== undefined && { pad: "x".repeat(params.padBytes) }),
  };
}
