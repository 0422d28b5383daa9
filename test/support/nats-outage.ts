/**
 * A private nats-server a test can take down and bring back at will, for
 * outage tests: `restart()` of `startPrivateNatsServer` in `nats.ts` comes
 * straight back up, which leaves no time to observe what clients do while the
 * server is away. Spawning is repeated here rather than exported from
 * `nats.ts`, which other suites rely on as it is.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { natsServerBinary } from "./nats.js";

/** A private JetStream server with a separate down and up. */
export interface InterruptibleNatsServer {
  /** `nats://127.0.0.1:<port>`; the same across outages. */
  readonly url: string;
  /** Whether the server process is running. */
  readonly running: boolean;
  /**
   * Kills the server (SIGKILL by default: a crash, not a clean shutdown) and
   * resolves once it has exited. The JetStream store stays for {@link start}.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and store; resolves once it is ready for clients. */
  start(): Promise<void>;
  /** Kills the server if it runs and removes its store. Idempotent. */
  dispose(): Promise<void>;
}

/**
 * Starts a JetStream-enabled nats-server on a free port with a temporary
 * store, which {@link InterruptibleNatsServer.kill} leaves in place.
 *
 * @example
 * const server = await startInterruptibleNatsServer();
 * await server.kill();
 * // …clients notice the outage…
 * await server.start();
 */
export async function startInterruptibleNatsServer(): Promise<InterruptibleNatsServer> {
  const dir = await mkdtemp(join(tmpdir(), "caracal-nats-outage-"));
  const port = await freePort();
  let child: ChildProcess | undefined = await launch(port, dir);
  let disposed = false;
  return {
    url: `nats://127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (child === undefined) return;
      await terminate(child, signal);
      child = undefined;
    },
    async start() {
      if (disposed) throw new Error("the server was disposed");
      if (child !== undefined) return;
      child = await launch(port, dir);
    },
    async dispose() {
      disposed = true;
      if (child !== undefined) await terminate(child, "SIGKILL");
      child = undefined;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts the server and resolves once it logs that it is ready for clients. */
function launch(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(natsServerBinary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => fail(new Error(`nats-server not ready after 10 s:\n${log}`)), 10_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(err);
    };
    child.once("error", fail);
    child.once("exit", (code) => fail(new Error(`nats-server exited with ${code}:\n${log}`)));
    child.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes("Server is ready")) {
        clearTimeout(timer);
        child.removeAllListeners("exit");
        child.removeAllListeners("error");
        child.stderr!.removeAllListeners("data");
        child.stderr!.resume();
        resolve(child);
      }
    });
  });
}

function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
