import { pino, type Logger } from "pino";
import type { Bus } from "./bus/bus.js";
import { openBus } from "./bus/open-bus.js";
import type { Config } from "./config.js";
import { startCaracalServer, type CaracalServer } from "./server/caracal-server.js";
import { bootstrap } from "./bootstrap.js";
import { loadOrCreateKeyBytes, loadOrCreateKeyFile } from "./keys/key-encryption-key.js";
import { openStore } from "./store/open-store.js";
import type { Store } from "./store/store.js";

/** A running `caracal serve`: the server plus the store and bus it owns. */
export interface RunningCaracal {
  readonly server: CaracalServer;
  /** Drains the server, then closes the bus and the store. Idempotent. */
  stop(): Promise<void>;
}

/** Creates the JSON logger every part of `caracal serve` writes through. */
export function createLogger(level: Config["logLevel"]): Logger {
  return pino({ level, base: { service: "caracal" }, timestamp: pino.stdTimeFunctions.isoTime });
}

/**
 * Opens the store (Postgres or embedded PGlite, migrated) and the bus (NATS or
 * in-process), then starts the server. Whatever was opened is closed again if
 * a later step fails, so a failed start leaves nothing running.
 *
 * @example
 * const caracal = await serve(loadConfig(process.env), createLogger("info"));
 * process.once("SIGTERM", () => caracal.stop());
 */
export async function serve(config: Config, log: Logger): Promise<RunningCaracal> {
  const [opened, connected] = await Promise.allSettled([
    openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log }),
    openBus({ natsUrl: config.natsUrl, ...config.natsNames, onError: (error, failure) => log.error({ err: error, ...failure }, "bus failure") }),
  ]);
  if (opened.status === "rejected" || connected.status === "rejected") {
    await closeAll(settledValue(connected), settledValue(opened));
    throw opened.status === "rejected" ? opened.reason : (connected as PromiseRejectedResult).reason;
  }
  const [store, bus] = [opened.value, connected.value];
  log.info({ store: store.kind, bus: bus.kind }, "store and bus ready");
  let server: CaracalServer | undefined;
  try {
    const kek = config.kek ?? (await loadOrCreateKeyFile(config.dataDir));
    const auditKey = config.auditKey ?? (await loadOrCreateKeyBytes(config.dataDir, "audit-key"));
    server = await startCaracalServer({ config, store, bus, kek, auditKey, log });
    const target = `http://${formatHost(server.address.host)}:${server.address.port}`;
    await bootstrap(store, kek, { dataDir: config.dataDir, target, now: Date.now, log });
    // Announced only now, so a CLI started on this line finds the admin profile.
    log.info({ address: `${server.address.host}:${server.address.port}`, services: config.services }, "listening");
  } catch (error) {
    await server?.close();
    await closeAll(bus, store);
    throw error;
  }
  const running = server;
  let stopping: Promise<void> | undefined;
  return {
    server: running,
    stop() {
      stopping ??= running.close().then(() => closeAll(bus, store));
      return stopping;
    },
  };
}

function formatHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

function settledValue<T>(result: PromiseSettledResult<T>): T | undefined {
  return result.status === "fulfilled" ? result.value : undefined;
}

async function closeAll(bus: Bus | undefined, store: Store | undefined): Promise<void> {
  await Promise.allSettled([bus?.close(), store?.close()]);
}
