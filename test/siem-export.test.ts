/**
 * The SIEM export from the audit stream (services/audit/siem-export.ts): its
 * own durable consumer, exactly once across stops, failed writes and crashes
 * between a write and its acknowledgement; on the in-process bus and on real
 * NATS JetStream. Then `caracal audit export --follow` on NATS, end to end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { setTimeout } from "node:timers/promises";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { AuditDecision, AuditEventSchema, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import type { ExportLine, LineSink } from "../clients/cli/audit-export.js";
import { exportStream } from "../services/audit/siem-export.js";
import type { Bus, BusMessage } from "../services/bus/bus.js";
import { createMemoryBus } from "../services/bus/memory-bus.js";
import { openNatsBus } from "../services/bus/nats-bus.js";
import { startCli } from "./support/cli-run.js";
import { natsTestNamespace, testNatsUrl, type NatsTestPrefix } from "./support/nats.js";

const caracalBin = fileURLToPath(new URL("../bin/caracal.js", import.meta.url));
const ns = natsTestNamespace();
afterAll(() => ns.cleanup());

/** One SIEM line's fields the tests look at. */
interface Line {
  readonly metadata: { readonly uid: string; readonly log_name: string; readonly log_provider: string; readonly sequence: string };
  readonly unmapped: { readonly chain_hash?: string };
}

const parse = (jsonLine: string) => JSON.parse(jsonLine) as Line;

/** Publishes an AuditEvent with a fresh id to `zone`; returns the id. */
async function publish(bus: Bus, zone: string): Promise<string> {
  const eventId = randomUUID();
  const event = create(AuditEventSchema, {
    eventId,
    zone,
    time: timestampFromMs(Date.UTC(2026, 10, 28, 12)),
    type: EventType.EXCHANGE,
    decision: AuditDecision.ALLOW,
    clientId: "billing-agent",
    resources: ["billing-api"],
    scopes: ["invoices.read"],
  });
  await bus.publish("audit", zone, toBinary(AuditEventSchema, event), eventId);
  return eventId;
}

async function publishMany(bus: Bus, zones: readonly string[], count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(await publish(bus, zones[i % zones.length]!));
  return ids;
}

/**
 * A sink kept in memory, like the CLI's file: lines and cursor survive from
 * one export run to the next. `fail` decides, per batch, whether the write
 * throws before writing ("disk full") or after ("crashed before the acknowledgement").
 */
class MemorySink implements LineSink {
  readonly lines: Line[] = [];
  cursor = "";
  fail: (batch: readonly Line[]) => "before" | "after" | undefined = () => undefined;

  async write(batch: readonly ExportLine[]): Promise<void> {
    const lines = batch.map((l) => parse(l.jsonLine));
    const failure = this.fail(lines);
    if (failure === "before") throw new Error("disk full");
    this.lines.push(...lines);
    this.cursor = batch.at(-1)!.cursor;
    if (failure === "after") throw new Error("crashed before the acknowledgement");
  }

  ids(): string[] {
    return this.lines.map((l) => l.metadata.uid);
  }

  sequences(): number[] {
    return this.lines.map((l) => Number(l.metadata.sequence));
  }
}

/** One export run in the background, stopped by `stop()`; `done` settles with the export. */
function startExport(bus: Bus, sink: LineSink, options: Parameters<typeof exportStream>[2] = {}) {
  const controller = new AbortController();
  const done = exportStream(bus, sink, options, controller.signal);
  done.catch(() => {});
  return {
    done,
    stop: async () => {
      controller.abort();
      await done;
    },
  };
}

const WAIT = { timeout: 10_000, interval: 20 };

/** The export's own failures reach it as the sink's error; the bus's report of them is not news here. */
const quiet = () => {};
const buses: [string, () => Promise<Bus>][] = [
  ["the in-process bus", async () => createMemoryBus({ onError: quiet })],
  ["NATS JetStream", () => openNatsBus({ url: testNatsUrl, ...ns.prefix(), onError: quiet })],
];

