import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, SERVICE_NAMES } from "./config.js";

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("defaults to the embedded store and bus on 127.0.0.1:7070 with every service", () => {
    const config = loadConfig({});
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 7070 });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.natsUrl).toBeUndefined();
    expect(config.dataDir).toBe(".caracal");
    expect(config.services).toEqual(SERVICE_NAMES);
  });

  it("reads the environment and lets flags win over it", () => {
    const config = loadConfig(
      {
        CARACAL_LISTEN: "0.0.0.0:9000",
        CARACAL_DATABASE_URL: "postgres://caracal@db:5432/caracal",
        CARACAL_KEK: Buffer.alloc(32, 7).toString("base64"),
        CARACAL_AUDIT_KEY: Buffer.alloc(32, 9).toString("base64"),
        CARACAL_NATS_URL: "nats://a:4222,nats://b:4222",
        CARACAL_DATA_DIR: "/var/lib/caracal",
        CARACAL_LOG_LEVEL: "debug",
      },
      { listen: "[::1]:7071", only: "sts, policy" },
    );
    expect(config.listen).toEqual({ host: "::1", port: 7071 });
    expect(config.databaseUrl).toBe("postgres://caracal@db:5432/caracal");
    expect(config.natsUrl).toBe("nats://a:4222,nats://b:4222");
    expect(config.dataDir).toBe("/var/lib/caracal");
    expect(config.logLevel).toBe("debug");
    expect(config.services).toEqual(["sts", "policy"]);
    expect(config.kek).toBeDefined();
    expect(config.auditKey).toEqual(Buffer.alloc(32, 9));
  });

  it.each([
    [{ CARACAL_LISTEN: "nonsense" }, {}, "CARACAL_LISTEN", "expected host:port"],
    [{ CARACAL_LISTEN: "127.0.0.1:70000" }, {}, "CARACAL_LISTEN", "expected host:port"],
    [{ CARACAL_LISTEN: "[not-ipv6]:7070" }, {}, "CARACAL_LISTEN", "not an IPv6 address"],
    [{}, { listen: "host name:1" }, "--listen", "not a host name"],
    [{ CARACAL_DATABASE_URL: "mysql://db/x" }, {}, "CARACAL_DATABASE_URL", "expected a postgres: or postgresql: URL"],
    [{ CARACAL_DATABASE_URL: "postgres://db/x" }, {}, "CARACAL_KEK", "required with CARACAL_DATABASE_URL"],
    [{ CARACAL_KEK: "c2hvcnQ=" }, {}, "CARACAL_KEK", "expected 32 bytes in base64"],
    [{ CARACAL_DATABASE_URL: "postgres://db/x", CARACAL_KEK: Buffer.alloc(32).toString("base64") }, {}, "CARACAL_AUDIT_KEY", "required with CARACAL_DATABASE_URL"],
    [{ CARACAL_AUDIT_KEY: "c2hvcnQ=" }, {}, "CARACAL_AUDIT_KEY", "expected 32 bytes in base64"],
    [{ CARACAL_APPROVAL_TTL: "10" }, {}, "CARACAL_APPROVAL_TTL", "expected seconds from 60 to 86400"],
    [{ CARACAL_KEK: `${Buffer.alloc(32).toString("base64")}!!` }, {}, "CARACAL_KEK", "expected 32 bytes in base64"],
    [{ CARACAL_DATABASE_URL: "not a url" }, {}, "CARACAL_DATABASE_URL", "not a URL"],
    [{ CARACAL_NATS_URL: "nats://ok:4222,http://bad" }, {}, "CARACAL_NATS_URL", "expected a nats: or tls: URL"],
    [{ CARACAL_LOG_LEVEL: "loud" }, {}, "CARACAL_LOG_LEVEL", "expected one of"],
    [{ CARACAL_DATA_DIR: " " }, {}, "CARACAL_DATA_DIR", "must not be empty"],
    [{}, { only: "sts,billing" }, "--only", 'unknown service "billing"'],
    [{}, { only: "," }, "--only", "name at least one"],
  ])("refuses %j %j naming %s", (env, flags, setting, problem) => {
    const error = configError(() => loadConfig(env, flags));
    expect(error.setting).toBe(setting);
    expect(error.message).toContain(problem);
    expect(error.message.startsWith(`${setting}: `)).toBe(true);
    expect(error.message).not.toContain("\n");
  });

  it("treats an empty database or NATS URL as unset", () => {
    const config = loadConfig({ CARACAL_DATABASE_URL: "", CARACAL_NATS_URL: "" });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.natsUrl).toBeUndefined();
  });

  it("accepts port 0, so tests can ask for a free port", () => {
    expect(loadConfig({ CARACAL_LISTEN: "localhost:0" }).listen).toEqual({ host: "localhost", port: 0 });
  });
});
