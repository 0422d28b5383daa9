/**
 * Helpers for tests against the shared Postgres server: each caller gets a
 * database of its own, so test files run in parallel and repeated runs never
 * see each other's tables or migration history.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";

/** The admin connection tests use: `CARACAL_TEST_DATABASE_URL`, else the developer default (trust auth). */
export const testAdminDatabaseUrl =
  process.env.CARACAL_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** A database created for one test or test file. */
export interface TestDatabase {
  /** Connection URL of the new database (the admin URL with the database name swapped). */
  readonly url: string;
  /** Disconnects whoever is still connected and drops the database. Idempotent. */
  drop(): Promise<void>;
}

/**
 * Creates a fresh, empty database named `caracal_test_<uuid>` on the test server.
 *
 * @example
 * const db = await createTestDatabase();
 * afterAll(() => db.drop());
 * const store = await openPostgresStore(db.url);
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `caracal_test_${randomUUID().replaceAll("-", "")}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  const url = new URL(testAdminDatabaseUrl);
  url.pathname = `/${name}`;
  let dropping: Promise<void> | undefined;
  return {
    url: url.toString(),
    drop() {
      dropping ??= withAdmin(async (admin) => {
        // A store a failed test never closed would otherwise make DROP fail
        // with "database is being accessed by other users".
        await admin.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
          [name],
        );
        // FORCE covers a connection that arrives between the two statements.
        await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      });
      return dropping;
    },
  };
}

async function withAdmin<T>(fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: testAdminDatabaseUrl, connectionTimeoutMillis: 5_000 });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(
      `the test Postgres server is not reachable at ${redact(testAdminDatabaseUrl)}; ` +
        "start it or set CARACAL_TEST_DATABASE_URL",
      { cause: error },
    );
  }
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}
