import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

const KEK_BYTES = 32;
// Sealed blobs start with a format version so the scheme can change later
// without guessing: 1 = AES-256-GCM, 12-byte nonce, 16-byte tag.
const SEAL_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** A sealed value could not be opened: wrong key-encryption key, wrong context, or tampered. */
export class UnsealError extends Error {
  override readonly name = "UnsealError";
}

/**
 * The key-encryption key (KEK): zone signing keys are sealed under it at rest,
 * and the key that hashes client secrets is derived from it. It never leaves
 * the process and is never logged.
 */
export class KeyEncryptionKey {
  readonly #key: Buffer;
  readonly #secretHashKey: Buffer;

  /** @param key exactly 32 random bytes. */
  constructor(key: Uint8Array) {
    if (key.length !== KEK_BYTES) throw new TypeError(`a key-encryption key is ${KEK_BYTES} bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    // A separate key per purpose, so a client-secret hash can never be
    // confused with (or help attack) a sealed private key.
    this.#secretHashKey = Buffer.from(hkdfSync("sha256", this.#key, Buffer.alloc(0), "caracal client-secret hash v1", 32));
  }

  /**
   * Encrypts and authenticates `plaintext`, bound to `context` (e.g. the zone
   * and key id): a blob copied to another row does not open there.
   */
  seal(plaintext: Uint8Array, context: string): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, nonce);
    cipher.setAAD(Buffer.from(context, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(SEAL_VERSION), nonce, cipher.getAuthTag(), body]);
  }

  /** Opens a blob made by {@link seal} with the same `context`. @throws {UnsealError} */
  open(sealed: Uint8Array, context: string): Buffer {
    const blob = Buffer.from(sealed);
    if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== SEAL_VERSION) {
      throw new UnsealError("sealed value has an unknown format");
    }
    const nonce = blob.subarray(1, 1 + NONCE_BYTES);
    const tag = blob.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES);
    const decipher = createDecipheriv("aes-256-gcm", this.#key, nonce);
    decipher.setAAD(Buffer.from(context, "utf8"));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(blob.subarray(1 + NONCE_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw new UnsealError("sealed value does not open under this key-encryption key and context");
    }
  }

  /**
   * The keyed hash a client secret is stored as. A fast keyed hash is right
   * here, unlike for passwords: client secrets are 256 bits from the CSPRNG,
   * so there is no dictionary to try and brute force is out of reach however
   * fast the hash; a slow hash would only cost every `StartSession` CPU time.
   * The key keeps a stolen table from being checked offline at all.
   */
  hashSecret(secret: string): Buffer {
    return createHmac("sha256", this.#secretHashKey).update(secret, "utf8").digest();
  }

  /** Compares a presented secret with a stored hash in constant time. */
  secretMatches(secret: string, storedHash: Uint8Array): boolean {
    const presented = this.hashSecret(secret);
    return storedHash.length === presented.length && timingSafeEqual(presented, storedHash);
  }
}

/**
 * Parses 32 bytes in base64 or base64url (`CARACAL_KEK`, `CARACAL_AUDIT_KEY`).
 * Returns undefined when malformed.
 */
export function parseKeyBytes(text: string): Buffer | undefined {
  const bytes = Buffer.from(text.trim(), "base64");
  // Buffer's base64 decoder skips junk silently; a round trip catches it.
  const canonical = (value: string) => value.trim().replace(/=+$/, "").replaceAll("-", "+").replaceAll("_", "/");
  if (bytes.length !== KEK_BYTES || canonical(bytes.toString("base64")) !== canonical(text)) return undefined;
  return bytes;
}

/** Parses `CARACAL_KEK`: 32 bytes in base64 or base64url. Returns undefined when malformed. */
export function parseKeyEncryptionKey(text: string): KeyEncryptionKey | undefined {
  const bytes = parseKeyBytes(text);
  return bytes && new KeyEncryptionKey(bytes);
}

/**
 * A key of the embedded default: read from `<dataDir>/<name>`, or generated
 * there (32 random bytes, base64, mode 0600) on first start. A file readable
 * by others is refused.
 */
export async function loadOrCreateKeyBytes(dataDir: string, name: string): Promise<Buffer> {
  const path = join(dataDir, name);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(path, randomBytes(KEK_BYTES).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new Error(`${path} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 on it`);
  }
  const bytes = parseKeyBytes(await readFile(path, "utf8"));
  if (!bytes) throw new Error(`${path} does not hold a 32-byte base64 key`);
  return bytes;
}

/** The embedded default's KEK, in `<dataDir>/kek` (see {@link loadOrCreateKeyBytes}). */
export async function loadOrCreateKeyFile(dataDir: string): Promise<KeyEncryptionKey> {
  return new KeyEncryptionKey(await loadOrCreateKeyBytes(dataDir, "kek"));
}