describe.each(buses)("the SIEM export from the audit stream on %s", (_name, openBus) => {
  let bus: Bus;

  beforeAll(async () => {
    bus = await openBus();
  });

  afterAll(() => bus?.close());

  /** Each test its own durable, as each deployment has its own. */
  let durables = 0;
  const durable = () => `siem-export-${++durables}`;
  /** The lines of these events only: the stream also holds the events of the tests before. */
  const ownLines = (sink: MemorySink, ids: readonly string[]) => sink.lines.filter((l) => ids.includes(l.metadata.uid));

  it("writes every event once, in stream order, across a stop and a restart, with events published while stopped", async () => {
    const consumer = durable();
    const sink = new MemorySink();
    const first = await publishMany(bus, ["acme", "globex"], 6);
    const run1 = startExport(bus, sink, { durable: consumer });
    await vi.waitFor(() => expect(ownLines(sink, first)).toHaveLength(6), WAIT);
    await run1.stop();
    const second = await publishMany(bus, ["acme", "globex"], 6);
    const run2 = startExport(bus, sink, { durable: consumer });
    await vi.waitFor(() => expect(ownLines(sink, second)).toHaveLength(6), WAIT);
    await run2.stop();

    const all = [...first, ...second];
    const mine = ownLines(sink, all);
    expect(mine.map((l) => l.metadata.uid)).toEqual(all);
    // Each line once, and the stream sequence rising: the cursor a later run skips up to.
    expect(new Set(sink.ids()).size).toBe(sink.lines.length);
    expect(sink.sequences()).toEqual([...sink.sequences()].sort((a, b) => a - b));
    expect(mine.map((l) => l.metadata.log_name)).toEqual(all.map((_, i) => ["acme", "globex"][i % 2]));
    expect(mine[0]!.metadata.log_provider).toBe(`caracal.stream/${consumer}`);
    // Not chained yet: only the ledger's lines carry a chain hash.
    expect(mine[0]!.unmapped.chain_hash).toBeUndefined();
  });

  it("skips what it wrote before dying between a write and its acknowledgement", async () => {
    const consumer = durable();
    const sink = new MemorySink();
    // Runs its course so the durable holds nothing older than this test's events.
    const warm = startExport(bus, sink, { durable: consumer });
    const before = await publish(bus, "acme");
    await vi.waitFor(() => expect(sink.ids()).toContain(before), WAIT);
    await warm.stop();

    const ids = await publishMany(bus, ["acme"], 4);
    let crashed = false;
    sink.fail = (batch) => (!crashed && batch.some((l) => ids.includes(l.metadata.uid)) ? ((crashed = true), "after") : undefined);
    const crashing = startExport(bus, sink, { durable: consumer });
    await expect(crashing.done).rejects.toThrow("crashed before the acknowledgement");
    expect(ownLines(sink, ids).length).toBeGreaterThan(0);

    const resumed = startExport(bus, sink, { durable: consumer });
    const later = await publish(bus, "acme");
    await vi.waitFor(() => expect(sink.ids()).toContain(later), WAIT);
    await resumed.stop();
    // The batch came again (unacknowledged) and was skipped: every event once.
    expect(ownLines(sink, [...ids, later]).map((l) => l.metadata.uid)).toEqual([...ids, later]);
  });

  it("ends at a failed write without writing anything later, and the next run starts from the failed batch", async () => {
    const consumer = durable();
    const sink = new MemorySink();
    const first = await publishMany(bus, ["acme"], 3);
    let second: string[] = [];
    sink.fail = (batch) => (batch.some((l) => second.includes(l.metadata.uid)) ? "before" : undefined);
    const failing = startExport(bus, sink, { durable: consumer });
    await vi.waitFor(() => expect(ownLines(sink, first)).toHaveLength(3), WAIT);
    second = await publishMany(bus, ["acme"], 3);
    await expect(failing.done).rejects.toThrow("disk full");
    // Published while the export failed: none may overtake the failed batch.
    const third = await publishMany(bus, ["acme"], 3);
    expect(ownLines(sink, [...second, ...third])).toEqual([]);

    sink.fail = () => undefined;
    const resumed = startExport(bus, sink, { durable: consumer });
    await vi.waitFor(() => expect(ownLines(sink, third)).toHaveLength(3), WAIT);
    await resumed.stop();
    const all = [...first, ...second, ...third];
    expect(ownLines(sink, all).map((l) => l.metadata.uid)).toEqual(all);
  });

  it("exports one zone when given one, and reports a message that is not an AuditEvent instead of writing it", async () => {
    const consumer = durable();
    const sink = new MemorySink();
    const skipped: BusMessage[] = [];
    const zone = `only-${consumer}`;
    await bus.publish("audit", zone, new Uint8Array([0xff, 0xff]), `garbage-${consumer}`);
    const other = await publish(bus, "acme");
    const wanted = await publish(bus, zone);
    const run = startExport(bus, sink, { durable: consumer, zone, undecodable: (m) => skipped.push(m) });
    await vi.waitFor(() => expect(sink.ids()).toEqual([wanted]), WAIT);
    await run.stop();
    expect(sink.ids()).not.toContain(other);
    expect(skipped.map((m) => [m.zone, m.msgId])).toEqual([[zone, `garbage-${consumer}`]]);
  });
});

