import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, type JWK } from "jose";
import type { Queryable } from "../store/store.js";
import type { KeyEncryptionKey } from "./key-encryption-key.js";

/** The algorithm new zone keys use. */
export const ZONE_KEY_ALGORITHM = "ES256";

/** Where a zone key is in its life. */
export type ZoneKeyState = "next" | "current" | "retiring" | "retired";

/** A zone key as stored; the private key stays sealed. */
export interface ZoneKeyRecord {
  readonly kid: string;
  readonly zoneId: string;
  readonly algorithm: string;
  readonly state: ZoneKeyState;
  readonly publicJwk: JWK;
  readonly sealedPrivateKey: Buffer;
  readonly createdAt: Date;
  readonly activatedAt: Date | null;
  readonly deactivatedAt: Date | null;
  readonly retireAt: Date | null;
}

type KeyRow = {
  kid: string;
  zone_id: string;
  algorithm: string;
  state: ZoneKeyState;
  public_jwk: JWK;
  sealed_private_key: Buffer;
  created_at: Date;
  activated_at: Date | null;
  deactivated_at: Date | null;
  retire_at: Date | null;
};

function toKey(row: KeyRow): ZoneKeyRecord {
  return {
    kid: row.kid,
    zoneId: row.zone_id,
    algorithm: row.algorithm,
    state: row.state,
    publicJwk: row.public_jwk,
    sealedPrivateKey: row.sealed_private_key,
    createdAt: row.created_at,
    activatedAt: row.activated_at,
    deactivatedAt: row.deactivated_at,
    retireAt: row.retire_at,
  };
}

/** The context a private key is sealed under: a sealed key copied to another row will not open. */
export function sealContext(zoneId: string, kid: string): string {
  return `caracal zone-key v1|${zoneId}|${kid}`;
}

async function insertNewKey(tx: Queryable, kek: KeyEncryptionKey, zoneId: string, state: "next" | "current", now: Date): Promise<ZoneKeyRecord> {
  const { privateKey, publicKey } = await generateKeyPair(ZONE_KEY_ALGORITHM, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  const publicJwk: JWK = { ...jwk, kid, use: "sig", alg: ZONE_KEY_ALGORITHM };
  const sealed = kek.seal(Buffer.from(await exportPKCS8(privateKey), "utf8"), sealContext(zoneId, kid));
  const { rows } = await tx.query<KeyRow>(
    `INSERT INTO zone_keys (kid, zone_id, algorithm, state, public_jwk, sealed_private_key, created_at, activated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
    [kid, zoneId, ZONE_KEY_ALGORITHM, state, publicJwk, sealed, now, state === "current" ? now : null],
  );
  return toKey(rows[0]!);
}

/** Creates a new zone's keys: one signing now, and the next one, published ahead of its turn. */
export async function createInitialKeys(tx: Queryable, kek: KeyEncryptionKey, zoneId: string, now: Date): Promise<void> {
  await insertNewKey(tx, kek, zoneId, "current", now);
  await insertNewKey(tx, kek, zoneId, "next", now);
}

/** The outcome of a rotation. */
export interface Rotation {
  readonly current: ZoneKeyRecord;
  readonly previous: ZoneKeyRecord;
  readonly next: ZoneKeyRecord;
}

/**
 * Rotates a zone's keys in one transaction: the next key (published since the
 * last rotation) starts signing; the current one retires once every mandate
 * it could have signed has expired (`now + maxMandateLifetimeSeconds`); a new
 * next key is published. A lock on the zone row makes concurrent rotations queue.
 */
export async function rotateZoneKeys(
  tx: Queryable,
  kek: KeyEncryptionKey,
  zoneId: string,
  maxMandateLifetimeSeconds: number,
  now: Date,
): Promise<Rotation> {
  // Lock the zone row first, then read its keys: a rotation that waited here
  // reads the keys the one before it committed (a row lock on the key rows
  // alone would re-read them, but not see the new next key inserted meanwhile).
  await tx.query(`SELECT id FROM zones WHERE id = $1 FOR UPDATE`, [zoneId]);
  const { rows } = await tx.query<KeyRow>(`SELECT * FROM zone_keys WHERE zone_id = $1 AND state IN ('current', 'next')`, [zoneId]);
  const current = rows.find((row) => row.state === "current");
  const next = rows.find((row) => row.state === "next");
  if (!current || !next) throw new Error(`zone ${zoneId} lacks a current or next key`);
  await tx.query(`UPDATE zone_keys SET state = 'retired' WHERE zone_id = $1 AND state = 'retiring' AND retire_at <= $2`, [
    zoneId,
    now,
  ]);
  const retireAt = new Date(now.getTime() + maxMandateLifetimeSeconds * 1000);
  const previous = await tx.query<KeyRow>(
    `UPDATE zone_keys SET state = 'retiring', deactivated_at = $2, retire_at = $3 WHERE kid = $1 RETURNING *`,
    [current.kid, now, retireAt],
  );
  const promoted = await tx.query<KeyRow>(`UPDATE zone_keys SET state = 'current', activated_at = $2 WHERE kid = $1 RETURNING *`, [
    next.kid,
    now,
  ]);
  return {
    previous: toKey(previous.rows[0]!),
    current: toKey(promoted.rows[0]!),
    next: await insertNewKey(tx, kek, zoneId, "next", now),
  };
}

/** Every key of a zone, newest first; retired ones only when asked. */
export async function listZoneKeys(db: Queryable, zoneId: string, includeRetired: boolean): Promise<ZoneKeyRecord[]> {
  const { rows } = await db.query<KeyRow>(
    `SELECT * FROM zone_keys WHERE zone_id = $1 AND ($2 OR state <> 'retired') ORDER BY created_at DESC, kid`,
    [zoneId, includeRetired],
  );
  return rows.map(toKey);
}

/** Every key of the zone with this slug, newest first, retired ones included (so their mandates are refused by name). */
export async function findZoneKeysBySlug(db: Queryable, slug: string): Promise<ZoneKeyRecord[]> {
  const { rows } = await db.query<KeyRow>(
    `SELECT k.* FROM zone_keys k JOIN zones z ON z.id = k.zone_id WHERE z.slug = $1 ORDER BY k.created_at DESC, k.kid`,
    [slug],
  );
  return rows.map(toKey);
}

/** A key's effective state at `now`: a retiring key past its retire time counts as retired. */
export function effectiveState(key: Pick<ZoneKeyRecord, "state" | "retireAt">, now: number): ZoneKeyState {
  return key.state === "retiring" && key.retireAt !== null && key.retireAt.getTime() <= now ? "retired" : key.state;
}
