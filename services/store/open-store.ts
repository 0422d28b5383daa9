import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { migrate, type MigrationLogger } from "./migrator.js";
import { openPgliteStore } from "./pglite-store.js";
import { openPostgresStore } from "./postgres-store.js";
import type { Store } from "./store.js";

/** The repository's `migrations/` folder, found from this file so the working directory does not matter. */
const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations/", import.meta.url));

/** Where the store lives and which migrations bring it up to date. */
export interface OpenStoreOptions {
  /** A `postgres://` URL (`CARACAL_DATABASE_URL`); unset or empty means the embedded PGlite store. */
  databaseUrl?: string | undefined;
  /** Caracal's data directory (`CARACAL_DATA_DIR`); PGlite keeps its files in `<dataDir>/pgdata`. */
  dataDir: string;
  /** The migrations folder; defaults to the repository's `migrations/`. */
  migrationsDir?: string | undefined;
  /** Told about each migration applied. */
  log?: MigrationLogger | undefined;
}

/**
 * Opens the store the configuration asks for, Postgres when `databaseUrl` is
 * set and PGlite otherwise, and migrates it before handing it out. When
 * migrating fails the store is closed again and the error rethrown, so a
 * caller never holds a store with an unknown schema.
 *
 * @throws {StoreConnectionError} when the store cannot be opened.
 * @throws {MigrationError} when the migrations cannot be applied.
 *
 * @example
 * const store = await openStore({
 *   databaseUrl: process.env.CARACAL_DATABASE_URL,
 *   dataDir: process.env.CARACAL_DATA_DIR ?? ".caracal",
 * });
 */
export async function openStore(options: OpenStoreOptions): Promise<Store> {
  const store = options.databaseUrl
    ? await openPostgresStore(options.databaseUrl)
    : await openPgliteStore(join(options.dataDir, "pgdata"));
  try {
    await migrate(store, options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR, options.log);
  } catch (error) {
    // The migration error is the one worth reporting; a close failure on top would hide it.
    await store.close().catch(() => {});
    throw error;
  }
  return store;
}