describe("caracal audit export --follow from the audit stream on NATS", () => {
  let prefix: NatsTestPrefix;
  let bus: Bus;
  let dir: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    prefix = ns.prefix();
    bus = await openNatsBus({ url: testNatsUrl, ...prefix });
    dir = await mkdtemp(join(tmpdir(), "caracal-siem-export-"));
    Object.assign(process.env, { CARACAL_NATS_URL: testNatsUrl, CARACAL_NATS_STREAM_PREFIX: prefix.streamPrefix, CARACAL_NATS_SUBJECT_PREFIX: prefix.subjectPrefix });
  });

  afterAll(async () => {
    for (const key of ["CARACAL_NATS_URL", "CARACAL_NATS_STREAM_PREFIX", "CARACAL_NATS_SUBJECT_PREFIX"]) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
    await bus?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const fileIds = async (file: string) =>
    (await readFile(file, "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean)
      .map((l) => parse(l).metadata.uid);

  it("writes every zone's events to a file through its own durable consumer siem-export, and resumes after SIGTERM without gap or duplicate", async () => {
    const file = join(dir, "audit.jsonl");
    const first = await publishMany(bus, ["acme", "globex"], 5);
    const sigterms = process.listenerCount("SIGTERM");
    const run1 = startCli(["audit", "export", "--follow", "--output", file]);
    await vi.waitFor(async () => expect(await fileIds(file)).toEqual(first), WAIT);
    expect(process.listenerCount("SIGTERM")).toBe(sigterms + 1);
    process.emit("SIGTERM");
    expect(await run1.finished).toEqual({ code: 0, stdout: "", stderr: "following the audit stream through durable consumer siem-export\n" });
    expect(process.listenerCount("SIGTERM")).toBe(sigterms);

    const nc = await connect({ servers: testNatsUrl });
    try {
      const info = await (await jetstreamManager(nc)).consumers.info(`${prefix.streamPrefix}_AUDIT`, "siem-export");
      expect(info.config.durable_name).toBe("siem-export");
    } finally {
      await nc.close();
    }

    const second = await publishMany(bus, ["globex"], 3);
    const run2 = startCli(["audit", "export", "--follow", "--output", file]);
    await vi.waitFor(async () => expect(await fileIds(file)).toEqual([...first, ...second]), WAIT);
    process.emit("SIGTERM");
    const { code, stderr } = await run2.finished;
    expect(code).toBe(0);
    expect(stderr).toMatch(/^following the audit stream through durable consumer siem-export, skipping what it wrote up to stream sequence \d+\n$/);
  });

  it("writes to stdout through another durable consumer, keeping a cursor file the next run skips up to", async () => {
    const cursorFile = join(dir, "stdout.cursor");
    const ids = await publishMany(bus, ["acme"], 2);
    const args = ["audit", "export", "--follow", "--consumer", "to-stdout", "--cursor-file", cursorFile];
    const run = startCli(args);
    await vi.waitFor(() => expect(run.stdout()).toContain(ids[1]), WAIT);
    process.emit("SIGTERM");
    const { code, stdout } = await run.finished;
    expect(code).toBe(0);
    const written = stdout.trimEnd().split("\n").map(parse);
    expect(written.every((l) => l.metadata.log_provider === "caracal.stream/to-stdout")).toBe(true);
    expect(JSON.parse(await readFile(cursorFile, "utf8"))).toEqual({ provider: "caracal.stream/to-stdout", cursor: written.at(-1)!.metadata.sequence });

    // The cursor file belongs to this consumer: the default one may not resume from it.
    const other = await startCli(["audit", "export", "--follow", "--cursor-file", cursorFile]).finished;
    expect(other).toMatchObject({ code: 2, stderr: expect.stringContaining("is the cursor of caracal.stream/to-stdout, not caracal.stream/siem-export") });
  });

  it("loses nothing and repeats nothing when the export process is killed mid-stream and started again", async () => {
    const file = join(dir, "killed.jsonl");
    const env = { ...process.env };
    const children: ChildProcess[] = [];
    const exporter = () => {
      const child = spawn(process.execPath, [caracalBin, "audit", "export", "--follow", "--consumer", "killed", "--output", file], { env, stdio: ["ignore", "ignore", "pipe"] });
      children.push(child);
      return child;
    };
    onTestFinished(() => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    const first = exporter();
    let note = "";
    first.stderr!.setEncoding("utf8").on("data", (chunk: string) => (note += chunk));
    await vi.waitFor(() => expect(note).toContain("following the audit stream"), { timeout: 30_000, interval: 20 });
    // Published throughout, at about 4,000/s for a second, so the kill lands while batches are being written and acknowledged.
    const published = (async () => {
      const ids: string[] = [];
      while (ids.length < 4_000) {
        ids.push(...(await publishMany(bus, ["acme", "globex"], 100)));
        await setTimeout(25);
      }
      return ids;
    })();
    // Awaited below; until then a failure must not count as unhandled if the test fails first.
    published.catch(() => {});
    await vi.waitFor(async () => expect((await fileIds(file)).length).toBeGreaterThan(500), { timeout: 30_000, interval: 20 });
    first.kill("SIGKILL");
    await once(first, "exit");
    // Killed with work left: the restart must pick up where the dead one's acknowledgements ended.
    expect((await fileIds(file)).length).toBeLessThan(4_000);
    const second = exporter();
    const all = await published;
    await vi.waitFor(async () => expect(await fileIds(file)).toEqual(expect.arrayContaining(all)), { timeout: 30_000, interval: 50 });
    second.kill("SIGTERM");
    expect((await once(second, "exit"))[0]).toBe(0);

    const ids = await fileIds(file);
    expect(new Set(ids).size).toBe(ids.length);
    const mine = new Set(all);
    expect(ids.filter((id) => mine.has(id))).toEqual(all);
  }, 120_000);

  it("refuses, with exit 2 and a reason, what it cannot do", async () => {
    const ledgerFile = join(dir, "ledger.jsonl");
    await writeFile(ledgerFile, `${JSON.stringify({ metadata: { log_name: "acme", log_provider: "caracal.ledger", sequence: "4" } })}\n`);
    const cases: [string[], string][] = [
      [["audit", "export", "--source", "stream"], "--source stream follows the audit stream; add --follow"],
      [["audit", "export", "--follow", "--source", "stream", "--cursor", "3"], "--cursor is for the ledger"],
      [["audit", "export", "--follow", "--output", ledgerFile], `--output ${ledgerFile} holds the export of zone acme, not caracal.stream/siem-export`],
      [["audit", "export", "--follow", "--source", "ledger"], "--zone is required to export the ledger"],
      [["audit", "export", "--follow", "--consumer", "no.dots"], "expected a durable consumer name"],
      [["audit", "export", "--follow", "--zone", "Acme"], "--zone must be a zone slug"],
    ];
    for (const [args, reason] of cases) {
      const { code, stderr } = await startCli(args).finished;
      expect({ args, code, stderr }).toEqual({ args, code: 2, stderr: expect.stringContaining(reason) });
    }
    const url = process.env.CARACAL_NATS_URL;
    delete process.env.CARACAL_NATS_URL;
    try {
      const { code, stderr } = await startCli(["audit", "export", "--follow", "--source", "stream", "--output", join(dir, "none.jsonl")]).finished;
      expect({ code, stderr }).toEqual({ code: 2, stderr: expect.stringContaining("CARACAL_NATS_URL: required to export from the audit stream") });
    } finally {
      process.env.CARACAL_NATS_URL = url;
    }
  });
});
