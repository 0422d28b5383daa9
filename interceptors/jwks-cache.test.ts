import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { exportJWK, generateKeyPair, generateSecret, type CryptoKey, type JWK } from "jose";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import { generateZoneKey, mintMandate, TEST_RESOURCE, type ZoneKey } from "../test/support/mandates.js";
import { httpJwksSource, JwksCache, type JwksCacheOptions } from "./jwks-cache.js";
import { MandateError } from "./mandate-error.js";
import { verifyMandate } from "./verify-mandate.js";

// 2030-01-01T12:00:00Z: the cache's clock, frozen unless a test moves it.
const T0 = Date.UTC(2030, 0, 1, 12);
const clock = { ms: T0 };
const now = () => clock.ms;

interface Reply {
  readonly status?: number;
  readonly body: string | object;
  readonly headers?: Record<string, string>;
}

/**
 * A JWKS endpoint the test controls: what it answers (`reply`), how often it
 * was asked (`hits`), and a promise for the nth hit, so tests wait on the
 * server instead of sleeping.
 */
class JwksServer {
  reply: (request: IncomingMessage) => Reply | "hang" = () => ({ body: { keys: [] } });
  hits = 0;
  readonly requests: URL[] = [];
  readonly #server: Server;
  #waiters: { hits: number; resolve: () => void }[] = [];
  #hanging: (() => void)[] = [];

