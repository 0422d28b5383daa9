import { open, readFile, rename, writeFile, type FileHandle } from "node:fs/promises";
import { setImmediate } from "node:timers/promises";
import type { Client } from "@connectrpc/connect";
import { InvalidArgumentError } from "commander";
import type { AuditService } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { ZONE_PATTERN } from "../../interceptors/mandate-claims.js";
import { CommandFailed } from "./command-failed.js";
import { printNote } from "./output.js";
import { UsageError } from "./usage-error.js";

/** The options of `caracal audit export`. */
export interface ExportOptions {
  /** The zone: required from the ledger; from the stream, a filter (every zone when unset). */
  readonly zone?: string;
  /** Keep writing records as they are stored (the ledger) or published (the stream). */
  readonly follow?: boolean;
  /** Append here; the file's last complete line says where to resume. */
  readonly output?: string;
  /** For stdout: where the cursor is kept between runs. */
  readonly cursorFile?: string;
  /** For stdout, from the ledger: resume after this sequence. */
  readonly cursor?: string;
  /**
   * Where records are read: `ledger`, the zone's hash chain through the
   * `Export` RPC; or `stream`, the audit stream through a durable consumer of
   * the export's own (with `follow` only).
   */
  readonly source?: ExportSource;
  /** From the stream: the durable consumer (default `siem-export`). */
  readonly consumer?: string;
}

/** Where `caracal audit export` reads records. */
export type ExportSource = "ledger" | "stream";

/** One line for a sink, and the cursor to resume after it. */
export interface ExportLine {
  readonly jsonLine: string;
  readonly cursor: string;
}

/** Where export lines go, and the cursor the next run resumes after. */
export interface LineSink {
  /** The cursor to resume after: the last record written, or "" for the start. */
  readonly cursor: string;
  /** Writes a batch of lines, flushed, and moves the cursor past them. */
  write(batch: readonly ExportLine[]): Promise<void>;
}

/**
 * The export from the audit stream, which only `caracal`'s services side can
 * run (it reaches NATS); the client commands are handed it when registered.
 */
export interface StreamExport {
  /** The durable consumer an export reads through unless told another. */
  readonly defaultConsumer: string;
  /** The `metadata.log_provider` of the lines read through `consumer`, so a file is only resumed by the export that wrote it. */
  provider(consumer: string): string;
  /** Writes the stream's events to `sink` from where `consumer` stands, until `signal` aborts or a write fails. */
  run(sink: LineSink, options: { readonly consumer: string; readonly zone?: string }, signal: AbortSignal): Promise<void>;
}

/** What a file or cursor file must have been written by to be resumed: the lines' provider and, from the ledger, the zone. */
interface Origin {
  readonly provider: string;
  readonly zone?: string;
}

/** The `metadata.log_provider` the server's `Export` writes; lines without one come from the ledger too (written before it existed). */
const LEDGER_PROVIDER = "caracal.ledger";

// The file is read back from its end in steps this big; one step usually holds the last line whole.
const TAIL_CHUNK = 64 * 1024;
const MAX_BATCH = 500;

/**
 * Exports audit records as SIEM JSON lines, one per record, and keeps the
 * place it stopped so a later run continues without a gap or a duplicate.
 *
 * From the ledger (`source` "ledger", the default): a zone's records in chain
 * order through `connect`'s `Export`. From the stream (`source` "stream",
 * `follow` only): every zone's events, or `zone`'s, as published, through the
 * durable consumer `consumer` (see `stream`).
 *
 * With `output`, the file is its own cursor: the last complete line's
 * `metadata.sequence` (a partial line left by a crash is cut off first).
 * To stdout, `cursorFile` is read on start and replaced atomically after
 * each batch is flushed; else `cursor` (ledger only), else the start. Returns
 * once caught up, or with `follow` when `signal` aborts (a following stream
 * the server ends is a {@link CommandFailed}); what was written up to then
 * agrees with the cursor. Files are checked before `connect`, so a usage
 * problem costs no sign-in.
 *
 * @example
 * await exportAuditLines(() => cli.audit(), { zone: "acme", follow: true, output: "acme.jsonl" }, signal);
 */
