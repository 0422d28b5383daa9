import { expect, vi } from "vitest";
import { main } from "../../services/main.js";

/** What one `caracal` command did. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A command still running, with what it has written so far. */
export interface RunningCli {
  readonly stdout: () => string;
  readonly finished: Promise<CliRun>;
}

/**
 * Runs `caracal <args>` in-process through `main`, capturing what it writes
 * to stdout and stderr (a write's callback is called, as a real stream
 * does). When `secret` is given, the test fails if any output holds it. One
 * command at a time: the capture replaces `process.stdout.write`.
 */
export function startCli(args: readonly string[], options: { secret?: string } = {}): RunningCli {
  const out: string[] = [];
  const err: string[] = [];
  const capture = (stream: NodeJS.WriteStream, into: string[]) =>
    vi.spyOn(stream, "write").mockImplementation(((chunk: string | Uint8Array, ...rest: unknown[]) => {
      into.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
      const callback = rest.find((arg) => typeof arg === "function") as (() => void) | undefined;
      if (callback) process.nextTick(callback);
      return true;
    }) as typeof stream.write);
  const stdout = capture(process.stdout, out);
  const stderr = capture(process.stderr, err);
  const finished = main([...args])
    .finally(() => {
      stdout.mockRestore();
      stderr.mockRestore();
    })
    .then((code) => {
      const run = { code, stdout: out.join(""), stderr: err.join("") };
      if (options.secret) expect(run.stdout + run.stderr).not.toContain(options.secret);
      return run;
    });
  return { stdout: () => out.join(""), finished };
}

/** {@link startCli}, awaited. */
export function runCli(args: readonly string[], options: { secret?: string } = {}): Promise<CliRun> {
  return startCli(args, options).finished;
}
