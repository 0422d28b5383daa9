import { randomUUID } from "node:crypto";
import type { Queryable } from "../store/store.js";
import { alreadyExistsOnConflict } from "./conflicts.js";

/** A zone as stored. */
export interface ZoneRecord {
  readonly id: string;
  readonly slug: string;
  readonly displayName: string;
  readonly maxSessionTtlSeconds: number;
  readonly maxResourceTtlSeconds: number;
  readonly maxDelegationHops: number;
  readonly createdAt: Date;
}

/** What a new zone needs. */
export interface NewZone {
  readonly slug: string;
  readonly displayName: string;
  readonly maxSessionTtlSeconds?: number | undefined;
}

const COLUMNS = `id, slug, display_name, max_session_ttl_seconds, max_resource_ttl_seconds, max_delegation_hops, created_at`;

type ZoneRow = {
  id: string;
  slug: string;
  display_name: string;
  max_session_ttl_seconds: number;
  max_resource_ttl_seconds: number;
  max_delegation_hops: number;
  created_at: Date;
};

function toZone(row: ZoneRow): ZoneRecord {
  return {
    id: row.id,
    slug: row.slug,
    displayName: row.display_name,
    maxSessionTtlSeconds: row.max_session_ttl_seconds,
    maxResourceTtlSeconds: row.max_resource_ttl_seconds,
    maxDelegationHops: row.max_delegation_hops,
    createdAt: row.created_at,
  };
}

/** Inserts a zone. @throws ALREADY_EXISTS when the slug is taken. */
export async function insertZone(db: Queryable, zone: NewZone): Promise<ZoneRecord> {
  const { rows } = await alreadyExistsOnConflict(`zone ${zone.slug}`, () =>
    db.query<ZoneRow>(
      `INSERT INTO zones (id, slug, display_name, max_session_ttl_seconds)
       VALUES ($1, $2, $3, COALESCE($4, 3600)) RETURNING ${COLUMNS}`,
      [randomUUID(), zone.slug, zone.displayName, zone.maxSessionTtlSeconds ?? null],
    ),
  );
  return toZone(rows[0]!);
}

/** The zone with this slug, if any. */
export async function findZone(db: Queryable, slug: string): Promise<ZoneRecord | undefined> {
  const { rows } = await db.query<ZoneRow>(`SELECT ${COLUMNS} FROM zones WHERE slug = $1`, [slug]);
  return rows[0] && toZone(rows[0]);
}

/** Zones by slug, after `afterSlug`. */
export async function listZones(db: Queryable, afterSlug: string | undefined, limit: number): Promise<ZoneRecord[]> {
  const { rows } = await db.query<ZoneRow>(
    `SELECT ${COLUMNS} FROM zones WHERE slug > $1 ORDER BY slug LIMIT $2`,
    [afterSlug ?? "", limit],
  );
  return rows.map(toZone);
}