export async function exportAuditLines(
  connect: () => Promise<Client<typeof AuditService>>,
  options: ExportOptions,
  signal: AbortSignal,
  stream?: StreamExport,
): Promise<void> {
  if (options.output !== undefined && (options.cursorFile !== undefined || options.cursor !== undefined)) {
    throw new UsageError("--output resumes from its own last line; --cursor and --cursor-file are for stdout");
  }
  if (options.cursorFile !== undefined && options.cursor !== undefined) throw new UsageError("give --cursor-file or --cursor, not both");
  if (options.source === "stream") return exportFromStream(options, signal, stream);
  if (options.consumer !== undefined) throw new UsageError("--consumer names the stream's durable consumer; the ledger needs none");
  const zone = options.zone;
  if (zone === undefined) throw new UsageError("--zone is required to export the ledger: each zone has its own chain");
  const sink = await openSink(options, { provider: LEDGER_PROVIDER, zone });
  try {
    const client = await connect();
    if (sink.cursor !== "") printNote(`resuming zone ${zone} after sequence ${sink.cursor}`);
    const records = client.export({ zone, cursor: sink.cursor, follow: options.follow === true }, { signal });
    for await (const batch of inBatches(records, MAX_BATCH)) await sink.write(batch);
    // A following export ends only on Ctrl-C; a server going away is worth a non-zero exit, so a supervisor restarts it.
    if (options.follow && !signal.aborted) throw new CommandFailed("the server ended the export stream; run the same command again to resume");
  } finally {
    await sink.close();
  }
}

async function exportFromStream(options: ExportOptions, signal: AbortSignal, stream: StreamExport | undefined): Promise<void> {
  if (!stream) throw new UsageError("--source stream is not available here: it needs caracal's services side, which reaches NATS");
  if (!options.follow) throw new UsageError("--source stream follows the audit stream; add --follow (without it, export the ledger)");
  if (options.cursor !== undefined) throw new UsageError("--cursor is for the ledger; the stream resumes from its durable consumer and the output's cursor");
  if (options.zone !== undefined && !ZONE_PATTERN.test(options.zone)) throw new UsageError(`--zone must be a zone slug matching ${ZONE_PATTERN.source}`);
  const consumer = options.consumer ?? stream.defaultConsumer;
  const sink = await openSink(options, { provider: stream.provider(consumer) });
  try {
    const resuming = sink.cursor === "" ? "" : `, skipping what it wrote up to stream sequence ${sink.cursor}`;
    printNote(`following the audit stream${options.zone === undefined ? "" : ` (zone ${options.zone})`} through durable consumer ${consumer}${resuming}`);
    await stream.run(sink, { consumer, zone: options.zone }, signal);
  } finally {
    await sink.close();
  }
}

/** Parses `--consumer`: a JetStream durable name. */
export function parseConsumer(value: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(value)) throw new InvalidArgumentError("expected a durable consumer name: 1 to 64 letters, digits, - or _");
  return value;
}

/** Parses `--cursor`: a sequence from a previous export (0 is the start). */
export function parseCursor(value: string): string {
  if (!/^\d{1,18}$/.test(value)) throw new InvalidArgumentError("expected a sequence number from a previous export");
  return value === "0" ? "" : value;
}

async function openSink(options: ExportOptions, origin: Origin): Promise<LineSink & { close(): Promise<void> }> {
  return options.output !== undefined ? openFileSink(options.output, origin) : openStdoutSink(options, origin);
}

