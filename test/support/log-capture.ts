import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

/** A pino logger whose JSON lines are collected in memory, for asserting on logs. */
export function captureLogs(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line !== "") lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines };
}
