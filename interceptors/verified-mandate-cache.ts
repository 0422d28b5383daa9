import type { MandateClaims } from "./mandate-claims.js";

/**
 * Mandates that already passed `verifyMandate`, keyed by the whole token, so
 * a token presented again costs a map lookup instead of a signature check.
 * Entries end when the mandate expires; the cache is bounded (oldest entries
 * go first) and entries can be dropped by predicate, e.g. on revocation.
 *
 * Only what is fixed by the signed token may be skipped this way: callers
 * still check what depends on the call (resource, scopes, use) and on the
 * moment (expiry is checked here, revocation by the caller).
 */
export class VerifiedMandateCache {
  readonly #entries = new Map<string, MandateClaims>();
  readonly #maxEntries: number;

  constructor(maxEntries = 10_000) {
    this.#maxEntries = maxEntries;
  }

  /** The claims of a token verified before and not yet expired at `nowMs`. */
  get(token: string, nowMs: number): MandateClaims | undefined {
    const claims = this.#entries.get(token);
    if (claims === undefined) return undefined;
    if (claims.exp * 1000 <= nowMs) {
      this.#entries.delete(token);
      return undefined;
    }
    return claims;
  }

  /** Remembers a verified token. */
  set(token: string, claims: MandateClaims): void {
    this.#entries.delete(token);
    this.#entries.set(token, claims);
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  /** Drops every entry whose claims match, e.g. those a revocation covers. */
  deleteWhere(matches: (claims: MandateClaims) => boolean): void {
    for (const [token, claims] of this.#entries) if (matches(claims)) this.#entries.delete(token);
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }
}
