import { randomUUID } from "node:crypto";
import type { Queryable } from "../store/store.js";
import { alreadyExistsOnConflict } from "./conflicts.js";

/** How an application authenticates, as stored. */
export type CredentialKindName = "client_secret" | "private_key_jwt";

/** A stored client-secret hash and its validity. */
export interface SecretRecord {
  readonly secretId: string;
  readonly hash: Buffer;
  readonly createdAt: Date;
  /** Unset while current; the end of the overlap once rotated out. */
  readonly expiresAt: Date | null;
}

/** A registered public key for `private_key_jwt`. */
export interface ApplicationKeyRecord {
  readonly kid: string;
  readonly jwk: Record<string, string>;
}

/** An application with its credentials. */
export interface ApplicationRecord {
  readonly zoneId: string;
  readonly clientId: string;
  readonly displayName: string;
  readonly labels: Record<string, string>;
  readonly state: "active" | "disabled";
  readonly credentialKind: CredentialKindName;
  readonly createdAt: Date;
  readonly secrets: readonly SecretRecord[];
  readonly keys: readonly ApplicationKeyRecord[];
}

/** What a new application needs; exactly one credential. */
export interface NewApplication {
  readonly clientId: string;
  readonly displayName: string;
  readonly labels: Record<string, string>;
  readonly credential: { readonly kind: "client_secret"; readonly hash: Buffer } | { readonly kind: "private_key_jwt"; readonly jwk: Record<string, string> & { kid: string } };
}

type AppRow = {
  zone_id: string;
  client_id: string;
  display_name: string;
  labels: Record<string, string>;
  state: "active" | "disabled";
  credential_kind: CredentialKindName;
  created_at: Date;
};

/** Inserts an application with its first credential. @throws ALREADY_EXISTS */
export async function insertApplication(tx: Queryable, zoneId: string, app: NewApplication): Promise<void> {
  await alreadyExistsOnConflict(`application ${app.clientId}`, () =>
    tx.query(
      `INSERT INTO applications (zone_id, client_id, display_name, labels, credential_kind) VALUES ($1, $2, $3, $4, $5)`,
      [zoneId, app.clientId, app.displayName, app.labels, app.credential.kind],
    ),
  );
  if (app.credential.kind === "client_secret") {
    await insertSecret(tx, zoneId, app.clientId, app.credential.hash);
  } else {
    await insertApplicationKey(tx, zoneId, app.clientId, app.credential.jwk);
  }
}

/** Adds a current secret hash. */
export async function insertSecret(tx: Queryable, zoneId: string, clientId: string, hash: Buffer): Promise<void> {
  await tx.query(`INSERT INTO application_secrets (secret_id, zone_id, client_id, secret_hash) VALUES ($1, $2, $3, $4)`, [
    randomUUID(),
    zoneId,
    clientId,
    hash,
  ]);
}

/** Ends every current secret at `until` (the overlap), and forgets ones already past. */
export async function expireSecrets(tx: Queryable, zoneId: string, clientId: string, until: Date, now: Date): Promise<void> {
  await tx.query(
    `UPDATE application_secrets SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
      WHERE zone_id = $1 AND client_id = $2`,
    [zoneId, clientId, until],
  );
  await tx.query(`DELETE FROM application_secrets WHERE zone_id = $1 AND client_id = $2 AND expires_at <= $3`, [
    zoneId,
    clientId,
    now,
  ]);
}

/** Registers a public key. @throws ALREADY_EXISTS when the kid is taken for this application. */
export async function insertApplicationKey(
  tx: Queryable,
  zoneId: string,
  clientId: string,
  jwk: Record<string, string> & { kid: string },
): Promise<void> {
  await alreadyExistsOnConflict(`key ${jwk.kid}`, () =>
    tx.query(`INSERT INTO application_keys (zone_id, client_id, kid, public_jwk) VALUES ($1, $2, $3, $4)`, [
      zoneId,
      clientId,
      jwk.kid,
      jwk,
    ]),
  );
}

