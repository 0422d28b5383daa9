/**
 * The store: Caracal's one door to Postgres. Two implementations share this
 * interface and the same SQL: `pg` against a real server (production) and
 * PGlite in-process (the embedded default). Both return the same JavaScript
 * values for the same SQL and fail with the same error classes, so code and
 * tests written against one hold on the other.
 */

/**
 * A result row: column name to value. Values are what `pg` returns by default,
 * on both stores: int8/bigint and numeric as strings, timestamptz as `Date`,
 * json/jsonb parsed, bytea as `Buffer`, arrays as arrays, NULL as `null`.
 */
export type Row = Record<string, unknown>;

/** What a statement returned. */
export interface QueryResult<R extends Row = Row> {
  /** The rows, in the order the statement produced them. */
  readonly rows: R[];
  /** Rows returned or affected; 0 for statements that report no count (DDL). */
  readonly rowCount: number;
}

/** Anything that runs parameterised SQL: the store itself or an open transaction. */
export interface Queryable {
  /**
   * Runs one statement with `$1…$n` parameters. Parameters are converted as
   * `pg` converts them: `Date` to a timestamp, `Buffer`/`Uint8Array` to bytea,
   * arrays to Postgres arrays, other objects to JSON, `null`/`undefined` to NULL.
   *
   * Without parameters the text goes over the simple query protocol, as `pg`
   * does, so it may hold several statements (a migration file); the result is
   * the last statement's.
   *
   * @throws {StoreQueryError} when Postgres rejects the statement; branch on its SQLSTATE `code`.
   * @throws {StoreClosedError} when the store was closed.
   *
   * @example
   * const { rows } = await store.query<{ slug: string }>("SELECT slug FROM zones WHERE id = $1", [id]);
   */
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** An open store: `openStore` hands it out migrated, `openPostgresStore` and `openPgliteStore` unmigrated. */
export interface Store extends Queryable {
  /** Which implementation is behind the interface. */
  readonly kind: "postgres" | "pglite";
  /**
   * Runs `fn` in one transaction on one connection: commits when it resolves,
   * rolls back and rethrows the very same error when it throws, so a failed
   * write leaves nothing behind.
   *
   * Inside `fn`, use `tx`, never the store: calling `store.query` or
   * `store.transaction` from inside `fn` while it runs throws a `TypeError`
   * on both stores, because on PGlite (one connection) it would wait for the
   * transaction that is waiting for it. `tx` must not be used after `fn`
   * settles (it throws a `TypeError`).
   *
   * Statements outside the transaction never run inside it: on Postgres they
   * use other connections; on PGlite they wait until the transaction ends.
   *
   * @throws {StoreQueryError} with code `25P02` when a statement failed inside
   * `fn`, `fn` swallowed the error and resolved: Postgres rolled back instead of committing.
   *
   * @example
   * const zoneId = await store.transaction(async (tx) => {
   *   const { rows } = await tx.query<{ id: string }>(
   *     "INSERT INTO zones (id, slug) VALUES (gen_random_uuid(), $1) RETURNING id", ["default"]);
   *   return rows[0]!.id;
   * });
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Refuses new statements, waits for running ones, then releases connections.
   * Idempotent: later calls return the first call's promise.
   */
  close(): Promise<void>;
}

/** The fields both drivers copy from a Postgres ErrorResponse. */
interface PostgresErrorFields {
  code: string;
  severity?: string;
  detail?: string;
  hint?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

/**
 * Postgres rejected a statement. The same class on both stores, carrying the
 * SQLSTATE `code` callers branch on (`23505` unique violation, `23503` foreign
 * key, `40001` serialization failure, …), never the driver's own error type.
 *
 * The driver's own error is deliberately not kept as `cause`: PGlite attaches
 * the statement's parameters to its errors, and they may hold secrets that
 * would then reach the logs. Everything worth branching on is copied here.
 *
 * @example
 * try {
 *   await store.query("INSERT INTO zones (id, slug) VALUES ($1, $2)", [id, slug]);
 * } catch (error) {
 *   if (error instanceof StoreQueryError && error.code === "23505") return alreadyExists(slug);
 *   throw error;
 * }
 */
export class StoreQueryError extends Error {
  override readonly name = "StoreQueryError";
  /** The five-character SQLSTATE, e.g. `23505`. */
  readonly code: string;
  /** Postgres's DETAIL line, e.g. `Key (slug)=(default) already exists.` */
  readonly detail: string | undefined;
  /** Postgres's HINT line. */
  readonly hint: string | undefined;
  /** The schema the error is about, where Postgres names one. */
  readonly schema: string | undefined;
  /** The table the error is about, where Postgres names one. */
  readonly table: string | undefined;
  /** The column the error is about, e.g. for a NOT NULL violation. */
  readonly column: string | undefined;
  /** The violated constraint, e.g. `zones_slug_key`: how callers tell two unique keys apart. */
  readonly constraint: string | undefined;

  constructor(message: string, fields: PostgresErrorFields, options?: ErrorOptions) {
    super(message, options);
    this.code = fields.code;
    this.detail = fields.detail;
    this.hint = fields.hint;
    this.schema = fields.schema;
    this.table = fields.table;
    this.column = fields.column;
    this.constraint = fields.constraint;
  }

  /**
   * Converts a Postgres error response from either driver into a
   * `StoreQueryError`; returns `undefined` for anything else (a network
   * failure, a bug), which callers rethrow as is.
   */
  static from(error: unknown): StoreQueryError | undefined {
    if (error instanceof StoreQueryError) return error;
    if (!(error instanceof Error)) return undefined;
    // Both pg and PGlite build their error from pg-protocol's ErrorResponse
    // parser; a five-character SQLSTATE plus a severity identifies it without
    // importing either driver's class here.
    const fields = error as Error & Partial<Record<keyof PostgresErrorFields, unknown>>;
    if (typeof fields.code !== "string" || !/^[0-9A-Z]{5}$/.test(fields.code)) return undefined;
    if (typeof fields.severity !== "string") return undefined;
    const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
    return new StoreQueryError(error.message, {
      code: fields.code,
      detail: text(fields.detail),
      hint: text(fields.hint),
      schema: text(fields.schema),
      table: text(fields.table),
      column: text(fields.column),
      constraint: text(fields.constraint),
    });
  }
}

/**
 * The store could not be opened: the database URL is malformed, the server is
 * unreachable or refused the login, or the embedded data directory is unusable.
 * The message names the target without its password.
 */
export class StoreConnectionError extends Error {
  override readonly name = "StoreConnectionError";
}

/** A statement or transaction was started on a store after `close()` was called. */
export class StoreClosedError extends Error {
  override readonly name = "StoreClosedError";
  constructor() {
    super("the store is closed");
  }
}
