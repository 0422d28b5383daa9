import { AsyncLocalStorage } from "node:async_hooks";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { PGlite, type Results, type Transaction } from "@electric-sql/pglite";
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

// pg's own parameter conversion (Date, Buffer, arrays, objects → wire value).
// Not re-exported from pg's entry point, but reachable through its "./lib/*"
// export; reusing it keeps parameters byte-for-byte what the Postgres store sends.
const { prepareValue } = createRequire(import.meta.url)("pg/lib/utils.js") as {
  prepareValue(value: unknown): string | Buffer | null;
};

/**
 * Opens a store on PGlite: Postgres compiled to WebAssembly, running inside
 * this process. The store is not migrated: `openStore` does that.
 *
 * Results are made identical to the Postgres store's: every column is parsed
 * by `pg`'s own type parsers (PGlite's defaults differ: int8 as number or
 * bigint, bytea as Uint8Array, interval as text), and every parameter is
 * converted by `pg`'s own `prepareValue`.
 *
 * PGlite has one connection. Its `transaction` holds a lock that its `query`
 * also takes, so a statement issued outside a running transaction waits until
 * the transaction has committed or rolled back and never runs inside it. The
 * flip side is that awaiting the store itself from inside a transaction would
 * never return; the store turns that into a `TypeError` (see `Store.transaction`).
 * Statements run on the calling thread: a long query blocks the event loop.
 *
 * Only one process may open a data directory at a time; PGlite does not lock it.
 *
 * @param dataDir Where the database lives, created with mode 0700 if missing;
 * `undefined` keeps it in memory (tests).
 * @throws {StoreConnectionError} when the directory cannot be created or PGlite
 * cannot start on it (for instance, data written by an incompatible version).
 *
 * @example
 * const store = await openPgliteStore(".caracal/pgdata");
 */
export async function openPgliteStore(dataDir: string | undefined): Promise<Store> {
  const where = dataDir === undefined ? "memory" : resolve(dataDir);
  let db: PGlite;
  try {
    if (dataDir !== undefined) await mkdir(where, { recursive: true, mode: 0o700 });
    db = await PGlite.create(dataDir === undefined ? {} : { dataDir: where });
  } catch (error) {
    throw new StoreConnectionError(
      `cannot open the embedded database in ${where}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  // Replaced after create, not passed as options: PGlite merges options into
  // its own tables and then adds array types on start-up, so some oids would
  // keep PGlite's parsers. A proxy answers for every oid, known or not.
  db.parsers = new Proxy({} as PGlite["parsers"], {
    get: (_, oid) => (typeof oid === "string" && /^\d+$/.test(oid) ? parseAsPg : undefined),
    set: () => true,
  });
  // Parameters arrive already converted by pg's prepareValue, so PGlite's own
  // per-type serializers (which have rules of their own: Uint8Array only for
  // bytea, JSON.stringify for anything sent to json) must not run on top.
  // Everything passes through; a Buffer goes out in binary format, as pg sends it.
  db.serializers = new Proxy({} as PGlite["serializers"], {
    get: (_, oid) => (typeof oid === "string" && /^\d+$/.test(oid) ? passThrough : undefined),
    set: () => true,
  });
  return new PgliteStore(db);
}

/** The store behind {@link openPgliteStore}. */
class PgliteStore implements Store {
  readonly kind = "pglite";
  readonly #db: PGlite;
  #closing: Promise<void> | undefined;
  readonly #insideTransaction = new AsyncLocalStorage<{ open: boolean }>();

  constructor(db: PGlite) {
    this.#db = db;
  }

  async query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#checkUsable("query");
    return run<R>(this.#db, sql, params);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    this.#checkUsable("transaction");
    const scope = { open: true };
    let thrownByFn: { error: unknown } | undefined;
    try {
      // PGlite's transaction runs BEGIN, the callback, then COMMIT, or ROLLBACK
      // and rethrows the callback's own error; it throws when COMMIT turned into
      // a rollback (a failed statement was swallowed).
      return await this.#db.transaction(async (pgliteTx) => {
        const tx: Queryable = {
          query: <R extends Row = Row>(sql: string, params?: readonly unknown[]) => {
            if (!scope.open) return Promise.reject(finishedTransactionError());
            return run<R>(pgliteTx, sql, params);
          },
        };
        try {
          return await this.#insideTransaction.run(scope, () => fn(tx));
        } catch (error) {
          thrownByFn = { error };
          throw error;
        } finally {
          scope.open = false;
        }
      });
    } catch (error) {
      // What fn threw goes back untouched; only PGlite's own BEGIN/COMMIT errors
      // (a rollback instead of a commit) still need converting.
      if (thrownByFn && thrownByFn.error === error) throw error;
      throw StoreQueryError.from(error) ?? error;
    }
  }

  close(): Promise<void> {
    // PGlite's close takes both of its locks first, so running statements and
    // transactions finish before the database shuts down.
    this.#closing ??= this.#db.close();
    return this.#closing;
  }

  #checkUsable(what: "query" | "transaction"): void {
    if (this.#closing) throw new StoreClosedError();
    if (this.#insideTransaction.getStore()?.open) {
      throw new TypeError(
        `store.${what} was called inside store.transaction; use the transaction's tx.query instead ` +
          "(PGlite has one connection: the call would wait for the transaction that is waiting for it)",
      );
    }
  }
}

/** Runs SQL on PGlite or a PGlite transaction, with pg's protocol choice and result shape. */
async function run<R extends Row>(
  on: PGlite | Transaction,
  sql: string,
  params?: readonly unknown[],
): Promise<QueryResult<R>> {
  let result: Results | undefined;
  try {
    if (params === undefined || params.length === 0) {
      // pg sends a statement without parameters over the simple protocol, which
      // allows several statements; PGlite's `exec` is that protocol.
      const results = await on.exec(sql);
      result = results[results.length - 1];
    } else {
      result = await on.query(sql, params.map((value) => prepareValue(value)));
    }
  } catch (error) {
    throw StoreQueryError.from(error) ?? error;
  }
  return { rows: (result?.rows ?? []) as R[], rowCount: result?.rowCount ?? 0 };
}

/** PGlite calls a parser with the column's type oid; pg's registry then decides, as in the Postgres store. */
function parseAsPg(text: string, oid?: number): unknown {
  // Looked up per value, so a parser registered later with pg.types.setTypeParser
  // applies to both stores alike.
  return oid === undefined ? text : pg.types.getTypeParser(oid, "text")(text);
}

function passThrough(value: unknown): string {
  // Typed as PGlite's Serializer; a Buffer is passed on deliberately (binary format).
  return value as string;
}

function finishedTransactionError(): TypeError {
  return new TypeError("tx.query was called after its transaction finished");
}
