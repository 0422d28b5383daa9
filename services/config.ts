import { isIP } from "node:net";
import { parseKeyBytes, parseKeyEncryptionKey, type KeyEncryptionKey } from "./keys/key-encryption-key.js";

/** The services `caracal serve` can run; `--only` picks a subset. */
export const SERVICE_NAMES = ["sts", "policy", "audit", "revocation", "admin", "probe"] as const;

/** One of {@link SERVICE_NAMES}. */
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Log levels, as pino names them. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** A validated, typed configuration for `caracal serve`. */
export interface Config {
  /** Where to listen: one address for gRPC, gRPC-Web, Connect and plain HTTP. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Postgres URL; unset means the embedded PGlite store in {@link Config.dataDir}. */
  readonly databaseUrl: string | undefined;
  /** NATS URL(s); unset means the in-process bus. */
  readonly natsUrl: string | undefined;
  /** Where the embedded default keeps its files. */
  readonly dataDir: string;
  /**
   * The key-encryption key from `CARACAL_KEK`. Unset on the embedded default,
   * which keeps one in `<dataDir>/kek`; required with Postgres.
   */
  readonly kek: KeyEncryptionKey | undefined;
  /**
   * The audit key from `CARACAL_AUDIT_KEY`: the ledger's row HMACs are made
   * with it. Unset on the embedded default, which keeps one in
   * `<dataDir>/audit-key`; required with Postgres.
   */
  readonly auditKey: Buffer | undefined;
  /** Minimum level logged. */
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** The services to run. */
  readonly services: readonly ServiceName[];
  /** How long a shutdown may drain in-flight calls before it cuts them. */
  readonly shutdownGraceMs: number;
  /**
   * Names on a shared NATS deployment (`CARACAL_NATS_STREAM_PREFIX`,
   * `CARACAL_NATS_SUBJECT_PREFIX`; default `CARACAL` and `caracal`), so two
   * Caracal installations can share one NATS without sharing streams.
   */
  readonly natsNames: { readonly streamPrefix?: string; readonly subjectPrefix?: string };
  /** How long a step-up challenge stays open (`CARACAL_APPROVAL_TTL`, seconds; default 1800). */
  readonly approvalTtlSeconds: number;
}

/** Values given as command-line flags; each wins over its environment variable. */
export interface ConfigFlags {
  readonly listen?: string;
  readonly only?: string;
  readonly dataDir?: string;
  readonly logLevel?: string;
}

/**
 * A setting that does not validate. Its message is one line naming the setting,
 * fit to print as it is before exiting with code 2.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The environment variable or flag at fault. */
  readonly setting: string;

  constructor(setting: string, problem: string) {
    super(`${setting}: ${problem}`);
    this.setting = setting;
  }
}

/** The part of {@link Config} that says which bus to use: what a process needs to reach Caracal's streams. */
export type BusConfig = Pick<Config, "natsUrl" | "natsNames">;

/**
 * Reads and validates the bus settings alone (`CARACAL_NATS_URL` and the
 * name prefixes), for commands that read Caracal's streams without serving.
 *
 * @throws {ConfigError} naming the first setting that is wrong.
 */
export function loadBusConfig(env: NodeJS.ProcessEnv): BusConfig {
  return {
    natsUrl: parseNatsUrls(env.CARACAL_NATS_URL),
    natsNames: {
      ...(env.CARACAL_NATS_STREAM_PREFIX ? { streamPrefix: matchingSetting(env.CARACAL_NATS_STREAM_PREFIX, "CARACAL_NATS_STREAM_PREFIX", /^[A-Za-z0-9_-]{1,64}$/) } : {}),
      ...(env.CARACAL_NATS_SUBJECT_PREFIX
        ? { subjectPrefix: matchingSetting(env.CARACAL_NATS_SUBJECT_PREFIX, "CARACAL_NATS_SUBJECT_PREFIX", /^[A-Za-z0-9_-]{1,64}$/) }
        : {}),
    },
  };
}

/**
 * Reads and validates the configuration from the environment and flags.
 *
 * @throws {ConfigError} naming the first setting that is wrong.
 * @example
 * const config = loadConfig(process.env, { only: "sts,policy" });
 */
export function loadConfig(env: NodeJS.ProcessEnv, flags: ConfigFlags = {}): Config {
  const databaseUrl = parseUrl(env.CARACAL_DATABASE_URL, "CARACAL_DATABASE_URL", ["postgres:", "postgresql:"]);
  return {
    listen: parseListen(flags.listen ?? env.CARACAL_LISTEN ?? "127.0.0.1:7070", flags.listen ? "--listen" : "CARACAL_LISTEN"),
    databaseUrl,
    kek: parseKek(env.CARACAL_KEK, databaseUrl !== undefined),
    auditKey: parseAuditKey(env.CARACAL_AUDIT_KEY, databaseUrl !== undefined),
    dataDir: nonEmpty(flags.dataDir ?? env.CARACAL_DATA_DIR ?? ".caracal", flags.dataDir ? "--data-dir" : "CARACAL_DATA_DIR"),
    logLevel: parseLogLevel(flags.logLevel ?? env.CARACAL_LOG_LEVEL ?? "info", flags.logLevel ? "--log-level" : "CARACAL_LOG_LEVEL"),
    services: parseServices(flags.only),
    shutdownGraceMs: 4_000,
    approvalTtlSeconds: parseApprovalTtl(env.CARACAL_APPROVAL_TTL),
    ...loadBusConfig(env),
  };
}

