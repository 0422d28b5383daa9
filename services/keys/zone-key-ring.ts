import { createPrivateKey, type KeyObject } from "node:crypto";
import { importJWK, type CryptoKey, type JWK } from "jose";
import type { VerificationKey } from "../../interceptors/verify-mandate.js";
import type { Store } from "../store/store.js";
import type { KeyEncryptionKey } from "./key-encryption-key.js";
import { effectiveState, findZoneKeysBySlug, sealContext, type ZoneKeyRecord } from "./zone-keys.js";

/** The key a zone signs with now. */
export interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly key: KeyObject;
}

interface ZoneKeys {
  readonly loadedAt: number;
  readonly records: readonly ZoneKeyRecord[];
  readonly verification: ReadonlyMap<string, { readonly record: ZoneKeyRecord; readonly key: CryptoKey }>;
  signer?: Promise<SigningKey>;
}

/** Options of {@link ZoneKeyRing}. */
export interface ZoneKeyRingOptions {
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  /** How long a zone's keys are used before they are read again (default 5 s). */
  readonly refreshMs?: number;
  /** Least time between reloads caused by an unknown kid, so forged kids cannot flood the store (default 1 s). */
  readonly unknownKidCooldownMs?: number;
}

/**
 * The STS's in-memory view of zone keys: the current signing key (unsealed
 * once, then cached), the published public keys, and a resolver for
 * `verifyMandate`. Signing and verifying never touch the store on the hot
 * path; keys are re-read every `refreshMs`, on an unknown kid (rate-limited),
 * or when told a zone's keys changed.
 */
export class ZoneKeyRing {
  readonly #store: Store;
  readonly #kek: KeyEncryptionKey;
  readonly #now: () => number;
  readonly #refreshMs: number;
  readonly #cooldownMs: number;
  readonly #zones = new Map<string, Promise<ZoneKeys>>();
  readonly #lastForcedLoad = new Map<string, number>();

  constructor(store: Store, kek: KeyEncryptionKey, options: ZoneKeyRingOptions = {}) {
    this.#store = store;
    this.#kek = kek;
    this.#now = options.now ?? Date.now;
    this.#refreshMs = options.refreshMs ?? 5_000;
    this.#cooldownMs = options.unknownKidCooldownMs ?? 1_000;
  }

  /**
   * Finds a zone's key for `verifyMandate`. Retired keys (and retiring ones
   * past their retire time) are returned marked retired, so the refusal says why.
   */
  readonly resolve = async (zone: string, kid: string): Promise<VerificationKey | undefined> => {
    let keys = await this.#keys(zone);
    if (!keys.verification.has(kid)) {
      const last = this.#lastForcedLoad.get(zone) ?? -Infinity;
      if (this.#now() - last < this.#cooldownMs) return undefined;
      this.#lastForcedLoad.set(zone, this.#now());
      keys = await this.#keys(zone, { force: true });
    }
    const entry = keys.verification.get(kid);
    if (!entry) return undefined;
    return { key: entry.key, alg: entry.record.algorithm, retired: effectiveState(entry.record, this.#now()) === "retired" };
  };

  /** The zone's current signing key. */
  async signingKey(zone: string): Promise<SigningKey> {
    const keys = await this.#keys(zone);
    keys.signer ??= this.#unsealCurrent(keys.records);
    return keys.signer;
  }

  /** The public keys verifiers must accept now: next, current, and retiring ones not yet past their retire time. */
  async publishedKeys(zone: string): Promise<JWK[]> {
    const keys = await this.#keys(zone);
    const now = this.#now();
    return keys.records.filter((record) => effectiveState(record, now) !== "retired").map((record) => record.publicJwk);
  }

  /** Forgets a zone's cached keys, e.g. after a rotation on this replica. */
  invalidate(zone: string): void {
    this.#zones.delete(zone);
  }

  async #keys(zone: string, { force = false } = {}): Promise<ZoneKeys> {
    const cached = this.#zones.get(zone);
    if (cached && !force) {
      const keys = await cached;
      if (this.#now() - keys.loadedAt < this.#refreshMs) return keys;
      if (this.#zones.get(zone) !== cached) return this.#keys(zone);
    }
    const loading = this.#load(zone);
    this.#zones.set(zone, loading);
    // A failed load must not stick: the next call tries again.
    loading.catch(() => this.#zones.get(zone) === loading && this.#zones.delete(zone));
    return loading;
  }

  async #load(zone: string): Promise<ZoneKeys> {
    const loadedAt = this.#now();
    const records = await findZoneKeysBySlug(this.#store, zone);
    const verification = new Map<string, { record: ZoneKeyRecord; key: CryptoKey }>();
    for (const record of records) {
      verification.set(record.kid, { record, key: (await importJWK(record.publicJwk, record.algorithm)) as CryptoKey });
    }
    return { loadedAt, records, verification };
  }

  async #unsealCurrent(records: readonly ZoneKeyRecord[]): Promise<SigningKey> {
    const current = records.find((record) => record.state === "current");
    if (!current) throw new Error("zone has no current signing key");
    const pem = this.#kek.open(current.sealedPrivateKey, sealContext(current.zoneId, current.kid)).toString("utf8");
    return { kid: current.kid, alg: current.algorithm, key: createPrivateKey(pem) };
  }
}
