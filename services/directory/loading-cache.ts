/**
 * A small read-through cache: each key is loaded once (concurrent callers share
 * the load), kept for `ttlMs`, and the oldest entries are dropped beyond
 * `maxEntries`, so keys chosen by unauthenticated callers cannot grow it
 * without bound. A failed load is not cached.
 */
export class LoadingCache<V> {
  readonly #entries = new Map<string, { readonly at: number; readonly value: Promise<V> }>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: { ttlMs: number; maxEntries: number; now?: () => number }) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries;
    this.#now = options.now ?? Date.now;
  }

  /** The cached value for `key`, or the result of `load` (cached) when absent or stale. */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const entry = this.#entries.get(key);
    if (entry && this.#now() - entry.at < this.#ttlMs) return entry.value;
    const value = load();
    this.#entries.delete(key);
    this.#entries.set(key, { at: this.#now(), value });
    value.catch(() => {
      if (this.#entries.get(key)?.value === value) this.#entries.delete(key);
    });
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    return value;
  }

  /** Drops every entry. */
  clear(): void {
    this.#entries.clear();
  }
}