function parseListen(value: string, setting: string): Config["listen"] {
  // `[::1]:7070` for IPv6, `host:port` otherwise.
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || port > 65_535) {
    throw new ConfigError(setting, `expected host:port (e.g. 127.0.0.1:7070), got ${JSON.stringify(value)}`);
  }
  if (match[1] !== undefined && isIP(host) !== 6) {
    throw new ConfigError(setting, `${JSON.stringify(host)} in brackets is not an IPv6 address`);
  }
  if (!/^[A-Za-z0-9.-]+$/.test(host) && isIP(host) === 0) {
    throw new ConfigError(setting, `${JSON.stringify(host)} is not a host name or IP address`);
  }
  return { host, port };
}

function parseUrl(value: string | undefined, setting: string, protocols: readonly string[]): string | undefined {
  if (value === undefined || value === "") return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(setting, `not a URL (expected ${protocols[0]}//host:port/…)`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(setting, `expected a ${protocols.join(" or ")} URL, got ${url.protocol}`);
  }
  if (url.hostname === "" && !url.searchParams.has("host")) {
    throw new ConfigError(setting, "the URL names no host");
  }
  return value;
}

function parseNatsUrls(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  // NATS clients take a comma-separated list of cluster seeds.
  for (const part of value.split(",")) {
    parseUrl(part.trim(), "CARACAL_NATS_URL", ["nats:", "tls:"]);
  }
  return value;
}

function parseKek(value: string | undefined, required: boolean): KeyEncryptionKey | undefined {
  if (value === undefined || value === "") {
    // With a shared database the key must be the same on every replica, so it
    // cannot be generated locally; the embedded default generates its own.
    if (required) throw new ConfigError("CARACAL_KEK", "required with CARACAL_DATABASE_URL: 32 random bytes in base64 (openssl rand -base64 32)");
    return undefined;
  }
  const kek = parseKeyEncryptionKey(value);
  if (!kek) throw new ConfigError("CARACAL_KEK", "expected 32 bytes in base64 (openssl rand -base64 32)");
  return kek;
}

function matchingSetting(value: string, setting: string, pattern: RegExp): string {
  if (!pattern.test(value)) throw new ConfigError(setting, `expected ${pattern.source}`);
  return value;
}

function parseApprovalTtl(value: string | undefined): number {
  if (value === undefined || value === "") return 1_800;
  const seconds = /^\d{1,6}$/.test(value) ? Number(value) : 0;
  if (seconds < 60 || seconds > 86_400) throw new ConfigError("CARACAL_APPROVAL_TTL", "expected seconds from 60 to 86400");
  return seconds;
}

function parseAuditKey(value: string | undefined, required: boolean): Buffer | undefined {
  if (value === undefined || value === "") {
    // Every ledger replica must extend the chain with the same key.
    if (required) throw new ConfigError("CARACAL_AUDIT_KEY", "required with CARACAL_DATABASE_URL: 32 random bytes in base64 (openssl rand -base64 32)");
    return undefined;
  }
  const key = parseKeyBytes(value);
  if (!key) throw new ConfigError("CARACAL_AUDIT_KEY", "expected 32 bytes in base64 (openssl rand -base64 32)");
  return key;
}

function nonEmpty(value: string, setting: string): string {
  if (value.trim() === "") throw new ConfigError(setting, "must not be empty");
  return value;
}

function parseLogLevel(value: string, setting: string): Config["logLevel"] {
  const level = LOG_LEVELS.find((candidate) => candidate === value);
  if (!level) throw new ConfigError(setting, `expected one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(value)}`);
  return level;
}

function parseServices(value: string | undefined): readonly ServiceName[] {
  if (value === undefined) return SERVICE_NAMES;
  const names = value.split(",").map((name) => name.trim()).filter((name) => name !== "");
  if (names.length === 0) throw new ConfigError("--only", `name at least one of ${SERVICE_NAMES.join(", ")}`);
  const unique = [...new Set(names)];
  return unique.map((name) => {
    const known = SERVICE_NAMES.find((candidate) => candidate === name);
    if (!known) throw new ConfigError("--only", `unknown service ${JSON.stringify(name)}; expected ${SERVICE_NAMES.join(", ")}`);
    return known;
  });
}