async function openFileSink(path: string, origin: Origin): Promise<LineSink & { close(): Promise<void> }> {
  const handle = await open(path, "a+").catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot open --output ${path}: ${error.code ?? error.message}`);
  });
  try {
    const { size } = await handle.stat();
    const last = await lastCompleteLine(handle, size);
    if (last.end < size) {
      await handle.truncate(last.end);
      printNote(`cut a partial last line (${size - last.end} bytes) from ${path}, left by an interrupted export`);
    }
    let cursor = last.line === undefined ? "" : sequenceOf(last.line, path, origin);
    return {
      get cursor() {
        return cursor;
      },
      async write(batch) {
        await handle.appendFile(batch.map((r) => `${r.jsonLine}\n`).join(""), "utf8");
        cursor = batch.at(-1)?.cursor ?? cursor;
      },
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

async function openStdoutSink(options: ExportOptions, origin: Origin): Promise<LineSink & { close(): Promise<void> }> {
  const { cursorFile } = options;
  let cursor = cursorFile === undefined ? (options.cursor ?? "") : await readCursorFile(cursorFile, origin);
  return {
    get cursor() {
      return cursor;
    },
    async write(batch) {
      await new Promise<void>((resolve, reject) => process.stdout.write(batch.map((r) => `${r.jsonLine}\n`).join(""), (e) => (e ? reject(e) : resolve())));
      cursor = batch.at(-1)?.cursor ?? cursor;
      if (cursorFile === undefined) return;
      // Replace, never rewrite in place: a crash leaves the old cursor or the new one, not half of each.
      const temp = `${cursorFile}.${process.pid}.tmp`;
      await writeFile(temp, `${JSON.stringify({ provider: origin.provider, zone: origin.zone, cursor })}\n`, { flush: true });
      await rename(temp, cursorFile);
    },
    close: async () => {},
  };
}

async function readCursorFile(path: string, origin: Origin): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw new UsageError(`cannot read --cursor-file ${path}: ${(error as NodeJS.ErrnoException).code}`);
  }
  const saved = parseJson(text) as { provider?: unknown; zone?: unknown; cursor?: unknown } | undefined;
  if (typeof saved?.cursor !== "string" || !/^\d{0,18}$/.test(saved.cursor)) throw new UsageError(`--cursor-file ${path} holds no export cursor`);
  const mismatch = originMismatch(saved.provider, saved.zone, origin);
  if (mismatch) throw new UsageError(`--cursor-file ${path} is the cursor of ${mismatch}`);
  return saved.cursor;
}

/** Where the file's last complete line ends (just past its newline), and that line. */
async function lastCompleteLine(handle: FileHandle, size: number): Promise<{ end: number; line: string | undefined }> {
  let tail = Buffer.alloc(0);
  let start = size;
  for (;;) {
    const newline = tail.lastIndexOf(0x0a);
    if (newline >= 0) {
      const before = newline === 0 ? -1 : tail.lastIndexOf(0x0a, newline - 1);
      if (before >= 0 || start === 0) return { end: start + newline + 1, line: tail.subarray(before + 1, newline).toString("utf8") };
    } else if (start === 0) {
      return { end: 0, line: undefined };
    }
    const from = Math.max(0, start - TAIL_CHUNK);
    const chunk = Buffer.alloc(start - from);
    await handle.read(chunk, 0, chunk.length, from);
    tail = Buffer.concat([chunk, tail]);
    start = from;
  }
}

function sequenceOf(line: string, path: string, origin: Origin): string {
  const metadata = (parseJson(line) as { metadata?: { sequence?: unknown; log_name?: unknown; log_provider?: unknown } } | undefined)?.metadata;
  if (typeof metadata?.sequence !== "string" || !/^\d{1,18}$/.test(metadata.sequence)) {
    throw new UsageError(`--output ${path}: its last line is not a Caracal export line, so there is no place to resume from`);
  }
  const mismatch = originMismatch(metadata.log_provider, metadata.log_name, origin);
  if (mismatch) throw new UsageError(`--output ${path} holds the export of ${mismatch}`);
  return metadata.sequence;
}

/**
 * What a saved cursor belongs to, said for an error, when it is not `origin`
 * (a sequence means nothing elsewhere: each zone's chain and the stream
 * count their own); undefined when it is.
 */
function originMismatch(provider: unknown, zone: unknown, origin: Origin): string | undefined {
  const saved = provider ?? LEDGER_PROVIDER;
  const describe = (p: unknown, z: unknown) => (p === LEDGER_PROVIDER ? `zone ${String(z)}` : String(p));
  if (saved !== origin.provider) return `${describe(saved, zone)}, not ${describe(origin.provider, origin.zone)}`;
  if (origin.provider === LEDGER_PROVIDER && zone !== origin.zone) return `zone ${String(zone)}, not ${origin.zone}`;
  return undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Groups a stream into batches of what has already arrived: a batch closes
 * when it is full or when the next item is not there yet, so a quiet stream
 * is written at once and a busy one in few writes. Items received before the
 * stream fails are still handed over.
 */
async function* inBatches<T>(source: AsyncIterable<T>, max: number): AsyncGenerator<T[]> {
  const iterator = source[Symbol.asyncIterator]();
  const WAITING = Symbol("waiting");
  let batch: T[] = [];
  let next: Promise<IteratorResult<T>> | undefined;
  try {
    for (;;) {
      next ??= iterator.next();
      const result = batch.length === 0 ? await next : await Promise.race([next, setImmediate(WAITING)]);
      if (result === WAITING) {
        yield batch;
        batch = [];
        continue;
      }
      next = undefined;
      if (result.done) break;
      batch.push(result.value);
      if (batch.length >= max) {
        yield batch;
        batch = [];
      }
    }
  } catch (error) {
    if (batch.length > 0) yield batch;
    throw error;
  }
  if (batch.length > 0) yield batch;
}
