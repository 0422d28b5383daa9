import { randomUUID } from "node:crypto";
import type { Queryable } from "../store/store.js";

/** A grant: scopes of one resource given to one application. */
export interface GrantRecord {
  readonly grantId: string;
  readonly zoneId: string;
  readonly clientId: string;
  readonly resourceId: string;
  readonly scopes: readonly string[];
  readonly createdAt: Date;
}

type GrantRow = { grant_id: string; zone_id: string; client_id: string; resource_id: string; scopes: string[]; created_at: Date };

function toGrant(row: GrantRow): GrantRecord {
  return {
    grantId: row.grant_id,
    zoneId: row.zone_id,
    clientId: row.client_id,
    resourceId: row.resource_id,
    scopes: row.scopes,
    createdAt: row.created_at,
  };
}

/** Inserts a grant. Callers check that application, resource and scopes exist in the same transaction. */
export async function insertGrant(
  tx: Queryable,
  grant: { zoneId: string; clientId: string; resourceId: string; scopes: readonly string[] },
): Promise<GrantRecord> {
  const { rows } = await tx.query<GrantRow>(
    `INSERT INTO grants (grant_id, zone_id, client_id, resource_id, scopes) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
    [randomUUID(), grant.zoneId, grant.clientId, grant.resourceId, [...grant.scopes]],
  );
  return toGrant(rows[0]!);
}

/** Deletes a grant; returns whether it existed in this zone. */
export async function deleteGrant(db: Queryable, zoneId: string, grantId: string): Promise<boolean> {
  const { rowCount } = await db.query(`DELETE FROM grants WHERE zone_id = $1 AND grant_id = $2`, [zoneId, grantId]);
  return rowCount > 0;
}

/** Grants of the zone, optionally of one application or resource, in id order after `afterGrantId`. */
export async function listGrants(
  db: Queryable,
  zoneId: string,
  filter: { clientId?: string | undefined; resourceId?: string | undefined; afterGrantId?: string | undefined; limit: number },
): Promise<GrantRecord[]> {
  const { rows } = await db.query<GrantRow>(
    `SELECT * FROM grants
      WHERE zone_id = $1 AND ($2::text IS NULL OR client_id = $2) AND ($3::text IS NULL OR resource_id = $3)
        AND grant_id > $4::uuid
      ORDER BY grant_id LIMIT $5`,
    [zoneId, filter.clientId ?? null, filter.resourceId ?? null, filter.afterGrantId ?? "00000000-0000-0000-0000-000000000000", filter.limit],
  );
  return rows.map(toGrant);
}

/** Every scope the application holds on each resource, merged across grants. */
export async function grantedScopes(db: Queryable, zoneId: string, clientId: string): Promise<Map<string, Set<string>>> {
  const { rows } = await db.query<{ resource_id: string; scopes: string[] }>(
    `SELECT resource_id, scopes FROM grants WHERE zone_id = $1 AND client_id = $2`,
    [zoneId, clientId],
  );
  const granted = new Map<string, Set<string>>();
  for (const row of rows) {
    const scopes = granted.get(row.resource_id) ?? new Set<string>();
    for (const scope of row.scopes) scopes.add(scope);
    granted.set(row.resource_id, scopes);
  }
  return granted;
}
