import type { Store } from "../store/store.js";
import { findApplication, type ApplicationRecord } from "./applications.js";
import { grantedScopes } from "./grants.js";
import { LoadingCache } from "./loading-cache.js";
import { findResource, type ResourceRecord } from "./resources.js";
import { findZone, type ZoneRecord } from "./zones.js";

/** Options of {@link DirectoryCache}. */
export interface DirectoryCacheOptions {
  /** How long an entry is trusted (default 1 s). */
  readonly ttlMs?: number;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
}

/**
 * What the STS reads on every call (zones, applications with their
 * credentials, grants, resources), cached briefly so `Exchange` does not wait
 * on the store. Changes made through this replica's admin service clear it at
 * once; changes on another replica are seen within `ttlMs`. Revocation, not
 * this cache, is the tool for cutting off access at once.
 */
export class DirectoryCache {
  readonly #store: Store;
  readonly #zones: LoadingCache<ZoneRecord | undefined>;
  readonly #applications: LoadingCache<ApplicationRecord | undefined>;
  readonly #grants: LoadingCache<Map<string, Set<string>>>;
  readonly #resources: LoadingCache<ResourceRecord | undefined>;

  constructor(store: Store, options: DirectoryCacheOptions = {}) {
    this.#store = store;
    const settings = { ttlMs: options.ttlMs ?? 1_000, maxEntries: 10_000, now: options.now };
    this.#zones = new LoadingCache(settings);
    this.#applications = new LoadingCache(settings);
    this.#grants = new LoadingCache(settings);
    this.#resources = new LoadingCache(settings);
  }

  /** The zone with this slug. */
  zone(slug: string): Promise<ZoneRecord | undefined> {
    return this.#zones.get(slug, () => findZone(this.#store, slug));
  }

  /** An application with its credentials. */
  application(zoneId: string, clientId: string): Promise<ApplicationRecord | undefined> {
    return this.#applications.get(`${zoneId}/${clientId}`, () => findApplication(this.#store, zoneId, clientId));
  }

  /** The scopes an application holds, by resource. */
  grants(zoneId: string, clientId: string): Promise<Map<string, Set<string>>> {
    return this.#grants.get(`${zoneId}/${clientId}`, () => grantedScopes(this.#store, zoneId, clientId));
  }

  /** A resource with its scopes. */
  resource(zoneId: string, resourceId: string): Promise<ResourceRecord | undefined> {
    return this.#resources.get(`${zoneId}/${resourceId}`, () => findResource(this.#store, zoneId, resourceId));
  }

  /** Forgets everything; called after every admin change on this replica. */
  clear(): void {
    this.#zones.clear();
    this.#applications.clear();
    this.#grants.clear();
    this.#resources.clear();
  }
}