/** Removes a registered key; returns whether it existed. */
export async function deleteApplicationKey(tx: Queryable, zoneId: string, clientId: string, kid: string): Promise<boolean> {
  const { rowCount } = await tx.query(`DELETE FROM application_keys WHERE zone_id = $1 AND client_id = $2 AND kid = $3`, [
    zoneId,
    clientId,
    kid,
  ]);
  return rowCount > 0;
}

/** Sets an application's state; returns whether it exists. */
export async function setApplicationState(db: Queryable, zoneId: string, clientId: string, state: "active" | "disabled"): Promise<boolean> {
  const { rowCount } = await db.query(`UPDATE applications SET state = $3 WHERE zone_id = $1 AND client_id = $2`, [
    zoneId,
    clientId,
    state,
  ]);
  return rowCount > 0;
}

/** One application with its credentials, or undefined. */
export async function findApplication(db: Queryable, zoneId: string, clientId: string): Promise<ApplicationRecord | undefined> {
  return (await loadApplications(db, zoneId, { clientId }))[0];
}

/** Applications by client id, after `afterClientId`. */
export async function listApplications(
  db: Queryable,
  zoneId: string,
  afterClientId: string | undefined,
  limit: number,
): Promise<ApplicationRecord[]> {
  return loadApplications(db, zoneId, { after: afterClientId ?? "", limit });
}

async function loadApplications(
  db: Queryable,
  zoneId: string,
  select: { clientId: string } | { after: string; limit: number },
): Promise<ApplicationRecord[]> {
  const { rows } =
    "clientId" in select
      ? await db.query<AppRow>(`SELECT * FROM applications WHERE zone_id = $1 AND client_id = $2`, [zoneId, select.clientId])
      : await db.query<AppRow>(
          `SELECT * FROM applications WHERE zone_id = $1 AND client_id > $2 ORDER BY client_id LIMIT $3`,
          [zoneId, select.after, select.limit],
        );
  if (rows.length === 0) return [];
  const clientIds = rows.map((row) => row.client_id);
  const [secrets, keys] = await Promise.all([
    db.query<{ client_id: string; secret_id: string; secret_hash: Buffer; created_at: Date; expires_at: Date | null }>(
      `SELECT client_id, secret_id, secret_hash, created_at, expires_at FROM application_secrets
        WHERE zone_id = $1 AND client_id = ANY($2) ORDER BY created_at DESC`,
      [zoneId, clientIds],
    ),
    db.query<{ client_id: string; kid: string; public_jwk: Record<string, string> }>(
      `SELECT client_id, kid, public_jwk FROM application_keys WHERE zone_id = $1 AND client_id = ANY($2) ORDER BY created_at`,
      [zoneId, clientIds],
    ),
  ]);
  return rows.map((row) => ({
    zoneId: row.zone_id,
    clientId: row.client_id,
    displayName: row.display_name,
    labels: row.labels,
    state: row.state,
    credentialKind: row.credential_kind,
    createdAt: row.created_at,
    secrets: secrets.rows
      .filter((secret) => secret.client_id === row.client_id)
      .map((secret) => ({ secretId: secret.secret_id, hash: secret.secret_hash, createdAt: secret.created_at, expiresAt: secret.expires_at })),
    keys: keys.rows.filter((key) => key.client_id === row.client_id).map((key) => ({ kid: key.kid, jwk: key.public_jwk })),
  }));
}

/**
 * Remembers a client assertion's jti until it expires; false when it was
 * already used. Expired entries of the application are swept on the way.
 */
export async function claimAssertionJti(
  db: Queryable,
  zoneId: string,
  clientId: string,
  jti: string,
  expiresAt: Date,
  now: Date,
): Promise<boolean> {
  await db.query(`DELETE FROM client_assertion_jtis WHERE zone_id = $1 AND client_id = $2 AND expires_at < $3`, [
    zoneId,
    clientId,
    now,
  ]);
  const { rowCount } = await db.query(
    `INSERT INTO client_assertion_jtis (zone_id, client_id, jti, expires_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT DO NOTHING`,
    [zoneId, clientId, jti, expiresAt],
  );
  return rowCount === 1;
}
