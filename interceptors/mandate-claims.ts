/**
 * What a mandate is: a JWS compact token whose header names its key (`kid`)
 * and type (`typ`, RFC 8725), and whose claims say who holds it, for what,
 * where and until when.
 */

/** The explicit `typ` header every mandate carries; anything else is refused. */
export const MANDATE_TYPE = "caracal-mandate+jwt";

/** The signature algorithms a verifier accepts. Pinned: never taken from the token. */
export const MANDATE_ALGORITHMS: readonly string[] = ["ES256"];

/** The largest mandate anyone accepts, in bytes. */
export const MAX_MANDATE_BYTES = 8 * 1024;

/** What a mandate is good for: `session` only at `Exchange`, `resource` only at its targets. */
export type MandateUse = "session" | "resource";

/** One hop of an RFC 8693 delegation chain: the `act` claim, nested for each earlier actor. */
export interface ActorClaim {
  /** The acting party's subject. */
  readonly sub: string;
  /** The acting application. */
  readonly client_id: string;
  /** The acting party's session. */
  readonly sid: string;
  /** The actor before this one, if any. */
  readonly act?: ActorClaim;
}

/** The claims of a verified mandate. */
export interface MandateClaims {
  /** Issuer: `urn:caracal:zone:<zone>`. */
  readonly iss: string;
  /** Subject: the application's client id (the delegating one when `act` is present). */
  readonly sub: string;
  /** Audiences: the target resource ids, or the zone's STS for a session mandate. */
  readonly aud: string | readonly string[];
  /** Expiry, seconds since the epoch. */
  readonly exp: number;
  /** Issued at, seconds since the epoch. */
  readonly iat: number;
  /** Not before, seconds since the epoch. */
  readonly nbf: number;
  /** Unique id (random UUID). */
  readonly jti: string;
  /** The zone slug. */
  readonly zone: string;
  /** Session or resource. */
  readonly use: MandateUse;
  /** The application the mandate was issued to. */
  readonly client_id: string;
  /** The session. */
  readonly sid: string;
  /** The first session of the chain this one descends from. */
  readonly root_sid: string;
  /** Granted scopes, space-separated (RFC 8693 `scope`). */
  readonly scope: string;
  /** Resource ids the mandate is good at; empty for session mandates. */
  readonly target: readonly string[];
  /** The delegation chain, when the mandate was obtained with an actor token. */
  readonly act?: ActorClaim;
  /** The policy-set version that allowed it; 0 when grants alone decided. */
  readonly policy_set_version: number;
  /** Session labels given at `StartSession`, on session mandates; policies may read them. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** The issuer of a zone's mandates. */
export function issuerForZone(zone: string): string {
  return `urn:caracal:zone:${zone}`;
}

/** The audience of a zone's session mandates: its STS. */
export function stsAudienceForZone(zone: string): string {
  return `urn:caracal:zone:${zone}:sts`;
}

/** Splits the `scope` claim into its scopes. */
export function scopesOf(claims: Pick<MandateClaims, "scope">): string[] {
  return claims.scope === "" ? [] : claims.scope.split(" ");
}

/** Zone slugs: lower-case letters, digits and dashes, 1 to 63 characters. */
export const ZONE_PATTERN = /^[a-z0-9-]{1,63}$/;
