/**
 * The one suite every store implementation passes (as spicedb runs one suite
 * over every datastore). A test file calls {@link describeStoreContract} with a
 * way to open a fresh, unmigrated store; anything here that differs between
 * Postgres and PGlite is a bug in one of the stores.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  MigrationChecksumError,
  MigrationFailedError,
  MigrationFileError,
  MigrationMissingError,
  MigrationOrderError,
  migrate,
} from "./migrator.js";
import { StoreClosedError, StoreQueryError, type Queryable, type Store } from "./store.js";

/** A store opened for one test, and how to get rid of it and everything it stored. */
export interface OpenedStore {
  readonly store: Store;
  cleanup(): Promise<void>;
}

const repoMigrationsDir = fileURLToPath(new URL("../../migrations/", import.meta.url));

/**
 * Declares the store contract suite.
 *
 * @param name Shown in test names, e.g. `postgres`.
 * @param open Opens a fresh, empty, unmigrated store each time it is called.
 *
 * @example
 * describeStoreContract("pglite", async () => {
 *   const store = await openPgliteStore(undefined);
 *   return { store, cleanup: () => store.close() };
 * });
 */
export function describeStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  describe(`${name} store contract`, () => {
    describe("migrations", () => {
      let opened: OpenedStore;
      let store: Store;
      let dir: MigrationsDir;
      beforeEach(async () => {
        opened = await open();
        store = opened.store;
        dir = await MigrationsDir.create();
      });
      afterEach(async () => {
        await opened.cleanup();
        await dir.remove();
      });

      it("applies the repository's migrations once and records each with its file's sha256", async () => {
        const first = await migrate(store, repoMigrationsDir);
        expect(first.applied).toContain("0001_zones.sql");
        const second = await migrate(store, repoMigrationsDir);
        expect(second.applied).toEqual([]);

        const { rows } = await store.query<{ version: number; name: string; checksum: string; applied_at: Date }>(
          "SELECT version, name, checksum, applied_at FROM schema_migrations WHERE version = 1",
        );
        const bytes = await readFile(join(repoMigrationsDir, "0001_zones.sql"));
        expect(rows).toEqual([
          {
            version: 1,
            name: "zones",
            checksum: createHash("sha256").update(bytes).digest("hex"),
            applied_at: expect.any(Date),
          },
        ]);
        expect(await tableExists(store, "zones")).toBe(true);
      });

      it("applies only the new migrations on a later run, in number order, ignoring files that are not .sql", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await dir.write("README.md", "Migrations are append-only.");
        expect(await migrate(store, dir.path)).toEqual({ applied: ["0001_widgets.sql"] });

        await dir.write("0003_gizmos.sql", "CREATE TABLE gizmos (widget int REFERENCES gadgets (id));");
        await dir.write("0002_gadgets.sql", "CREATE TABLE gadgets (id int PRIMARY KEY);");
        expect(await migrate(store, dir.path)).toEqual({ applied: ["0002_gadgets.sql", "0003_gizmos.sql"] });
        expect(await appliedVersions(store)).toEqual([1, 2, 3]);
      });

      it("refuses an applied migration whose file changed, with MigrationChecksumError naming the file", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await migrate(store, dir.path);
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY);");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationChecksumError);
        expect(error).toMatchObject({ code: "MIGRATION_CHANGED", file: "0001_widgets.sql" });
        expect((error as Error).message).toMatch(
          /^migration 0001_widgets\.sql was changed after it was applied \(checksum [0-9a-f]{12}…≠[0-9a-f]{12}…\); migrations are append-only: add a new one instead$/,
        );
      });

      it("refuses an applied migration whose file was renamed, with MigrationChecksumError", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await migrate(store, dir.path);
        await dir.rename("0001_widgets.sql", "0001_things.sql");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationChecksumError);
        expect((error as Error).message).toContain("0001_widgets.sql was renamed to 0001_things.sql");
      });

      it("refuses a .sql file not named NNNN_name.sql before touching the database", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        for (const badName of ["1_gadgets.sql", "00002_gadgets.sql", "0002-gadgets.sql", "0002_Gadgets.sql", "0002_.sql"]) {
          await dir.write(badName, "CREATE TABLE gadgets (id int PRIMARY KEY);");
          const error = await migrate(store, dir.path).catch((e: unknown) => e);
          expect(error, badName).toBeInstanceOf(MigrationFileError);
          expect(error, badName).toMatchObject({ code: "MIGRATION_FILE_INVALID" });
          expect((error as Error).message, badName).toContain(badName);
          await dir.delete(badName);
        }
        expect(await tableExists(store, "schema_migrations")).toBe(false);
      });

      it("refuses two migrations with the same number, naming both files", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await dir.write("0001_gadgets.sql", "CREATE TABLE gadgets (id int PRIMARY KEY);");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationFileError);
        expect((error as Error).message).toMatch(/0001_gadgets\.sql and 0001_widgets\.sql|0001_widgets\.sql and 0001_gadgets\.sql/);
        expect(await tableExists(store, "schema_migrations")).toBe(false);
      });

      it("leaves no tables and no schema_migrations row from a run in which a migration fails", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await migrate(store, dir.path);
        await dir.write("0002_gadgets.sql", "CREATE TABLE gadgets (id int PRIMARY KEY);");
        await dir.write("0003_broken.sql", "CREATE TABLE gizmos (id int PRIMARY KEY);\nSELEC 1;");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationFailedError);
        expect(error).toMatchObject({ code: "MIGRATION_FAILED", file: "0003_broken.sql" });
        expect((error as Error).cause).toBeInstanceOf(StoreQueryError);
        expect((error as Error).cause).toMatchObject({ code: "42601" });

        expect(await appliedVersions(store)).toEqual([1]);
        expect(await tableExists(store, "widgets")).toBe(true);
        expect(await tableExists(store, "gadgets")).toBe(false);
        expect(await tableExists(store, "gizmos")).toBe(false);
      });

      it("leaves even schema_migrations absent when the first run on an empty database fails", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await dir.write("0002_broken.sql", "INSERT INTO no_such_table VALUES (1);");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationFailedError);
        expect((error as Error).cause).toMatchObject({ code: "42P01" });
        expect(await tableExists(store, "widgets")).toBe(false);
        expect(await tableExists(store, "schema_migrations")).toBe(false);
      });

      it("refuses a database that has a migration this build lacks, with MigrationMissingError", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await dir.write("0002_gadgets.sql", "CREATE TABLE gadgets (id int PRIMARY KEY);");
        await migrate(store, dir.path);
        await dir.delete("0002_gadgets.sql");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationMissingError);
        expect(error).toMatchObject({ code: "MIGRATION_MISSING" });
        expect((error as Error).message).toContain("0002_gadgets.sql");
      });

      it("refuses a new migration numbered below one already applied, with MigrationOrderError", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await dir.write("0003_gizmos.sql", "CREATE TABLE gizmos (id int PRIMARY KEY);");
        await migrate(store, dir.path);
        await dir.write("0002_gadgets.sql", "CREATE TABLE gadgets (id int PRIMARY KEY);");

        const error = await migrate(store, dir.path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MigrationOrderError);
        expect((error as Error).message).toContain("0002_gadgets.sql is numbered below 0003_gizmos.sql");
        expect(await tableExists(store, "gadgets")).toBe(false);
      });

      it("applies each migration once when several migrate calls on one store run at the same time", async () => {
        await dir.write("0001_widgets.sql", "CREATE TABLE widgets (id int PRIMARY KEY);");
        await dir.write("0002_gadgets.sql", "CREATE TABLE gadgets (id int PRIMARY KEY);");
        await dir.write("0003_seed.sql", "INSERT INTO widgets VALUES (1), (2), (3);");

        const reports = await Promise.all([1, 2, 3, 4].map(() => migrate(store, dir.path)));
        expect(reports.flatMap((report) => report.applied).sort()).toEqual([
          "0001_widgets.sql",
          "0002_gadgets.sql",
          "0003_seed.sql",
        ]);
        expect(await appliedVersions(store)).toEqual([1, 2, 3]);
        expect((await store.query("SELECT id FROM widgets")).rowCount).toBe(3);
      });
    });

    describe("queries and transactions", () => {
      let opened: OpenedStore;
      let store: Store;
      beforeAll(async () => {
        opened = await open();
        store = opened.store;
        await migrate(store, repoMigrationsDir);
      });
      afterAll(() => opened?.cleanup());

      const insertZone = (on: Queryable, slug: string) =>
        on.query("INSERT INTO zones (id, slug) VALUES ($1, $2)", [randomUUID(), slug]);
      const zoneExists = async (slug: string) =>
        (await store.query("SELECT 1 FROM zones WHERE slug = $1", [slug])).rowCount === 1;

      it("returns every column type as pg does by default, for parameters and for literals", async () => {
        await store.query(`
          CREATE TABLE parity (
            i8 bigint, serial8 bigserial, i4 integer, f8 double precision, num numeric(30, 10),
            ts timestamptz, js jsonb, flag boolean, id uuid, tags text[], counts bigint[], raw bytea,
            note text, missing text
          )`);
        const id = randomUUID();
        const at = new Date("2024-05-06T07:08:09.123Z");
        const doc = { a: [1, "x", null], nested: { ok: true }, quote: 'say "hi"' };
        const tags = ["a", "b,c", "", null, 'qu"ote', "back\\slash"];
        const raw = Buffer.from([0, 1, 2, 127, 128, 255]);
        await store.query(
          "INSERT INTO parity (i8, i4, f8, num, ts, js, flag, id, tags, counts, raw, note, missing) " +
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
          [9007199254740993n, 42, 1.5, "12345678901234.0123456789", at, doc, true, id, tags, [1, 2], raw, "héllo ✓", null],
        );
        const expected = {
          i8: "9007199254740993",
          serial8: "1",
          i4: 42,
          f8: 1.5,
          num: "12345678901234.0123456789",
          ts: at,
          js: doc,
          flag: true,
          id,
          tags,
          counts: ["1", "2"],
          raw,
          note: "héllo ✓",
          missing: null,
        };

        const withParams = (await store.query("SELECT * FROM parity WHERE id = $1", [id])).rows;
        expect(withParams).toStrictEqual([expected]);
        expect(withParams[0]!.raw).toBeInstanceOf(Buffer);
        expect(withParams[0]!.ts).toBeInstanceOf(Date);

        // Without parameters the statement goes over the simple protocol: same values.
        expect((await store.query("SELECT * FROM parity")).rows).toStrictEqual([expected]);

        const literals = await store.query(
          "SELECT 9223372036854775807::int8 AS max_i8, 1.50::numeric AS num, 'null'::jsonb AS json_null, " +
            "'[1, 2]'::json AS json_array, NULL::int8 AS no_i8, '\\x00ff'::bytea AS bytes, false AS off",
        );
        expect(literals.rows).toStrictEqual([
          {
            max_i8: "9223372036854775807",
            num: "1.50",
            json_null: null,
            json_array: [1, 2],
            no_i8: null,
            bytes: Buffer.from([0, 255]),
            off: false,
          },
        ]);
      });

      it("accepts a JSON document given as a string for a jsonb parameter, as pg does", async () => {
        const { rows } = await store.query<{ doc: unknown }>("SELECT $1::jsonb AS doc", ['{"a": 1}']);
        expect(rows).toStrictEqual([{ doc: { a: 1 } }]);
      });

      it("reports rows affected, and 0 for statements without a count", async () => {
        const slugs = [`rc-${short()}`, `rc-${short()}`];
        for (const slug of slugs) await insertZone(store, slug);
        const updated = await store.query("UPDATE zones SET display_name = 'x' WHERE slug = ANY($1)", [slugs]);
        expect(updated).toEqual({ rows: [], rowCount: 2 });
        expect((await store.query("CREATE TABLE IF NOT EXISTS row_count_probe (id int)")).rowCount).toBe(0);
      });

      it("runs several statements given without parameters and returns the last one's result", async () => {
        const { rows } = await store.query("SELECT 1 AS first; SELECT 2 AS second");
        expect(rows).toEqual([{ second: 2 }]);
      });

      it("commits a transaction when its function resolves and returns the function's value", async () => {
        const slug = `commit-${short()}`;
        const value = await store.transaction(async (tx) => {
          await insertZone(tx, slug);
          const { rows } = await tx.query<{ n: string }>("SELECT count(*) AS n FROM zones WHERE slug = $1", [slug]);
          return rows[0]!.n;
        });
        expect(value).toBe("1");
        expect(await zoneExists(slug)).toBe(true);
      });

      it("rolls back a transaction whose function throws and rethrows that very error, even one shaped like a database error", async () => {
        const slug = `rollback-${short()}`;
        const boom = Object.assign(new Error("the caller's own failure"), { code: "23505", severity: "ERROR" });
        await expect(
          store.transaction(async (tx) => {
            await insertZone(tx, slug);
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(await zoneExists(slug)).toBe(false);
      });

      it("rolls back and reports 25P02 when a statement failed inside a transaction whose function swallowed the error", async () => {
        const slug = `aborted-${short()}`;
        const error = await store
          .transaction(async (tx) => {
            await insertZone(tx, slug);
            await tx.query("SELEC 1").catch(() => undefined);
          })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreQueryError);
        expect(error).toMatchObject({ code: "25P02" });
        expect(await zoneExists(slug)).toBe(false);
      });

      const violations: { case: string; sql: string; params: unknown[]; code: string; constraint?: string }[] = [
        {
          case: "a duplicate unique key",
          sql: "INSERT INTO zones (id, slug) VALUES (gen_random_uuid(), $1)",
          params: ["taken"],
          code: "23505",
          constraint: "zones_slug_key",
        },
        {
          case: "a CHECK constraint",
          sql: "INSERT INTO zones (id, slug) VALUES (gen_random_uuid(), $1)",
          params: ["Not A Slug"],
          code: "23514",
          constraint: "zones_slug_check",
        },
        { case: "a NOT NULL column", sql: "INSERT INTO zones (id) VALUES ($1)", params: [randomUUID()], code: "23502" },
        { case: "a malformed value", sql: "SELECT $1::uuid", params: ["not-a-uuid"], code: "22P02" },
        { case: "an unknown table", sql: "SELECT * FROM no_such_table", params: [], code: "42P01" },
        { case: "a syntax error", sql: "SELEC 1", params: [], code: "42601" },
      ];
      it.each(violations)("reports $case as StoreQueryError with SQLSTATE $code, in and out of transactions", async (v) => {
        await store.query("INSERT INTO zones (id, slug) VALUES (gen_random_uuid(), 'taken') ON CONFLICT DO NOTHING");

        const outside = await store.query(v.sql, v.params).catch((e: unknown) => e);
        expect(outside).toBeInstanceOf(StoreQueryError);
        expect(outside).toMatchObject({ code: v.code, ...(v.constraint ? { constraint: v.constraint } : {}) });

        const inside = await store.transaction((tx) => tx.query(v.sql, v.params)).catch((e: unknown) => e);
        expect(inside).toBeInstanceOf(StoreQueryError);
        expect(inside).toMatchObject({ code: v.code });
      });

      it("keeps the statement's parameters out of the error it throws", async () => {
        const error = await store.query("SELECT $1::text AS secret, 1 / 0 AS boom", ["s3cret-value"]).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreQueryError);
        expect(error).toMatchObject({ code: "22012" });
        expect(inspect(error, { depth: null, showHidden: true })).not.toContain("s3cret-value");
      });

      it("keeps a statement outside a running transaction out of it: it neither joins nor sees it", async () => {
        const insideSlug = `inside-${short()}`;
        const outsideSlug = `outside-${short()}`;
        const inserted = deferred();
        const issued = deferred();
        const boom = new Error("roll the transaction back");

        const transaction = store.transaction(async (tx) => {
          await insertZone(tx, insideSlug);
          inserted.resolve();
          // The outside statements are issued while this transaction is open.
          await issued.promise;
          await tx.query("SELECT 1");
          throw boom;
        });
        await inserted.promise;
        const seenFromOutside = store.query("SELECT 1 FROM zones WHERE slug = $1", [insideSlug]);
        const writtenFromOutside = insertZone(store, outsideSlug);
        issued.resolve();

        await expect(transaction).rejects.toBe(boom);
        expect((await seenFromOutside).rowCount).toBe(0);
        expect((await writtenFromOutside).rowCount).toBe(1);
        expect(await zoneExists(outsideSlug)).toBe(true);
        expect(await zoneExists(insideSlug)).toBe(false);
      });

      it("keeps every write when many transactions and plain statements run at once", async () => {
        const prefix = `many-${short()}`;
        await Promise.all([
          ...Array.from({ length: 20 }, (_, i) =>
            store.transaction(async (tx) => {
              await insertZone(tx, `${prefix}-tx-${i}`);
              await insertZone(tx, `${prefix}-tx2-${i}`);
            }),
          ),
          ...Array.from({ length: 20 }, (_, i) => insertZone(store, `${prefix}-plain-${i}`)),
        ]);
        const { rows } = await store.query<{ n: string }>("SELECT count(*) AS n FROM zones WHERE slug LIKE $1", [
          `${prefix}-%`,
        ]);
        expect(rows).toEqual([{ n: "60" }]);
      });

      it("throws TypeError, instead of deadlocking, when the store itself is used inside a transaction", async () => {
        const slug = `nested-${short()}`;
        await expect(
          store.transaction(async (tx) => {
            await insertZone(tx, slug);
            await store.query("SELECT 1");
          }),
        ).rejects.toThrow(TypeError);
        await expect(store.transaction(() => store.transaction(async () => 1))).rejects.toThrow(TypeError);
        expect(await zoneExists(slug)).toBe(false);
      });

      it("throws TypeError when a transaction handle is used after its transaction finished", async () => {
        let leaked: Queryable | undefined;
        await store.transaction(async (tx) => {
          leaked = tx;
        });
        await expect(leaked!.query("SELECT 1")).rejects.toThrow(TypeError);
      });
    });

    describe("closing", () => {
      let opened: OpenedStore;
      beforeEach(async () => {
        opened = await open();
      });
      afterEach(() => opened.cleanup());

      it("waits for a running transaction, is idempotent, and then refuses work with StoreClosedError", async () => {
        const { store } = opened;
        const started = deferred();
        const release = deferred();
        const events: string[] = [];
        const transaction = store.transaction(async (tx) => {
          started.resolve();
          await release.promise;
          const { rows } = await tx.query<{ v: number }>("SELECT 7 AS v");
          events.push("transaction done");
          return rows[0]!.v;
        });
        await started.promise;
        const closing = store.close().then(() => events.push("closed"));
        release.resolve();

        expect(await transaction).toBe(7);
        await closing;
        await store.close();
        expect(events).toEqual(["transaction done", "closed"]);
        await expect(store.query("SELECT 1")).rejects.toThrow(StoreClosedError);
        await expect(store.transaction(async () => 1)).rejects.toThrow(StoreClosedError);
      });
    });
  });
}

/** A temporary migrations folder a test rewrites at will. */
class MigrationsDir {
  private constructor(readonly path: string) {}

  static async create(): Promise<MigrationsDir> {
    return new MigrationsDir(await mkdtemp(join(tmpdir(), "caracal-migrations-")));
  }

  write(name: string, sql: string): Promise<void> {
    return writeFile(join(this.path, name), sql);
  }

  async rename(from: string, to: string): Promise<void> {
    const sql = await readFile(join(this.path, from));
    await rm(join(this.path, from));
    await writeFile(join(this.path, to), sql);
  }

  delete(name: string): Promise<void> {
    return rm(join(this.path, name));
  }

  remove(): Promise<void> {
    return rm(this.path, { recursive: true, force: true });
  }
}

async function tableExists(store: Store, table: string): Promise<boolean> {
  const { rows } = await store.query<{ present: boolean }>("SELECT to_regclass($1) IS NOT NULL AS present", [table]);
  return rows[0]!.present;
}

async function appliedVersions(store: Store): Promise<number[]> {
  const { rows } = await store.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
  return rows.map((row) => row.version);
}

function short(): string {
  return randomUUID().slice(0, 8);
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