  constructor() {
    this.#server = createServer((request, response) => {
      this.hits += 1;
      this.requests.push(new URL(request.url!, "http://localhost"));
      const reply = this.reply(request);
      if (reply === "hang") {
        this.#hanging.push(() => response.destroy());
      } else {
        const body = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
        response.writeHead(reply.status ?? 200, { "content-type": "application/json", ...reply.headers }).end(body);
      }
      this.#waiters = this.#waiters.filter((waiter) => (waiter.hits <= this.hits ? (waiter.resolve(), false) : true));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Serves these keys with 200. */
  serve(...keys: JWK[]): void {
    this.reply = () => ({ body: { keys } });
  }

  /** Resolves once the server has been hit `count` more times. */
  nextHits(count = 1): Promise<void> {
    const target = this.hits + count;
    return new Promise((resolve) => this.#waiters.push({ hits: target, resolve }));
  }

  async close(): Promise<void> {
    for (const release of this.#hanging) release();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

async function publicJwk(key: ZoneKey): Promise<JWK> {
  return { ...(await exportJWK(key.publicKey)), kid: key.kid, alg: "ES256", use: "sig" };
}

let k1: ZoneKey;
let k2: ZoneKey;
let server: JwksServer;
let baseUrl: string;
const caches: JwksCache[] = [];

beforeAll(async () => {
  k1 = await generateZoneKey("acme", "acme-k1");
  k2 = await generateZoneKey("acme", "acme-k2");
});

beforeEach(async () => {
  clock.ms = T0;
  server = new JwksServer();
  baseUrl = await server.listen();
  server.serve(await publicJwk(k1));
});

afterEach(async () => {
  for (const cache of caches.splice(0)) cache.close();
  await server.close();
});

function cache(options: Partial<JwksCacheOptions> = {}): JwksCache {
  const created = new JwksCache({ source: httpJwksSource(baseUrl), now, ...options });
  caches.push(created);
  return created;
}

async function refusal(outcome: Promise<unknown>): Promise<MandateError> {
  const error = await outcome.then(
    () => {
      throw new Error("expected a refusal");
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(MandateError);
  return error as MandateError;
}

async function expectKeysUnavailable(outcome: Promise<unknown>): Promise<void> {
  const error = await refusal(outcome);
  expect({ reason: Reason[error.reason], code: Code[error.code] }).toEqual({ reason: "KEYS_UNAVAILABLE", code: "Unavailable" });
}

/** Whether the resolved key is k's public key. */
async function isKey(resolved: { key: unknown } | undefined, key: ZoneKey): Promise<boolean> {
  if (!resolved) return false;
  const [a, b] = await Promise.all([exportJWK(resolved.key as CryptoKey), exportJWK(key.publicKey)]);
  return a.x === b.x && a.y === b.y;
}

describe("JwksCache", () => {
  it("fetches a zone's keys on first use and resolves a kid to its public key", async () => {
    const jwks = cache();
    const resolved = await jwks.resolve("acme", "acme-k1");
    expect(resolved?.alg).toBe("ES256");
    expect(await isKey(resolved, k1)).toBe(true);
    expect(server.requests.map((url) => url.pathname + url.search)).toEqual(["/.well-known/jwks.json?zone=acme"]);
  });

  it("verifies a mandate end to end as the resolver of verifyMandate", async () => {
    const jwks = cache();
    const token = await mintMandate({ key: k1, now });
    await expect(verifyMandate(token, { keys: jwks.resolve, use: "resource", resource: TEST_RESOURCE, now })).resolves.toMatchObject({
      zone: "acme",
    });
  });

  it("serves later lookups from memory", async () => {
    const jwks = cache();
    for (let i = 0; i < 20; i += 1) await jwks.resolve("acme", "acme-k1");
    expect(server.hits).toBe(1);
  });

  it("shares one fetch among concurrent first lookups", async () => {
    const jwks = cache();
    const resolved = await Promise.all(Array.from({ length: 50 }, () => jwks.resolve("acme", "acme-k1")));
    expect(resolved.every((key) => key !== undefined)).toBe(true);
    expect(server.hits).toBe(1);
  });

  it("keeps each zone's keys apart", async () => {
    const globex = await generateZoneKey("globex", "globex-k1");
    const globexJwk = await publicJwk(globex);
    const acmeJwk = await publicJwk(k1);
    server.reply = (request) => ({ body: { keys: request.url!.includes("zone=globex") ? [globexJwk] : [acmeJwk] } });
    const jwks = cache();
    expect(await isKey(await jwks.resolve("globex", "globex-k1"), globex)).toBe(true);
    expect(await jwks.resolve("acme", "globex-k1")).toBeUndefined();
  });

  describe("fails closed", () => {
    it("refuses with KEYS_UNAVAILABLE when it never obtained keys and the source answers 503", async () => {
      server.reply = () => ({ status: 503, body: "unavailable" });
      await expectKeysUnavailable(cache().resolve("acme", "acme-k1"));
    });

    it("refuses with KEYS_UNAVAILABLE when it never obtained keys and nothing listens at the source", async () => {
      await server.close();
      server = new JwksServer(); // for afterEach; the closed address refuses connections
      await server.listen();
      await expectKeysUnavailable(cache().resolve("acme", "acme-k1"));
    });

    it("refuses a mandate through verifyMandate with KEYS_UNAVAILABLE, not as a bad token", async () => {
      server.reply = () => ({ status: 500, body: "boom" });
      const token = await mintMandate({ key: k1, now });
      await expectKeysUnavailable(verifyMandate(token, { keys: cache().resolve, use: "resource", resource: TEST_RESOURCE, now }));
    });

    it("does not remember a failed first fetch: it tries again on the next lookup", async () => {
      const jwk = await publicJwk(k1);
      server.reply = () => ({ status: 503, body: "" });
      const jwks = cache();
      await expectKeysUnavailable(jwks.resolve("acme", "acme-k1"));
      server.serve(jwk);
      expect(await isKey(await jwks.resolve("acme", "acme-k1"), k1)).toBe(true);
      expect(server.hits).toBe(2);
    });

    it("refuses keys older than maxAgeMs while the source is down, and serves them up to that age", async () => {
      const jwks = cache({ maxAgeMs: 60_000 });
      await jwks.resolve("acme", "acme-k1");
      server.reply = () => ({ status: 503, body: "" });
      clock.ms = T0 + 60_000;
      expect(await jwks.resolve("acme", "acme-k1")).toBeDefined();
      clock.ms = T0 + 60_001;
      await expectKeysUnavailable(jwks.resolve("acme", "acme-k1"));
    });

    it("refuses stale keys even when an unknown kid's refetch fails too", async () => {
      const jwks = cache({ maxAgeMs: 60_000 });
      await jwks.resolve("acme", "acme-k1");
      server.reply = () => ({ status: 503, body: "" });
      clock.ms = T0 + 120_000;
      await expectKeysUnavailable(jwks.resolve("acme", "forged-kid"));
    });
  });

  describe("unknown kids", () => {
    it("refetches at most once per cooldown under a flood of forged kids", async () => {
      const jwks = cache({ unknownKidCooldownMs: 5_000 });
      await jwks.resolve("acme", "acme-k1");
      expect(server.hits).toBe(1);

      for (let i = 0; i < 100; i += 1) expect(await jwks.resolve("acme", `forged-${i}`)).toBeUndefined();
      const concurrent = await Promise.all(Array.from({ length: 100 }, (_, i) => jwks.resolve("acme", `forged-concurrent-${i}`)));
      expect(concurrent.every((key) => key === undefined)).toBe(true);
      expect(server.hits).toBe(2);

      clock.ms = T0 + 4_999;
      expect(await jwks.resolve("acme", "forged-late")).toBeUndefined();
      expect(server.hits).toBe(2);

      clock.ms = T0 + 5_000;
      await Promise.all(Array.from({ length: 100 }, (_, i) => jwks.resolve("acme", `forged-next-${i}`)));
      expect(server.hits).toBe(3);
    });

    it("finds a key published since the last fetch through the unknown-kid refetch", async () => {
      const jwks = cache();
      await jwks.resolve("acme", "acme-k1");
      server.serve(await publicJwk(k1), await publicJwk(k2));
      expect(await isKey(await jwks.resolve("acme", "acme-k2"), k2)).toBe(true);
      expect(server.hits).toBe(2);
    });

    it("keeps serving the keys it has when an unknown kid's refetch fails", async () => {
      const jwks = cache();
      await jwks.resolve("acme", "acme-k1");
      server.reply = () => ({ status: 502, body: "" });
      expect(await jwks.resolve("acme", "forged")).toBeUndefined();
      expect(await isKey(await jwks.resolve("acme", "acme-k1"), k1)).toBe(true);
    });
  });

  describe("background refresh", () => {
    it("picks up a newly published key without any lookup asking for it", async () => {
      const jwks = cache({ refreshIntervalMs: 10, unknownKidCooldownMs: 60_000 });
      await jwks.resolve("acme", "acme-k1");
      // Spend the unknown-kid refetch, so only the background refresh can find k2.
      expect(await jwks.resolve("acme", "acme-k2")).toBeUndefined();
      server.serve(await publicJwk(k1), await publicJwk(k2));
      // A fetch is single-flight: a second hit means the first fetch after publishing has completed.
      await server.nextHits(2);
      expect(await isKey(await jwks.resolve("acme", "acme-k2"), k2)).toBe(true);
    });

    it("keeps keys from going stale while the source answers", async () => {
      const jwks = cache({ refreshIntervalMs: 10, maxAgeMs: 60_000 });
      await jwks.resolve("acme", "acme-k1");
      clock.ms = T0 + 120_000;
      await server.nextHits(2);
      expect(await isKey(await jwks.resolve("acme", "acme-k1"), k1)).toBe(true);
    });

    it("reports a failed refresh to onError and keeps the keys until maxAgeMs", async () => {
      const failures: string[] = [];
      let reported: () => void = () => {};
      const failed = new Promise<void>((resolve) => (reported = resolve));
      const jwks = cache({
        refreshIntervalMs: 10,
        maxAgeMs: 60_000,
        onError: (error, zone) => {
          failures.push(`${zone}: ${(error as Error).message}`);
          reported();
        },
      });
      await jwks.resolve("acme", "acme-k1");
      server.reply = () => ({ status: 503, body: "" });
      await failed;
      expect(failures[0]).toMatch(/^acme: JWKS .* answered 503$/);
      expect(await jwks.resolve("acme", "acme-k1")).toBeDefined();
      clock.ms = T0 + 60_001;
      await expectKeysUnavailable(jwks.resolve("acme", "acme-k1"));

      server.serve(await publicJwk(k1));
      await server.nextHits(2);
      expect(await isKey(await jwks.resolve("acme", "acme-k1"), k1)).toBe(true);
    });

    it("stops refreshing once closed", async () => {
      const jwks = cache({ refreshIntervalMs: 10 });
      await jwks.resolve("acme", "acme-k1");
      await server.nextHits(1);
      jwks.close();
      const hits = server.hits;
      // One more fetch may already be in flight; after it, nothing.
      const other = cache({ refreshIntervalMs: 10 });
      await other.resolve("globex", "any");
      await server.nextHits(3);
      expect(server.requests.slice(hits).filter((url) => url.searchParams.get("zone") === "acme").length).toBeLessThanOrEqual(1);
    });
  });

  describe("what a key set may hold", () => {
    it("ignores keys for algorithms outside the pinned list, keys without alg or kid, and private keys", async () => {
      const rsa = await generateKeyPair("RS256", { extractable: true });
      const es384 = await generateKeyPair("ES384", { extractable: true });
      const privateK2 = await exportJWK(k2.privateKey);
      const good = await publicJwk(k1);
      const { alg: _alg, ...withoutAlg } = await publicJwk(k2);
      const { kid: _kid, ...withoutKid } = await publicJwk(k2);
      server.serve(
        { ...(await exportJWK(rsa.publicKey)), kid: "rsa", alg: "RS256" },
        { ...(await exportJWK(es384.publicKey)), kid: "es384", alg: "ES384" },
        { ...(await exportJWK(await generateSecret("HS256", { extractable: true }))), kid: "hmac", alg: "HS256" },
        { ...(await publicJwk(k2)), kid: "none", alg: "none" },
        { ...withoutAlg, kid: "no-alg" },
        withoutKid,
        { ...privateK2, kid: "private", alg: "ES256" },
        good,
      );
      const jwks = cache();
      for (const kid of ["rsa", "es384", "hmac", "none", "no-alg", "private"]) expect(await jwks.resolve("acme", kid), kid).toBeUndefined();
      expect(await isKey(await jwks.resolve("acme", "acme-k1"), k1)).toBe(true);
    });

    it("ignores an entry that claims ES256 but is a secret, or a key of another curve, or malformed, and keeps the good ones", async () => {
      const es384 = await generateKeyPair("ES384", { extractable: true });
      server.serve(
        { kty: "oct", k: "c2VjcmV0LXNlY3JldC1zZWNyZXQ", kid: "secret-as-es256", alg: "ES256" },
        { ...(await exportJWK(es384.publicKey)), kid: "p384-as-es256", alg: "ES256" },
        { kty: "EC", crv: "P-256", x: "AAAA", y: "BBBB", kid: "garbage", alg: "ES256" },
        await publicJwk(k1),
      );
      const jwks = cache();
      expect(await isKey(await jwks.resolve("acme", "acme-k1"), k1)).toBe(true);
      for (const kid of ["secret-as-es256", "p384-as-es256", "garbage"]) expect(await jwks.resolve("acme", kid), kid).toBeUndefined();
    });
  });
});

describe("httpJwksSource", () => {
  it("asks the well-known path with the zone as a query parameter", async () => {
    await httpJwksSource(`${baseUrl}/ignored/path`)("acme-eu");
    expect(server.requests[0]!.pathname).toBe("/.well-known/jwks.json");
    expect(server.requests[0]!.searchParams.get("zone")).toBe("acme-eu");
  });

  for (const [name, reply, message] of [
    ["a 404", { status: 404, body: { keys: [] } }, /answered 404/],
    ["a 500", { status: 500, body: "boom" }, /answered 500/],
    ["a non-JSON 200 body", { body: "<html>maintenance</html>" }, /JSON/],
    ["a JSON body without a keys array", { body: { keys: "all of them" } }, /no keys array/],
    ["a JSON null body", { body: "null" }, /.+/],
    ["a redirect", { status: 302, body: "", headers: { location: "http://127.0.0.1:1/.well-known/jwks.json" } }, /fetch failed/],
  ] as const) {
    it(`fails on ${name}, so that the cache fails closed`, async () => {
      server.reply = () => reply;
      await expect(httpJwksSource(baseUrl)("acme")).rejects.toThrow(message);
      await expectKeysUnavailable(cache().resolve("acme", "acme-k1"));
    });
  }

  it("gives up on a source that does not answer within timeoutMs", async () => {
    server.reply = () => "hang";
    await expect(httpJwksSource(baseUrl, { timeoutMs: 50 })("acme")).rejects.toThrow(/timeout|aborted/i);
  });
});
