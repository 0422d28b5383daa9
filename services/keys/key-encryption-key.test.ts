import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { KeyEncryptionKey, loadOrCreateKeyFile, parseKeyEncryptionKey, UnsealError } from "./key-encryption-key.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("KeyEncryptionKey", () => {
  const kek = new KeyEncryptionKey(randomBytes(32));
  const secret = Buffer.from("-----BEGIN PRIVATE KEY-----\nzone key\n-----END PRIVATE KEY-----\n");

  it("opens what it sealed under the same context, and the blob does not contain the plaintext", () => {
    const sealed = kek.seal(secret, "zone-a|kid-1");
    expect(kek.open(sealed, "zone-a|kid-1")).toEqual(secret);
    expect(sealed.includes(secret)).toBe(false);
    expect(kek.seal(secret, "zone-a|kid-1").equals(sealed)).toBe(false); // fresh nonce each time
  });

  it("refuses a blob moved to another context, tampered with, or opened under another key", () => {
    const sealed = kek.seal(secret, "zone-a|kid-1");
    expect(() => kek.open(sealed, "zone-b|kid-1")).toThrow(UnsealError);
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1]! ^= 1;
    expect(() => kek.open(tampered, "zone-a|kid-1")).toThrow(UnsealError);
    expect(() => new KeyEncryptionKey(randomBytes(32)).open(sealed, "zone-a|kid-1")).toThrow(UnsealError);
    expect(() => kek.open(Buffer.from([9, 1, 2]), "zone-a|kid-1")).toThrow(UnsealError);
  });

  it("hashes secrets with a key: same secret, same hash; another KEK, another hash", () => {
    const hash = kek.hashSecret("cs_abc");
    expect(hash).toHaveLength(32);
    expect(kek.secretMatches("cs_abc", hash)).toBe(true);
    expect(kek.secretMatches("cs_abd", hash)).toBe(false);
    expect(kek.secretMatches("cs_abc", hash.subarray(0, 31))).toBe(false);
    expect(new KeyEncryptionKey(randomBytes(32)).hashSecret("cs_abc").equals(hash)).toBe(false);
  });

  it("rejects a key of the wrong length as misuse", () => {
    expect(() => new KeyEncryptionKey(randomBytes(16))).toThrow(TypeError);
  });
});

describe("parseKeyEncryptionKey", () => {
  it("accepts 32 bytes in base64 or base64url and nothing else", () => {
    const bytes = randomBytes(32);
    expect(parseKeyEncryptionKey(bytes.toString("base64"))).toBeInstanceOf(KeyEncryptionKey);
    expect(parseKeyEncryptionKey(bytes.toString("base64url"))).toBeInstanceOf(KeyEncryptionKey);
    expect(parseKeyEncryptionKey(randomBytes(31).toString("base64"))).toBeUndefined();
    expect(parseKeyEncryptionKey(`${bytes.toString("base64")}$$`)).toBeUndefined();
    expect(parseKeyEncryptionKey("")).toBeUndefined();
  });
});

describe("loadOrCreateKeyFile", () => {
  it("generates a 0600 key file on first use and reads the same key afterwards", async () => {
    const dir = await mkdtemp(join(tmpdir(), "caracal-kek-"));
    dirs.push(dir);
    const first = await loadOrCreateKeyFile(dir);
    expect((await stat(join(dir, "kek"))).mode & 0o777).toBe(0o600);
    const second = await loadOrCreateKeyFile(dir);
    expect(second.hashSecret("x").equals(first.hashSecret("x"))).toBe(true);
    expect((await readFile(join(dir, "kek"), "utf8")).trim()).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  it("refuses a key file others can read", async () => {
    const dir = await mkdtemp(join(tmpdir(), "caracal-kek-"));
    dirs.push(dir);
    await loadOrCreateKeyFile(dir);
    await chmod(join(dir, "kek"), 0o644);
    await expect(loadOrCreateKeyFile(dir)).rejects.toThrow(/readable by other users/);
  });
});
