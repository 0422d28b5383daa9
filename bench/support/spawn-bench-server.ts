import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

/** A benchmark server running in a child process. */
export interface BenchServer {
  readonly address: string;
  readonly profile: { target: string; zone: string; client_id: string; client_secret: string };
  stop(): Promise<void>;
}

/** Starts `bench/support/bench-server.ts` in its own Node process and waits until it is ready. */
export async function spawnBenchServer(): Promise<BenchServer> {
  const script = fileURLToPath(new URL("./bench-server.ts", import.meta.url));
  // BENCH_SERVER_NODE_OPTIONS passes flags such as --cpu-prof to the server process only.
  const extra = process.env.BENCH_SERVER_NODE_OPTIONS?.split(" ").filter(Boolean) ?? [];
  const child: ChildProcess = spawn(process.execPath, [...extra, "--import", "tsx", script], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  for await (const line of lines) {
    const ready = JSON.parse(line) as Omit<BenchServer, "stop">;
    return {
      ...ready,
      stop: () =>
        new Promise<void>((resolve) => {
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
        }),
    };
  }
  throw new Error("bench server exited before it was ready");
}
