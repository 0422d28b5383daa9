import { readFileSync } from "node:fs";
import { Code } from "@connectrpc/connect";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import {
  actorChain,
  attackEdgeOptions,
  buildAttackToken,
  createAttackFixture,
  decodeToken,
  mintMandate,
  TEST_RESOURCE,
  TEST_SCOPE,
  type AttackFixture,
  type AttackVector,
} from "../test/support/mandates.js";
import { MandateError } from "./mandate-error.js";
import { verifyMandate, type MandateKeyResolver, type VerifyMandateOptions } from "./verify-mandate.js";

const vectors: AttackVector[] = JSON.parse(readFileSync(new URL("./attack-vectors.json", import.meta.url), "utf8"));

// 2030-01-01T12:00:00Z: every test runs on this frozen clock unless it moves it.
const T0 = Date.UTC(2030, 0, 1, 12);
const clock = { ms: T0 };
const now = () => clock.ms;
const at = (secondsAfterT0: number) => T0 + secondsAfterT0 * 1000;

let fixture: AttackFixture;
beforeAll(async () => {
  fixture = await createAttackFixture(now);
});
beforeEach(() => {
  clock.ms = T0;
});

/** `Code.PermissionDenied` → `PERMISSION_DENIED`, as the table spells codes. */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function reasonName(reason: Reason): string {
  return `REASON_${Reason[reason]}`;
}

