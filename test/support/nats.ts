/**
 * Helpers for tests against the shared NATS server: every test file works in
 * its own namespace of stream and subject names, and deletes its streams
 * afterwards (JetStream keeps them on disk across server restarts). Tests that
 * must restart a server start a private one instead.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

/** The server tests use: `CARACAL_TEST_NATS_URL`, else the developer default. */
export const testNatsUrl = process.env.CARACAL_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** Prefixes for one bus under test, in the shape `openNatsBus` takes. */
export interface NatsTestPrefix {
  /** e.g. `T3f9c0a1b2c3d4e5f_1`; streams become `<streamPrefix>_REVOCATIONS`, `…_AUDIT`, `…_POLICY`. */
  readonly streamPrefix: string;
  /** e.g. `t-3f9c0a1b2c3d4e5f-1`; subjects become `<subjectPrefix>.<topic>.<zone>`. */
  readonly subjectPrefix: string;
}

/** A test file's share of the server: unique prefixes, and the cleanup that removes them. */
export interface NatsTestNamespace {
  /** Common start of every stream name this namespace hands out. */
  readonly root: string;
  /** A fresh prefix pair, unique on the server. */
  prefix(): NatsTestPrefix;
  /** Deletes every stream whose name starts with `root`; returns their names. */
  cleanup(): Promise<string[]>;
}

/**
 * Opens a namespace for one test file. Uniqueness comes from
 * `crypto.randomUUID`, so parallel files and repeated runs never share a stream.
 *
 * @example
 * const ns = natsTestNamespace();
 * afterAll(() => ns.cleanup());
 * const bus = await openNatsBus({ url: testNatsUrl, ...ns.prefix() });
 */
export function natsTestNamespace(): NatsTestNamespace {
  const id = randomUUID().replaceAll("-", "").slice(0, 16);
  const root = `T${id}`;
  let n = 0;
  return {
    root,
    prefix() {
      n++;
      return { streamPrefix: `${root}_${n}`, subjectPrefix: `t-${id}-${n}` };
    },
    cleanup: () => deleteTestStreams(root),
  };
}

/** Deletes every stream whose name starts with `prefix`; returns their names. */
export async function deleteTestStreams(prefix: string): Promise<string[]> {
  if (prefix.length < 8) throw new TypeError(`refusing to delete streams by the short prefix ${JSON.stringify(prefix)}`);
  const names = await listTestStreams(prefix);
  if (names.length === 0) return names;
  const nc = await connect({ servers: testNatsUrl, name: "caracal-test-cleanup" });
  try {
    const jsm = await jetstreamManager(nc);
    for (const name of names) await jsm.streams.delete(name);
  } finally {
    await nc.close();
  }
  return names;
}

/** Names of the streams on the test server that start with `prefix`. */
export async function listTestStreams(prefix: string): Promise<string[]> {
  const nc = await connect({ servers: testNatsUrl, name: "caracal-test-cleanup" });
  try {
    const jsm = await jetstreamManager(nc);
    const names: string[] = [];
    for await (const name of jsm.streams.names()) if (name.startsWith(prefix)) names.push(name);
    return names;
  } finally {
    await nc.close();
  }
}

/** A private NATS server a test can stop and start, e.g. to prove that clients recover. */
export interface PrivateNatsServer {
  /** `nats://127.0.0.1:<port>`; stays the same across restarts. */
  readonly url: string;
  /** Stops the server and starts it again on the same port and JetStream store. */
  restart(): Promise<void>;
  /** Stops the server and removes its store. */
  stop(): Promise<void>;
}

/** The nats-server binary: `CARACAL_TEST_NATS_SERVER`, else where Debian installs it. */
export const natsServerBinary = process.env.CARACAL_TEST_NATS_SERVER ?? "/usr/sbin/nats-server";

/**
 * Starts a JetStream-enabled nats-server of our own on a free port with a
 * temporary store, so a test can restart it without disturbing the shared one.
 */
export async function startPrivateNatsServer(): Promise<PrivateNatsServer> {
  const dir = await mkdtemp(join(tmpdir(), "caracal-nats-"));
  const port = await freePort();
  let child = await launch(port, dir);
  return {
    url: `nats://127.0.0.1:${port}`,
    async restart() {
      await terminate(child);
      child = await launch(port, dir);
    },
    async stop() {
      await terminate(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts the server and resolves once it logs that it is ready for clients. */
export function launch(port: number, dir: string): Promise<ChildProcess> {
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

/** Stops a server started by {@link launch} and resolves once it exited. */
export function terminate(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
