import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { StoreQueryError, type Queryable, type Store } from "./store.js";

/**
 * The advisory lock every migrating process takes, so concurrent starters
 * (replicas rolling out together) run one after another. The value is the
 * ASCII of "CARACALM"; any fixed int8 works as long as nothing else uses it.
 */
const MIGRATION_LOCK_KEY = 0x434152414341_4c4dn;

/** `0001_zones.sql`: four digits, an underscore, a lowercase snake_case name. */
const FILE_NAME = /^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$/;

/** Receives one line per applied migration; a pino logger fits. */
export interface MigrationLogger {
  info(fields: Record<string, unknown>, message: string): void;
}

/** What {@link migrate} did. */
export interface MigrationReport {
  /** File names of the migrations applied by this call, in order; empty when the database was current. */
  readonly applied: string[];
}

/** The stable codes of {@link MigrationError}, one per subclass, for exhaustive `switch`es. */
export type MigrationErrorCode =
  | "MIGRATION_FILE_INVALID"
  | "MIGRATION_CHANGED"
  | "MIGRATION_MISSING"
  | "MIGRATION_OUT_OF_ORDER"
  | "MIGRATION_FAILED";

/** Why migrating stopped. Nothing from the failed run is left in the database. */
export abstract class MigrationError extends Error {
  /** Which failure this is. */
  abstract readonly code: MigrationErrorCode;
}

/**
 * A `.sql` file in the migrations folder is not named `NNNN_name.sql`, or two
 * files share a number. Checked before the database is touched.
 */
export class MigrationFileError extends MigrationError {
  override readonly name = "MigrationFileError";
  readonly code = "MIGRATION_FILE_INVALID";
}

/**
 * An applied migration's file no longer matches what was applied: its bytes
 * (sha256) or its name changed. Applied migrations are history; a change goes
 * into a new migration.
 */
export class MigrationChecksumError extends MigrationError {
  override readonly name = "MigrationChecksumError";
  readonly code = "MIGRATION_CHANGED";
  /** The migration's file name as it is on disk. */
  readonly file: string;

  constructor(message: string, file: string) {
    super(message);
    this.file = file;
  }
}

/** The database records a migration this build does not have: the database is newer than the code. */
export class MigrationMissingError extends MigrationError {
  override readonly name = "MigrationMissingError";
  readonly code = "MIGRATION_MISSING";
}

/**
 * A pending migration is numbered below one already applied, typically two
 * branches that picked numbers independently. Applying it would give databases
 * different histories depending on when they were migrated; renumber it instead.
 */
export class MigrationOrderError extends MigrationError {
  override readonly name = "MigrationOrderError";
  readonly code = "MIGRATION_OUT_OF_ORDER";
}

/**
 * A migration's SQL failed. Every pending migration of the run was rolled back
 * with it. The `cause` is the {@link StoreQueryError} with the SQLSTATE.
 */
export class MigrationFailedError extends MigrationError {
  override readonly name = "MigrationFailedError";
  readonly code = "MIGRATION_FAILED";
  /** The failing migration's file name. */
  readonly file: string;

  constructor(file: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`migration ${file} failed, nothing from this run was applied: ${reason}`, { cause });
    this.file = file;
  }
}

interface MigrationFile {
  readonly version: number;
  readonly file: string;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

/** A `schema_migrations` row (a type alias, not an interface, so it fits `Row`). */
type AppliedMigration = {
  version: number;
  name: string;
  checksum: string;
};

/**
 * Brings the database up to date with the `NNNN_name.sql` files in `dir`.
 *
 * All pending migrations run in one transaction holding a transaction-scoped
 * advisory lock: a failure leaves nothing half-applied, and processes starting
 * at the same time (on one database) apply each migration exactly once. Each
 * applied migration is recorded in `schema_migrations` with the sha256 of its
 * file, which the migrator creates under the same lock when missing.
 *
 * A migration therefore cannot contain statements that refuse to run inside a
 * transaction (`CREATE INDEX CONCURRENTLY`, `VACUUM`) nor its own `COMMIT`.
 *
 * Files other than `*.sql` are ignored, so a README may sit beside them.
 *
 * @throws {MigrationFileError} for a misnamed `.sql` file or a duplicate number.
 * @throws {MigrationChecksumError} when an applied migration's file changed.
 * @throws {MigrationMissingError} when the database has a migration `dir` lacks.
 * @throws {MigrationOrderError} when a pending migration is numbered below an applied one.
 * @throws {MigrationFailedError} when a migration's SQL fails.
 *
 * @example
 * const { applied } = await migrate(store, "migrations", logger);
 */
export async function migrate(store: Store, dir: string, log?: MigrationLogger): Promise<MigrationReport> {
  const files = await readMigrationFiles(dir);
  const applied = await store.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    // Created under the lock: two starters creating it at once would collide
    // on the catalog even with IF NOT EXISTS.
    await tx.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const { rows } = await tx.query<AppliedMigration>(
      "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
    );
    const pending = pendingMigrations(files, rows);
    for (const migration of pending) await apply(tx, migration, log);
    return pending.map((migration) => migration.file);
  });
  return { applied };
}