async function refusal(outcome: Promise<unknown>): Promise<MandateError> {
  const error = await outcome.then(
    (claims) => {
      throw new Error(`accepted a mandate that must be refused: ${JSON.stringify(claims)}`);
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(MandateError);
  return error as MandateError;
}

async function expectRefusal(outcome: Promise<unknown>, reason: Reason, metadata?: Record<string, string>): Promise<void> {
  const error = await refusal(outcome);
  expect({ reason: reasonName(error.reason), code: codeName(error.code) }).toEqual({
    reason: reasonName(reason),
    code: codeName(new MandateError(reason, "").code),
  });
  if (metadata) expect(error.metadata).toEqual(metadata);
}

function edge(overrides: Partial<VerifyMandateOptions> = {}): VerifyMandateOptions {
  return {
    keys: fixture.keyring.resolve,
    use: "resource",
    resource: TEST_RESOURCE,
    scopes: [TEST_SCOPE],
    allowedZones: ["acme"],
    now,
    ...overrides,
  };
}

describe("the attack-vector table", () => {
  it("names every vector once and spells every code and reason as the API does", () => {
    const names = vectors.map((vector) => vector.name);
    expect(new Set(names).size).toBe(names.length);
    const codes = new Set(["OK", ...Object.values(Code).filter((value) => typeof value === "number").map(codeName)]);
    for (const { name, expect: expected } of vectors) {
      expect(codes.has(expected.code), `${name}: code ${expected.code}`).toBe(true);
      if (expected.code === "OK") continue;
      const reason = Reason[expected.reason?.replace(/^REASON_/, "") as keyof typeof Reason];
      expect(reason, `${name}: reason ${expected.reason}`).toBeTypeOf("number");
      expect(codeName(new MandateError(reason, "").code), `${name}: ${expected.reason} is answered with another code`).toBe(
        expected.code,
      );
    }
  });
});

describe("verifyMandate against attack vectors", () => {
  for (const vector of vectors) {
    it(vector.name, async () => {
      const token = await buildAttackToken(vector, fixture);
      const outcome = verifyMandate(token, attackEdgeOptions(vector, fixture));
      if (vector.expect.code === "OK") {
        await expect(outcome).resolves.toMatchObject({ jti: expect.any(String) });
        return;
      }
      const error = await refusal(outcome);
      expect({ reason: reasonName(error.reason), code: codeName(error.code) }).toEqual({
        reason: vector.expect.reason,
        code: vector.expect.code,
      });
      if (vector.expect.metadata) expect(error.metadata).toEqual(vector.expect.metadata);
    });
  }
});

describe("verifyMandate", () => {
  it("returns the claims exactly as they were signed", async () => {
    const token = await mintMandate({ key: fixture.zoneKey, now, claims: { act: actorChain(2) } });
    const claims = await verifyMandate(token, edge());
    expect(claims).toEqual(decodeToken(token).claims);
    expect(claims).toMatchObject({ iss: "urn:caracal:zone:acme", zone: "acme", use: "resource", target: [TEST_RESOURCE] });
  });

  describe("on an injected clock", () => {
    // Issued at T0 for 300 s; the default tolerance is 5 s.
    let token: string;
    beforeEach(async () => {
      token = await mintMandate({ key: fixture.zoneKey, now });
    });

    it("accepts a mandate at the instant it was issued", async () => {
      await expect(verifyMandate(token, edge())).resolves.toBeDefined();
    });

    it("accepts a mandate past exp while within the clock tolerance", async () => {
      clock.ms = at(300 + 4);
      await expect(verifyMandate(token, edge())).resolves.toBeDefined();
    });

    it("refuses a mandate exactly the tolerance past exp", async () => {
      clock.ms = at(300 + 5);
      await expectRefusal(verifyMandate(token, edge()), Reason.MANDATE_EXPIRED);
    });

    it("refuses a mandate one second beyond exp plus the tolerance", async () => {
      clock.ms = at(300 + 5 + 1);
      await expectRefusal(verifyMandate(token, edge()), Reason.MANDATE_EXPIRED);
    });

    it("accepts a mandate whose nbf and iat are ahead of the clock by no more than the tolerance", async () => {
      clock.ms = at(-5);
      await expect(verifyMandate(token, edge())).resolves.toBeDefined();
    });

    it("refuses a mandate whose nbf is ahead of the clock by more than the tolerance", async () => {
      clock.ms = at(-6);
      await expectRefusal(verifyMandate(token, edge()), Reason.MANDATE_NOT_YET_VALID);
    });

    it("refuses a mandate issued more than the tolerance in the future even when nbf has passed", async () => {
      const issuedAhead = await mintMandate({ key: fixture.zoneKey, now, claims: { iat: T0 / 1000 + 6, nbf: T0 / 1000 } });
      await expectRefusal(verifyMandate(issuedAhead, edge()), Reason.MANDATE_NOT_YET_VALID);
    });
  });

  describe("with the clockToleranceSeconds option", () => {
    let token: string;
    beforeEach(async () => {
      token = await mintMandate({ key: fixture.zoneKey, now });
    });

    it("refuses a mandate at exp when the tolerance is zero", async () => {
      clock.ms = at(299);
      await expect(verifyMandate(token, edge({ clockToleranceSeconds: 0 }))).resolves.toBeDefined();
      clock.ms = at(300);
      await expectRefusal(verifyMandate(token, edge({ clockToleranceSeconds: 0 })), Reason.MANDATE_EXPIRED);
    });

    it("stretches exp, nbf and iat by a wider tolerance", async () => {
      clock.ms = at(300 + 59);
      await expect(verifyMandate(token, edge({ clockToleranceSeconds: 60 }))).resolves.toBeDefined();
      clock.ms = at(300 + 60);
      await expectRefusal(verifyMandate(token, edge({ clockToleranceSeconds: 60 })), Reason.MANDATE_EXPIRED);
      clock.ms = at(-60);
      await expect(verifyMandate(token, edge({ clockToleranceSeconds: 60 }))).resolves.toBeDefined();
      clock.ms = at(-61);
      await expectRefusal(verifyMandate(token, edge({ clockToleranceSeconds: 60 })), Reason.MANDATE_NOT_YET_VALID);
    });
  });

  describe("size limit", () => {
    it("accepts a mandate exactly at maxTokenBytes and refuses it one byte under", async () => {
      const token = await mintMandate({ key: fixture.zoneKey, now });
      await expect(verifyMandate(token, edge({ maxTokenBytes: token.length }))).resolves.toBeDefined();
      await expectRefusal(verifyMandate(token, edge({ maxTokenBytes: token.length - 1 })), Reason.MANDATE_TOO_LARGE);
    });

    it("accepts a mandate at the default 8 KiB limit and refuses one past it", async () => {
      const padded = (bytes: number) => mintMandate({ key: fixture.zoneKey, now, claims: { pad: "x".repeat(bytes) } });
      const base = (await padded(0)).length;
      // base64url turns 3 bytes into 4 characters.
      let fits = Math.floor(((8192 - base) * 3) / 4);
      while ((await padded(fits + 1)).length <= 8192) fits += 1;
      const largest = await padded(fits);
      expect(largest.length).toBeGreaterThan(8188);
      await expect(verifyMandate(largest, edge())).resolves.toBeDefined();
      await expectRefusal(verifyMandate(await padded(fits + 1), edge()), Reason.MANDATE_TOO_LARGE);
    });

    it("counts the limit in UTF-8 bytes, not characters", async () => {
      const token = "é".repeat(5000);
      await expectRefusal(verifyMandate(token, edge()), Reason.MANDATE_TOO_LARGE);
    });
  });

  describe("zones", () => {
    it("accepts a mandate of any zone when allowedZones is unset", async () => {
      const globex = await mintMandate({ key: fixture.otherZoneKey, now });
      const acme = await mintMandate({ key: fixture.zoneKey, now });
      await expect(verifyMandate(globex, edge({ allowedZones: undefined }))).resolves.toMatchObject({ zone: "globex" });
      await expect(verifyMandate(acme, edge({ allowedZones: undefined }))).resolves.toMatchObject({ zone: "acme" });
    });

    it("accepts a mandate of any zone in allowedZones", async () => {
      const globex = await mintMandate({ key: fixture.otherZoneKey, now });
      await expect(verifyMandate(globex, edge({ allowedZones: ["acme", "globex"] }))).resolves.toMatchObject({ zone: "globex" });
    });
  });

  describe("scopes", () => {
    it("requires every required scope and names the first one missing", async () => {
      const token = await mintMandate({ key: fixture.zoneKey, now, claims: { scope: "invoices.read" } });
      await expectRefusal(verifyMandate(token, edge({ scopes: ["invoices.read", "invoices.write"] })), Reason.SCOPE_MISSING, {
        scope: "invoices.write",
      });
    });

    it("accepts a mandate carrying every required scope in any order", async () => {
      const token = await mintMandate({ key: fixture.zoneKey, now, claims: { scope: "invoices.write audit.read invoices.read" } });
      await expect(verifyMandate(token, edge({ scopes: ["invoices.read", "invoices.write"] }))).resolves.toBeDefined();
    });

    it("accepts a mandate without scopes where none are required", async () => {
      const token = await mintMandate({ key: fixture.zoneKey, now, claims: { scope: "" } });
      await expect(verifyMandate(token, edge({ scopes: [] }))).resolves.toBeDefined();
      await expect(verifyMandate(token, edge({ scopes: undefined }))).resolves.toBeDefined();
    });
  });

  describe("keys", () => {
    it("looks up the key by the zone and kid the mandate names", async () => {
      const lookups: [string, string][] = [];
      const keys: MandateKeyResolver = (zone, kid) => {
        lookups.push([zone, kid]);
        return fixture.keyring.resolve(zone, kid);
      };
      await verifyMandate(await mintMandate({ key: fixture.zoneKey, now }), edge({ keys }));
      expect(lookups).toEqual([["acme", "acme-k1"]]);
    });

    it("never looks up a key for a mandate its header already condemns", async () => {
      const keys: MandateKeyResolver = () => {
        throw new Error("looked up a key");
      };
      const token = await mintMandate({ key: fixture.zoneKey, now, header: { jku: "https://attacker.example/jwks.json" } });
      await expectRefusal(verifyMandate(token, edge({ keys })), Reason.MANDATE_HEADER_REJECTED);
    });

    it("accepts keys from an asynchronous resolver", async () => {
      const keys: MandateKeyResolver = async (zone, kid) => fixture.keyring.resolve(zone, kid);
      await expect(verifyMandate(await mintMandate({ key: fixture.zoneKey, now }), edge({ keys }))).resolves.toBeDefined();
    });

    it("refuses with REASON_KEYS_UNAVAILABLE when the resolver cannot know the zone's keys (fail closed)", async () => {
      const unavailable = new MandateError(Reason.KEYS_UNAVAILABLE, "zone acme's keys were never fetched");
      const keys: MandateKeyResolver = async () => {
        throw unavailable;
      };
      const outcome = verifyMandate(await mintMandate({ key: fixture.zoneKey, now }), edge({ keys }));
      await expect(outcome).rejects.toBe(unavailable);
      expect(unavailable.code).toBe(Code.Unavailable);
    });

    it("refuses when the resolver fails unexpectedly (fail closed)", async () => {
      const keys: MandateKeyResolver = () => {
        throw new Error("cache corrupted");
      };
      await expect(verifyMandate(await mintMandate({ key: fixture.zoneKey, now }), edge({ keys }))).rejects.toThrow("cache corrupted");
    });

    it("refuses a mandate it accepted once its key is retired past the grace period", async () => {
      const key = await fixture.keyring.generate("acme", "acme-k2");
      const token = await mintMandate({ key, now });
      await expect(verifyMandate(token, edge())).resolves.toBeDefined();
      fixture.keyring.retire(key);
      await expectRefusal(verifyMandate(token, edge()), Reason.MANDATE_KEY_RETIRED);
    });
  });

  // A resource edge that forgot to name its resource would check no audience
  // at all; the verifier refuses to run rather than fail open.
  it("refuses to verify at a resource edge that names no resource", async () => {
    const payroll = await mintMandate({ key: fixture.zoneKey, now, claims: { aud: ["payroll-api"], target: ["payroll-api"] } });
    await expect(verifyMandate(payroll, edge({ resource: undefined }))).rejects.toThrow(TypeError);
  });
});
