import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const caracalBin = fileURLToPath(new URL("../bin/caracal.js", import.meta.url));

/** Runs `caracal` with a clean Caracal environment, as a new user's shell would. */
function runCaracal(args: string[], env: Record<string, string> = {}) {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("CARACAL_")));
  return spawn(process.execPath, [caracalBin, ...args], { env: { ...inherited, ...env }, stdio: ["ignore", "pipe", "pipe"] });
}

function exited(child: ReturnType<typeof spawn>): Promise<{ code: number | null; stderr: string }> {
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stderr })));
}

describe("the caracal command", () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "caracal-cli-"));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it.each([
    [{ CARACAL_LISTEN: "nonsense" }, [], "caracal: CARACAL_LISTEN: expected host:port"],
    [{ CARACAL_DATABASE_URL: "mysql://x/y" }, [], "caracal: CARACAL_DATABASE_URL: expected a postgres: or postgresql: URL"],
    [{}, ["--only", "sts,nope"], 'caracal: --only: unknown service "nope"'],
    [{}, ["--log-level", "loud"], "caracal: option '--log-level <level>' argument 'loud' is invalid"],
    [{}, ["--no-such-flag"], "caracal: unknown option '--no-such-flag'"],
  ])("exits 2 with one line for bad configuration %j %j", async (env, flags, line) => {
    const { code, stderr } = await exited(runCaracal(["serve", ...flags], env));
    expect(code).toBe(2);
    expect(stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(stderr).toContain(line);
  });

  it("serves on the embedded default, then drains and exits 0 on SIGTERM within 5 s", async () => {
    const child = runCaracal(["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir]);
    const done = exited(child);
    const lines = createInterface({ input: child.stdout! });
    let address: string | undefined;
    for await (const line of lines) {
      const entry = JSON.parse(line) as { msg: string; address?: string };
      if (entry.msg === "listening") {
        address = entry.address;
        break;
      }
    }
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await fetch(`http://${address}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(await res.json()).toEqual({ status: "SERVING" });

    const stopping = performance.now();
    child.kill("SIGTERM");
    const { code } = await done;
    expect(code).toBe(0);
    expect(performance.now() - stopping).toBeLessThan(5_000);
  });
});