async function readMigrationFiles(dir: string): Promise<MigrationFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const byVersion = new Map<number, MigrationFile>();
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith(".sql")) continue;
    const match = FILE_NAME.exec(entry.name);
    if (!match) {
      throw new MigrationFileError(
        `migration file ${entry.name} in ${dir} is not named NNNN_name.sql ` +
          "(four digits, an underscore, a lowercase snake_case name)",
      );
    }
    const version = Number(match[1]);
    const other = byVersion.get(version);
    if (other) {
      throw new MigrationFileError(
        `migrations ${other.file} and ${entry.name} in ${dir} share the number ${match[1]}`,
      );
    }
    const bytes = await readFile(join(dir, entry.name));
    byVersion.set(version, {
      version,
      file: entry.name,
      name: match[2]!,
      sql: bytes.toString("utf8"),
      checksum: createHash("sha256").update(bytes).digest("hex"),
    });
  }
  return [...byVersion.values()].sort((a, b) => a.version - b.version);
}

/** Checks the recorded history against the files and returns what is left to apply. */
function pendingMigrations(files: MigrationFile[], applied: AppliedMigration[]): MigrationFile[] {
  const onDisk = new Map(files.map((file) => [file.version, file]));
  for (const row of applied) {
    const recorded = fileName(row.version, row.name);
    const file = onDisk.get(row.version);
    if (!file) {
      throw new MigrationMissingError(
        `the database has migration ${recorded} applied but this build does not have it; ` +
          "the database is newer than this build: run a build that includes it",
      );
    }
    if (file.name !== row.name) {
      throw new MigrationChecksumError(
        `migration ${recorded} was renamed to ${file.file} after it was applied; ` +
          "migrations are append-only: restore the old name",
        file.file,
      );
    }
    if (file.checksum !== row.checksum) {
      throw new MigrationChecksumError(
        `migration ${file.file} was changed after it was applied ` +
          `(checksum ${short(row.checksum)}≠${short(file.checksum)}); ` +
          "migrations are append-only: add a new one instead",
        file.file,
      );
    }
  }
  const appliedVersions = new Set(applied.map((row) => row.version));
  const pending = files.filter((file) => !appliedVersions.has(file.version));
  const newest = applied[applied.length - 1];
  const stray = newest && pending.find((file) => file.version < newest.version);
  if (newest && stray) {
    throw new MigrationOrderError(
      `migration ${stray.file} is numbered below ${fileName(newest.version, newest.name)}, ` +
        "which is already applied; give it a number above the newest applied migration",
    );
  }
  return pending;
}

async function apply(tx: Queryable, migration: MigrationFile, log: MigrationLogger | undefined): Promise<void> {
  const started = performance.now();
  try {
    await tx.query(migration.sql);
  } catch (error) {
    throw new MigrationFailedError(migration.file, StoreQueryError.from(error) ?? error);
  }
  await tx.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
    migration.version,
    migration.name,
    migration.checksum,
  ]);
  log?.info(
    { migration: migration.file, ms: Math.round(performance.now() - started) },
    "applied migration",
  );
}

function fileName(version: number, name: string): string {
  return `${String(version).padStart(4, "0")}_${name}.sql`;
}

function short(checksum: string): string {
  return `${checksum.slice(0, 12)}…`;
}
