import type { Queryable } from "../store/store.js";
import { alreadyExistsOnConflict } from "./conflicts.js";

/** A scope a resource offers. */
export interface ScopeRecord {
  readonly name: string;
  readonly description: string;
}

/** A resource with its scopes. */
export interface ResourceRecord {
  readonly zoneId: string;
  readonly resourceId: string;
  readonly displayName: string;
  readonly scopes: readonly ScopeRecord[];
  readonly createdAt: Date;
}

type ResourceRow = { zone_id: string; resource_id: string; display_name: string; created_at: Date };

/** Inserts a resource and its scopes. @throws ALREADY_EXISTS */
export async function insertResource(
  tx: Queryable,
  zoneId: string,
  resource: { resourceId: string; displayName: string; scopes: readonly ScopeRecord[] },
): Promise<void> {
  await alreadyExistsOnConflict(`resource ${resource.resourceId}`, () =>
    tx.query(`INSERT INTO resources (zone_id, resource_id, display_name) VALUES ($1, $2, $3)`, [
      zoneId,
      resource.resourceId,
      resource.displayName,
    ]),
  );
  await addScopes(tx, zoneId, resource.resourceId, resource.scopes);
}

/** Adds scopes; names already offered keep their description. */
export async function addScopes(tx: Queryable, zoneId: string, resourceId: string, scopes: readonly ScopeRecord[]): Promise<void> {
  if (scopes.length === 0) return;
  await tx.query(
    `INSERT INTO resource_scopes (zone_id, resource_id, name, description)
     SELECT $1, $2, name, description FROM unnest($3::text[], $4::text[]) AS s (name, description)
     ON CONFLICT DO NOTHING`,
    [zoneId, resourceId, scopes.map((scope) => scope.name), scopes.map((scope) => scope.description)],
  );
}

/** One resource, or undefined. */
export async function findResource(db: Queryable, zoneId: string, resourceId: string): Promise<ResourceRecord | undefined> {
  const { rows } = await db.query<ResourceRow>(`SELECT * FROM resources WHERE zone_id = $1 AND resource_id = $2`, [
    zoneId,
    resourceId,
  ]);
  return (await withScopes(db, zoneId, rows))[0];
}

/** Every resource of the zone with its scopes, in id order. */
export async function listResources(
  db: Queryable,
  zoneId: string,
  afterResourceId: string | undefined,
  limit: number,
): Promise<ResourceRecord[]> {
  const { rows } = await db.query<ResourceRow>(
    `SELECT * FROM resources WHERE zone_id = $1 AND resource_id > $2 ORDER BY resource_id LIMIT $3`,
    [zoneId, afterResourceId ?? "", limit],
  );
  return withScopes(db, zoneId, rows);
}

async function withScopes(db: Queryable, zoneId: string, rows: ResourceRow[]): Promise<ResourceRecord[]> {
  if (rows.length === 0) return [];
  const { rows: scopes } = await db.query<{ resource_id: string; name: string; description: string }>(
    `SELECT resource_id, name, description FROM resource_scopes WHERE zone_id = $1 AND resource_id = ANY($2) ORDER BY name`,
    [zoneId, rows.map((row) => row.resource_id)],
  );
  return rows.map((row) => ({
    zoneId: row.zone_id,
    resourceId: row.resource_id,
    displayName: row.display_name,
    createdAt: row.created_at,
    scopes: scopes.filter((scope) => scope.resource_id === row.resource_id).map(({ name, description }) => ({ name, description })),
  }));
}
