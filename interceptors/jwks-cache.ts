import { importJWK, type CryptoKey, type JWK } from "jose";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { MANDATE_ALGORITHMS } from "./mandate-claims.js";
import { MandateError } from "./mandate-error.js";
import type { VerificationKey } from "./verify-mandate.js";

/** Fetches a zone's published keys (a JWK Set's `keys`). */
export type JwksSource = (zone: string) => Promise<readonly JWK[]>;

/** Options of {@link JwksCache}. */
export interface JwksCacheOptions {
  /** Where keys come from: {@link httpJwksSource} or a `GetJwks` call. */
  readonly source: JwksSource;
  /** Re-fetch a zone's keys this often (default 30 s), in the background, before they go stale. */
  readonly refreshIntervalMs?: number;
  /** Serve keys at most this old; past it, refuse with REASON_KEYS_UNAVAILABLE (default 10 min). */
  readonly maxAgeMs?: number;
  /** Least time between fetches caused by an unknown kid, per zone (default 5 s). */
  readonly unknownKidCooldownMs?: number;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  /** Told when a background refresh fails (the cached keys stay in use until `maxAgeMs`). */
  readonly onError?: (error: unknown, zone: string) => void;
}

interface ZoneKeys {
  readonly fetchedAt: number;
  readonly keys: ReadonlyMap<string, VerificationKey>;
}

/**
 * A verifier's cache of zone keys. The first call for a zone fetches its keys;
 * after that they are refreshed in the background every `refreshIntervalMs`,
 * and an unknown `kid` triggers one fetch per cooldown, so a flood of forged
 * kids cannot turn into a flood of fetches. A verifier that has never
 * obtained a zone's keys, or whose keys are older than `maxAgeMs`, refuses
 * (REASON_KEYS_UNAVAILABLE): it fails closed.
 *
 * @example
 * const jwks = new JwksCache({ source: httpJwksSource("http://127.0.0.1:7070") });
 * const claims = await verifyMandate(token, { keys: jwks.resolve, use: "resource", resource: "billing-api" });
 */
export class JwksCache {
  readonly #options: Required<Omit<JwksCacheOptions, "onError">> & Pick<JwksCacheOptions, "onError">;
  readonly #zones = new Map<string, ZoneKeys>();
  readonly #inFlight = new Map<string, Promise<ZoneKeys>>();
  readonly #lastForced = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(options: JwksCacheOptions) {
    this.#options = {
      refreshIntervalMs: 30_000,
      maxAgeMs: 10 * 60_000,
      unknownKidCooldownMs: 5_000,
      now: Date.now,
      ...options,
    };
  }

  /** The key resolver to hand to `verifyMandate`. */
  readonly resolve = async (zone: string, kid: string): Promise<VerificationKey | undefined> => {
    let keys = this.#zones.get(zone) ?? (await this.#fetchOrFail(zone));
    if (!keys.keys.has(kid)) {
      const now = this.#options.now();
      if (now - (this.#lastForced.get(zone) ?? -Infinity) >= this.#options.unknownKidCooldownMs) {
        this.#lastForced.set(zone, now);
        keys = await this.#fetch(zone).catch(() => keys);
      }
    }
    if (this.#options.now() - keys.fetchedAt > this.#options.maxAgeMs) {
      throw new MandateError(Reason.KEYS_UNAVAILABLE, `keys of zone ${zone} could not be refreshed for too long`);
    }
    return keys.keys.get(kid);
  };

  /** Stops background refreshes (lookups still fetch on demand, but nothing is scheduled again). */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers.values()) clearInterval(timer);
    this.#timers.clear();
  }

  async #fetchOrFail(zone: string): Promise<ZoneKeys> {
    try {
      return await this.#fetch(zone);
    } catch (error) {
      throw new MandateError(Reason.KEYS_UNAVAILABLE, `keys of zone ${zone} are not available`, {}, { cause: error });
    }
  }

  #fetch(zone: string): Promise<ZoneKeys> {
    const running = this.#inFlight.get(zone);
    if (running) return running;
    const fetching = (async () => {
      const fetchedAt = this.#options.now();
      const keys = new Map<string, VerificationKey>();
      for (const jwk of await this.#options.source(zone)) {
        // Only keys that say which pinned algorithm they are for; a key set
        // cannot widen what a verifier accepts.
        if (typeof jwk.kid !== "string" || typeof jwk.alg !== "string" || !MANDATE_ALGORITHMS.includes(jwk.alg)) continue;
        if (jwk.d !== undefined) continue; // never accept private key material as a verification key
        // One entry this verifier cannot use (malformed, another curve, a
        // secret) is skipped like any other; it must not cost the zone its good keys.
        const key = await importJWK(jwk, jwk.alg).catch(() => undefined);
        if (!isPublicKey(key)) continue;
        keys.set(jwk.kid, { key, alg: jwk.alg });
      }
      const entry = { fetchedAt, keys };
      this.#zones.set(zone, entry);
      this.#scheduleRefresh(zone);
      return entry;
    })();
    this.#inFlight.set(zone, fetching);
    const done = () => this.#inFlight.delete(zone);
    fetching.then(done, done);
    return fetching;
  }

  #scheduleRefresh(zone: string): void {
    // A fetch still in flight when the cache is closed must not re-arm the timer.
    if (this.#closed || this.#timers.has(zone)) return;
    const timer = setInterval(() => {
      this.#fetch(zone).catch((error: unknown) => this.#options.onError?.(error, zone));
    }, this.#options.refreshIntervalMs);
    timer.unref();
    this.#timers.set(zone, timer);
  }
}

function isPublicKey(key: CryptoKey | Uint8Array | undefined): key is CryptoKey {
  return key !== undefined && !(key instanceof Uint8Array) && key.type === "public";
}

/**
 * Keys from Caracal's HTTP JWKS endpoint, `GET <baseUrl>/.well-known/jwks.json?zone=<zone>`.
 * Any other response than 200 with a JWK Set is an error (and the cache fails closed).
 */
export function httpJwksSource(baseUrl: string, options: { timeoutMs?: number } = {}): JwksSource {
  return async (zone) => {
    const url = new URL("/.well-known/jwks.json", baseUrl);
    url.searchParams.set("zone", zone);
    const response = await fetch(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 5_000), redirect: "error" });
    if (response.status !== 200) throw new Error(`JWKS ${url} answered ${response.status}`);
    const body = (await response.json()) as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new Error(`JWKS ${url} holds no keys array`);
    return body.keys as JWK[];
  };
}
