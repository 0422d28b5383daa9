/**
 * A private nats-server a test can take down and bring back at will, for
 * outage tests: `restart()` of `startPrivateNatsServer` in `nats.ts` comes
 * straight back up, which leaves no time to observe what clients do while the
 * server is away. It spawns servers the way `nats.ts` does.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, launch, terminate } from "./nats.js";

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
