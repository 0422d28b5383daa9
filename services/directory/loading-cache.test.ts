import { describe, expect, it } from "vitest";
import { LoadingCache } from "./loading-cache.js";

describe("LoadingCache", () => {
  it("loads once for concurrent callers and again after the TTL", async () => {
    let now = 0;
    let loads = 0;
    const cache = new LoadingCache<number>({ ttlMs: 1_000, maxEntries: 10, now: () => now });
    const load = async () => ++loads;
    expect(await Promise.all([cache.get("a", load), cache.get("a", load)])).toEqual([1, 1]);
    now = 999;
    expect(await cache.get("a", load)).toBe(1);
    now = 1_000;
    expect(await cache.get("a", load)).toBe(2);
  });

  it("does not keep a failed load", async () => {
    const cache = new LoadingCache<string>({ ttlMs: 1_000, maxEntries: 10 });
    await expect(cache.get("a", () => Promise.reject(new Error("store down")))).rejects.toThrow("store down");
    expect(await cache.get("a", async () => "ok")).toBe("ok");
  });

  it("drops the oldest entries beyond its bound", async () => {
    const cache = new LoadingCache<string>({ ttlMs: 60_000, maxEntries: 2 });
    for (const key of ["a", "b", "c"]) await cache.get(key, async () => key);
    let reloaded = false;
    await cache.get("a", async () => ((reloaded = true), "a"));
    expect(reloaded).toBe(true);
  });

  it("forgets everything on clear", async () => {
    const cache = new LoadingCache<number>({ ttlMs: 60_000, maxEntries: 10 });
    await cache.get("a", async () => 1);
    cache.clear();
    expect(await cache.get("a", async () => 2)).toBe(2);
  });
});
