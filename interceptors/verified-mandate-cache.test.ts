import { describe, expect, it } from "vitest";
import type { MandateClaims } from "./mandate-claims.js";
import { VerifiedMandateCache } from "./verified-mandate-cache.js";

const claims = (jti: string, exp: number, sid = "s1") => ({ jti, exp, sid }) as unknown as MandateClaims;

describe("VerifiedMandateCache", () => {
  it("returns claims until the mandate expires, then forgets them", () => {
    const cache = new VerifiedMandateCache();
    cache.set("token-a", claims("a", 100));
    expect(cache.get("token-a", 99_999)?.jti).toBe("a");
    expect(cache.get("token-a", 100_000)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it("keys on the whole token: a different token never shares an entry", () => {
    const cache = new VerifiedMandateCache();
    cache.set("header.payload.sig", claims("a", 100));
    expect(cache.get("header.payload.sig2", 0)).toBeUndefined();
    expect(cache.get("header.payload", 0)).toBeUndefined();
  });

  it("is bounded, dropping the oldest entry first", () => {
    const cache = new VerifiedMandateCache(2);
    cache.set("t1", claims("1", 100));
    cache.set("t2", claims("2", 100));
    cache.set("t3", claims("3", 100));
    expect(cache.get("t1", 0)).toBeUndefined();
    expect(cache.get("t3", 0)?.jti).toBe("3");
  });

  it("drops entries by predicate, e.g. those a revocation covers", () => {
    const cache = new VerifiedMandateCache();
    cache.set("t1", claims("1", 100, "session-x"));
    cache.set("t2", claims("2", 100, "session-y"));
    cache.deleteWhere((c) => c.sid === "session-x");
    expect(cache.get("t1", 0)).toBeUndefined();
    expect(cache.get("t2", 0)?.jti).toBe("2");
  });
});
