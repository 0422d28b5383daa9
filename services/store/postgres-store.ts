import { AsyncLocalStorage } from "node:async_hooks";
import pg from "pg";
import {
  StoreClosedError,
  StoreConnectionError,
  StoreQueryError,
  type Queryable,
  type QueryResult,
  type Row,
  type Store,
} from "./store.js";

/** Tuning for {@link openPostgresStore}; the defaults suit production. */
export interface PostgresStoreOptions {
  /**
   * How long opening one connection (TCP, TLS, login) may take before it fails,
   * at start-up and whenever the pool grows. Default 5000 ms.
   */
  connectTimeoutMs?: number;
}

/**
 * Opens a store on a Postgres server through a `pg` connection pool, and checks
 * that it can connect and log in before returning. The store is not migrated:
 * `openStore` does that.
 *
 * Every connection runs with `TimeZone=UTC`, the zone PGlite always uses, so
 * date arithmetic and casts in SQL give the same answers on both stores.
 *
 * @param url A `postgres://` (or `postgresql://`) connection URL.
 * @throws {StoreConnectionError} when the URL is malformed, or the server cannot
 * be reached or refuses the login within the connect timeout (5 s by default).
 *
 * @example
 * const store = await openPostgresStore("postgres://caracal@db.internal:5432/caracal");
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<Store> {
  const target = describeTarget(url);
  const pool = new pg.Pool({
    connectionString: url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    options: "-c TimeZone=UTC",
  });
  // An idle pooled connection that dies (server restart, network cut) is
  // emitted as 'error' on the pool; without a listener Node would crash the
  // process. The pool already discards the dead connection, and the next
  // statement either gets a fresh one or fails with its own error.
  pool.on("error", () => {});
  try {
    await pool.query("SELECT 1");
  } catch (error) {
    await pool.end().catch(() => {});
    throw new StoreConnectionError(`cannot connect to Postgres at ${target}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return new PostgresStore(pool);
}

/** The store behind {@link openPostgresStore}. */
class PostgresStore implements Store {
  readonly kind = "postgres";
  readonly #pool: pg.Pool;
  #closing: Promise<void> | undefined;
  // Marks code running inside a transaction callback, so that using the
  // store itself there fails loudly (see Store.transaction).
  readonly #insideTransaction = new AsyncLocalStorage<{ open: boolean }>();

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#checkUsable("query");
    return run<R>(this.#pool, sql, params);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    this.#checkUsable("transaction");
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw StoreQueryError.from(error) ?? error;
    }
    const scope = { open: true };
    const tx: Queryable = {
      query: <R extends Row = Row>(sql: string, params?: readonly unknown[]) => {
        if (!scope.open) return Promise.reject(finishedTransactionError());
        return run<R>(client, sql, params);
      },
    };
    // A connection whose ROLLBACK failed is in an unknown state: it is
    // destroyed instead of going back to the pool.
    let broken: Error | undefined;
    try {
      await run(client, "BEGIN");
      const value = await this.#insideTransaction.run(scope, () => fn(tx));
      scope.open = false;
      const commit = await client.query("COMMIT").catch((error: unknown) => {
        throw StoreQueryError.from(error) ?? error;
      });
      // Postgres answers COMMIT of an aborted transaction with "ROLLBACK" and
      // no error; pg passes that through silently. PGlite throws, and so do we,
      // so a caller that swallowed a failed statement cannot believe it wrote.
      if (commit.command === "ROLLBACK") throw rolledBackInsteadOfCommitted();
      return value;
    } catch (error) {
      scope.open = false;
      // Harmless when COMMIT already ended the transaction (a warning, not an error).
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    } finally {
      client.release(broken);
    }
  }

  close(): Promise<void> {
    // pg's Pool.end waits for checked-out clients to be released, so running
    // statements and transactions finish first.
    this.#closing ??= this.#pool.end();
    return this.#closing;
  }

  #checkUsable(what: "query" | "transaction"): void {
    if (this.#closing) throw new StoreClosedError();
    if (this.#insideTransaction.getStore()?.open) throw nestedUseError(what);
  }
}

/** Runs one statement on the pool or a client and shapes the result like the interface says. */
async function run<R extends Row>(
  on: pg.Pool | pg.PoolClient,
  sql: string,
  params?: readonly unknown[],
): Promise<QueryResult<R>> {
  let result: pg.QueryResult | pg.QueryResult[];
  try {
    // `params` is read-only in our interface; pg only reads it too.
    result = await on.query(sql, params as unknown[] | undefined);
  } catch (error) {
    throw StoreQueryError.from(error) ?? error;
  }
  // Several statements over the simple protocol come back as one result each.
  const last = Array.isArray(result) ? result[result.length - 1] : result;
  return { rows: (last?.rows ?? []) as R[], rowCount: last?.rowCount ?? 0 };
}

/** `user@host:port/database` for messages: enough to spot a typo, never the password. */
function describeTarget(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreConnectionError(
      "invalid Postgres URL: expected postgres://user[:password]@host[:port]/database",
    );
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new StoreConnectionError(
      `invalid Postgres URL: scheme ${JSON.stringify(parsed.protocol)} is not postgres: or postgresql:`,
    );
  }
  const user = parsed.username ? `${decodeURIComponent(parsed.username)}@` : "";
  return `${user}${parsed.host}${parsed.pathname}`;
}

function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    // Node reports a refused connection to a host with several addresses
    // (localhost: ::1 and 127.0.0.1) as an AggregateError with an empty message.
    return error.errors.map(messageOf).join("; ");
  }
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function nestedUseError(what: "query" | "transaction"): TypeError {
  return new TypeError(
    `store.${what} was called inside store.transaction; use the transaction's tx.query instead ` +
      "(on PGlite the call would wait for the transaction that is waiting for it)",
  );
}

function finishedTransactionError(): TypeError {
  return new TypeError("tx.query was called after its transaction finished");
}

function rolledBackInsteadOfCommitted(): StoreQueryError {
  return new StoreQueryError(
    "the transaction was rolled back instead of committed: a statement in it failed",
    { code: "25P02" },
  );
}
