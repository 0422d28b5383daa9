import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { natsTestNamespace, testNatsUrl } from "./support/nats.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";

const caracalBin = fileURLToPath(new URL("../bin/caracal.js", import.meta.url));

/** The environment a user's shell would give `caracal`, without this process's CARACAL_ settings. */
function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("CARACAL_")));
  return { ...inherited, ...env };
}

/** Starts `caracal serve` and resolves once it logs "listening". */
async function serve(env: Record<string, string>): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [caracalBin, "serve", "--listen", "127.0.0.1:0"], { env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  for await (const line of createInterface({ input: child.stdout! })) {
    const entry = JSON.parse(line) as { msg: string; address?: string };
    if (entry.msg === "listening") return { child, address: entry.address! };
  }
  throw new Error(`caracal serve exited before listening: ${stderr}`);
}

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [caracalBin, ...args], { env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr })));
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

describe("caracal validate-rollout", () => {
  const nats = natsTestNamespace();
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await nats.cleanup();
  });

  async function deployment(kind: "embedded" | "postgres+nats"): Promise<Record<string, string>> {
    const dataDir = await mkdtemp(join(tmpdir(), "caracal-rollout-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const env: Record<string, string> = { CARACAL_DATA_DIR: dataDir };
    if (kind === "postgres+nats") {
      const database: TestDatabase = await createTestDatabase();
      cleanups.push(() => database.drop());
      const prefix = nats.prefix();
      Object.assign(env, {
        CARACAL_DATABASE_URL: database.url,
        CARACAL_NATS_URL: testNatsUrl,
        CARACAL_NATS_STREAM_PREFIX: prefix.streamPrefix,
        CARACAL_NATS_SUBJECT_PREFIX: prefix.subjectPrefix,
        CARACAL_KEK: randomBytes(32).toString("base64"),
        CARACAL_AUDIT_KEY: randomBytes(32).toString("base64"),
      });
    }
    const { child } = await serve(env);
    cleanups.push(() => stop(child));
    return env;
  }

  it.each(["embedded", "postgres+nats"] as const)(
    "passes all four checks against caracal serve on %s, each audited and explained, and leaves no zone behind",
    async (kind) => {
      const env = await deployment(kind);
      const result = await run(["validate-rollout", "--json"], env);
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      const report = JSON.parse(result.stdout) as { zone: string; results: { check: string; pass: boolean; audit: string; explain: string }[] };
      expect(report.results.map((r) => [r.check, r.pass])).toEqual([
        ["successful request", true],
        ["denied request", true],
        ["revoked-session request", true],
        ["step-up request", true],
      ]);
      expect(report.results.map((r) => r.explain.split(":")[0])).toEqual(["allowed", "denied", "denied", "allowed"]);
      expect(report.results[3]!.audit).toBe("3 records: issuance, approval and edge decision");

      const zones = await run(["zone", "list", "--json"], env);
      expect(zones.code).toBe(0);
      expect(zones.stdout).not.toContain(report.zone);

      // The table, for people.
      const table = await run(["validate-rollout"], env);
      expect(table.code).toBe(0);
      expect(table.stdout.split("\n").filter((line) => line.trimEnd().endsWith("pass"))).toHaveLength(4);
    },
    120_000,
  );
});
