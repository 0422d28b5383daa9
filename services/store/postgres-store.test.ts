import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createTestDatabase, testAdminDatabaseUrl, type TestDatabase } from "../../test/support/postgres.js";
import { MigrationFailedError, migrate } from "./migrator.js";
import { openStore } from "./open-store.js";
import { openPostgresStore } from "./postgres-store.js";
import { StoreConnectionError } from "./store.js";
import { describeStoreContract } from "./store.contract.js";

// Each opened store gets a database of its own on the real server, dropped by
// cleanup: migration tests need an empty history, and parallel files never meet.
describeStoreContract("postgres", async () => {
  const database = await createTestDatabase();
  try {
    const store = await openPostgresStore(database.url);
    return {
      store,
      async cleanup() {
        await store.close();
        await database.drop();
      },
    };
  } catch (error) {
    await database.drop();
    throw error;
  }
});

describe("postgres store", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(() => database?.drop());

  it("applies each migration once when two stores (two pools) migrate one fresh database at the same time", async () => {
    const dir = await mkdtemp(join(tmpdir(), "caracal-migrations-"));
    try {
      // Several tables and a seed: without the advisory lock the second starter
      // would fail on a duplicate table or insert the seed twice.
      await writeFile(join(dir, "0001_widgets.sql"), "CREATE TABLE widgets (id int PRIMARY KEY);");
      await writeFile(join(dir, "0002_gadgets.sql"), "CREATE TABLE gadgets (id int PRIMARY KEY);");
      await writeFile(join(dir, "0003_counter.sql"), "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);");
      const stores = await Promise.all([openPostgresStore(database.url), openPostgresStore(database.url)]);
      try {
        const reports = await Promise.all(stores.map((store) => migrate(store, dir)));
        expect(reports.flatMap((report) => report.applied).sort()).toEqual([
          "0001_widgets.sql",
          "0002_gadgets.sql",
          "0003_counter.sql",
        ]);
        const { rows } = await stores[0].query("SELECT version FROM schema_migrations ORDER BY version");
        expect(rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
        expect((await stores[1].query("SELECT n FROM counter")).rows).toEqual([{ n: 1 }]);
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("fails fast with StoreConnectionError naming the target when nothing listens at the URL", async () => {
    const started = performance.now();
    const error = await openPostgresStore("postgres://caracal:s3cret-pw@127.0.0.1:1/caracal").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreConnectionError);
    expect((error as Error).message).toMatch(/^cannot connect to Postgres at caracal@127\.0\.0\.1:1\/caracal: .*ECONNREFUSED/);
    expect((error as Error).message).not.toContain("s3cret-pw");
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("gives up with StoreConnectionError after the connect timeout when the server accepts but never answers", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const error = await openPostgresStore(`postgres://caracal@127.0.0.1:${port}/caracal`, {
        connectTimeoutMs: 200,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreConnectionError);
      expect((error as Error).message).toMatch(/^cannot connect to Postgres at caracal@127\.0\.0\.1:\d+\/caracal: .*timeout/i);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("rejects a URL that is not a postgres:// URL with StoreConnectionError", async () => {
    for (const url of ["not a url", "mysql://root@127.0.0.1/caracal", ""]) {
      const error = await openPostgresStore(url).catch((e: unknown) => e);
      expect(error, url).toBeInstanceOf(StoreConnectionError);
      expect((error as Error).message, url).toMatch(/^invalid Postgres URL/);
    }
  });

  it("reports a database that does not exist as StoreConnectionError carrying the server's SQLSTATE", async () => {
    const url = new URL(database.url);
    url.pathname = "/caracal_no_such_database";
    const error = await openPostgresStore(url.toString()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreConnectionError);
    expect((error as Error).message).toContain('database "caracal_no_such_database" does not exist');
    expect((error as Error).cause).toMatchObject({ code: "3D000" });
  });

  it("opens Postgres through openStore when a database URL is given, migrated with the repository's migrations", async () => {
    const fresh = await createTestDatabase();
    try {
      const store = await openStore({ databaseUrl: fresh.url, dataDir: "/nonexistent/never-used" });
      try {
        expect(store.kind).toBe("postgres");
        const { rows } = await store.query("SELECT name FROM schema_migrations WHERE version = 1");
        expect(rows).toEqual([{ name: "zones" }]);
      } finally {
        await store.close();
      }
    } finally {
      await fresh.drop();
    }
  });

  it("closes the store and rethrows the migration error when openStore cannot migrate", async () => {
    const fresh = await createTestDatabase();
    const migrationsDir = await mkdtemp(join(tmpdir(), "caracal-migrations-"));
    try {
      await writeFile(join(migrationsDir, "0001_broken.sql"), "SELEC 1;");
      const error = await openStore({ databaseUrl: fresh.url, dataDir: "/nonexistent/never-used", migrationsDir }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(MigrationFailedError);
      // The pool was ended: its backends leave pg_stat_activity (asynchronously, hence poll).
      const name = new URL(fresh.url).pathname.slice(1);
      await expect.poll(() => connectionsTo(name)).toBe(0);
    } finally {
      await rm(migrationsDir, { recursive: true, force: true });
      await fresh.drop();
    }
  });
});

async function connectionsTo(database: string): Promise<number> {
  const admin = new pg.Client({ connectionString: testAdminDatabaseUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1",
      [database],
    );
    return rows[0]!.n;
  } finally {
    await admin.end();
  }
}
