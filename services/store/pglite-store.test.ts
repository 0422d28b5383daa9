import { randomUUID } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { migrate } from "./migrator.js";
import { openStore } from "./open-store.js";
import { openPgliteStore } from "./pglite-store.js";
import { describeStoreContract } from "./store.contract.js";

const repoMigrationsDir = fileURLToPath(new URL("../../migrations/", import.meta.url));

// In memory: the contract is about behaviour, not files; persistence is tested below.
describeStoreContract("pglite", async () => {
  const store = await openPgliteStore(undefined);
  return { store, cleanup: () => store.close() };
});

describe("pglite store", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "caracal-pglite-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("keeps its data across close and reopen in a data directory created with mode 0700", async () => {
    const dataDir = join(dir, "nested", "pgdata");
    const id = randomUUID();
    const first = await openPgliteStore(dataDir);
    try {
      expect(first.kind).toBe("pglite");
      await migrate(first, repoMigrationsDir);
      await first.query("INSERT INTO zones (id, slug) VALUES ($1, 'kept')", [id]);
    } finally {
      await first.close();
    }
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);

    const second = await openPgliteStore(dataDir);
    try {
      expect(await migrate(second, repoMigrationsDir)).toEqual({ applied: [] });
      const { rows } = await second.query("SELECT id, slug FROM zones");
      expect(rows).toEqual([{ id, slug: "kept" }]);
    } finally {
      await second.close();
    }
  });

  it("opens PGlite in <dataDir>/pgdata through openStore when no database URL is given, migrated", async () => {
    const store = await openStore({ databaseUrl: "", dataDir: dir });
    try {
      expect(store.kind).toBe("pglite");
      expect((await stat(join(dir, "pgdata"))).isDirectory()).toBe(true);
      const { rows } = await store.query("SELECT name FROM schema_migrations WHERE version = 1");
      expect(rows).toEqual([{ name: "zones" }]);
    } finally {
      await store.close();
    }
  });
});
