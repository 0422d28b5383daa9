import { create, toJsonString, type DescEnum, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError, Option, type Command } from "commander";
import { AuditDecision, AuditDecisionSchema, EventType, EventTypeSchema } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import {
  AuditRecordSchema,
  ChainBreakKindSchema,
  ExplainResponseSchema,
  QueryResponseSchema,
  VerifyChainResponseSchema,
  type AuditFilterSchema,
  type AuditRecord,
} from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { ReasonSchema } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { exportAuditLines, parseConsumer, parseCursor, type ExportOptions, type StreamExport } from "./audit-export.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { CommandFailed } from "./command-failed.js";
import { formatTime, printJson, printNote, printTable } from "./output.js";
import { parseTime } from "./policy-inputs.js";
import { UsageError } from "./usage-error.js";

/** The server's largest page. */
const MAX_PAGE = 1_000;

const RECORD_HEADERS = ["TIME", "SEQ", "TYPE", "DECISION", "REASON", "CLIENT", "RESOURCES/SCOPES", "DECISION ID"];

interface FilterOptions {
  zone: string;
  since?: Date;
  until?: Date;
  client?: string;
  session?: string;
  decision?: AuditDecision;
  type?: EventType[];
  resource?: string;
  requestId?: string;
  decisionId?: string;
}

/**
 * Registers `caracal audit query|explain|tail|verify|export`, the read side
 * of the tamper-evident ledger. Every command reading the ledger needs
 * `--zone` and the admin profile's `audit.read`; `export --source stream`
 * reads the audit stream through `stream` instead (NATS access, no profile).
 *
 * @example
 * caracal audit query --zone acme --decision deny --since 2025-01-31T00:00:00Z
 * caracal audit explain --zone acme --decision-id 0b7e…
 * caracal audit verify --zone acme
 * caracal audit export --zone acme --follow --output /var/log/caracal/acme.jsonl
 * CARACAL_NATS_URL=nats://nats:4222 caracal audit export --follow --output /var/log/caracal/audit.jsonl
 */
export function registerAuditCommands(program: Command, stream?: StreamExport): void {
  const audit = program.command("audit").description("read the tamper-evident audit ledger: query, explain, tail, verify, export");

  withFilters(auditCommand(audit, "query", "list records matching a filter, newest first"))
    .addOption(new Option("--limit <n>", "at most this many records (1 to 100000); pages are fetched until then").argParser(parseLimit).default(100))
    .action((options: FilterOptions & { limit: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const client = await cli.audit();
        const records: AuditRecord[] = [];
        let pageToken = "";
        do {
          const wanted = options.limit - records.length;
          const page = await client.query({ filter: filterOf(options), pageSize: Math.min(wanted, MAX_PAGE), pageToken });
          records.push(...page.records.slice(0, wanted));
          pageToken = page.records.length === 0 ? "" : page.nextPageToken;
        } while (pageToken !== "" && records.length < options.limit);
        if (cli.json) return printJson(QueryResponseSchema, create(QueryResponseSchema, { records }));
        printTable(RECORD_HEADERS, records.map(recordCells), `no audit records in zone ${options.zone} match`);
        if (pageToken !== "") printNote(`showing the newest ${records.length}; raise --limit for more`);
      }),
    );

  auditCommand(audit, "explain", "tell the story of one request: a summary, then each recorded step, oldest first")
    .option("--request-id <id>", "the request, by the x-request-id it was made with")
    .option("--decision-id <id>", "the decision, by x-caracal-decision-id or an error's decision id")
    .action((options: { zone: string; requestId?: string; decisionId?: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        if ((options.requestId === undefined) === (options.decisionId === undefined)) throw new UsageError("name exactly one of --request-id, --decision-id");
        const id = options.requestId !== undefined ? { case: "requestId" as const, value: options.requestId } : { case: "decisionId" as const, value: options.decisionId! };
        const response = await (await cli.audit()).explain({ zone: options.zone, id });
        if (cli.json) return printJson(ExplainResponseSchema, response);
        const width = Math.max(0, ...response.steps.map((s) => String(s.record?.sequence ?? "").length));
        const steps = response.steps.map((s) => `${formatTime(s.record?.event?.time)}  ${String(s.record?.sequence ?? "-").padStart(width)}  ${s.sentence}\n`);
        process.stdout.write(`${response.summary}\n${steps.join("")}`);
      }),
    );

  withFilters(auditCommand(audit, "tail", "print each record matching a filter as it is stored (Ctrl-C to stop)")).action((options: FilterOptions, command: Command) =>
    runClientAction(command, async (cli) => {
      const client = await cli.audit();
      printNote(`waiting for new records in zone ${options.zone} (Ctrl-C to stop)`);
      await untilInterrupted(async (signal) => {
        for await (const { record } of client.tail({ filter: filterOf(options) }, { signal })) {
          if (!record) continue;
          const line = cli.json ? toJsonString(AuditRecordSchema, record, { alwaysEmitImplicit: true }) : tailLine(record);
          process.stdout.write(`${line}\n`);
        }
        if (!signal.aborted) throw new CommandFailed("the server ended the stream (it may be restarting); run tail again");
      });
    }),
  );

  auditCommand(audit, "verify", "check the zone's hash chain and report the first break (exit 1 when broken)")
    .option("--from <seq>", "first sequence to check (default: the start)", parseSequence)
    .option("--to <seq>", "last sequence to check (default: the end)", parseSequence)
    .action((options: { zone: string; from?: bigint; to?: bigint }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.audit()).verifyChain({ zone: options.zone, fromSequence: options.from ?? 0n, toSequence: options.to ?? 0n });
        const broken = response.firstBreak;
        if (cli.json) printJson(VerifyChainResponseSchema, response);
        else if (response.intact) process.stdout.write(`intact: ${response.rowsChecked} rows checked\n`);
        else if (broken) process.stdout.write(`broken at sequence ${broken.sequence} (${enumWord(ChainBreakKindSchema, broken.kind)}): ${broken.detail}\n`);
        if (!response.intact) throw new CommandFailed(`the audit chain of zone ${options.zone} is broken at sequence ${broken?.sequence ?? "?"}`);
      }),
    );

  clientCommand(audit, "export", "write audit records as SIEM JSON lines, resuming where the last export stopped")
    .option("--zone <zone>", "the zone (required from the ledger; from the stream, only this zone instead of every zone)")
    .option("--follow", "keep writing new records as they are stored or published (Ctrl-C or SIGTERM to stop)")
    .addOption(
      new Option(
        "--source <source>",
        "ledger: the zone's hash chain, through the server; stream: the audit stream on NATS, through a durable consumer of its own (--follow only) " +
          "(default: stream with --follow when CARACAL_NATS_URL is set, else ledger)",
      ).choices(["ledger", "stream"]),
    )
    .option("--consumer <name>", "from the stream: the durable consumer, one per export (default: siem-export)", parseConsumer)
    .option("--output <file>", "append to this file, resuming after its last complete line")
    .option("--cursor-file <file>", "for stdout: resume after the cursor in this file, and keep it up to date")
    .option("--cursor <seq>", "for stdout, from the ledger: resume after this sequence (default: the start)", parseCursor)
    .action((options: ExportOptions, command: Command) => {
      const source = options.source ?? (options.follow && process.env.CARACAL_NATS_URL ? "stream" : "ledger");
      return runClientAction(command, (cli) => untilInterrupted((signal) => exportAuditLines(() => cli.audit(), { ...options, source }, signal, stream)));
    });
}

/** An audit subcommand: the client options plus `--zone`. */
function auditCommand(parent: Command, name: string, description: string): Command {
  return clientCommand(parent, name, description).requiredOption("--zone <zone>", "the zone");
}

function withFilters(command: Command): Command {
  return command
    .option("--since <time>", "records at or after this ISO 8601 time", parseTime)
    .option("--until <time>", "records before this ISO 8601 time", parseTime)
    .option("--client <id>", "only this application")
    .option("--session <id>", "only this session (or sessions derived from it)")
    .option("--decision <decision>", `only this outcome: ${choices(AuditDecisionSchema).join(", ")}`, (value: string) => parseChoice(AuditDecisionSchema, value))
    .option("--type <type>", `only this event type, repeatable: ${choices(EventTypeSchema).join(", ")}`, (value: string, previous: EventType[] = []) => [
      ...previous,
      parseChoice(EventTypeSchema, value),
    ])
    .option("--resource <id>", "only records naming this resource")
    .option("--request-id <id>", "only this request id")
    .option("--decision-id <id>", "only this decision id");
}

function filterOf(o: FilterOptions): MessageInitShape<typeof AuditFilterSchema> {
  return {
    zone: o.zone,
    ...(o.since && { startTime: timestampFromDate(o.since) }),
    ...(o.until && { endTime: timestampFromDate(o.until) }),
    clientId: o.client ?? "",
    sessionId: o.session ?? "",
    decision: o.decision ?? AuditDecision.UNSPECIFIED,
    types: o.type ?? [],
    resource: o.resource ?? "",
    requestId: o.requestId ?? "",
    decisionId: o.decisionId ?? "",
  };
}

/** A record as table cells, in the order of {@link RECORD_HEADERS}. */
function recordCells(record: AuditRecord): string[] {
  const e = record.event;
  const resources = e?.resources.join(",") ?? "";
  const scopes = e?.scopes.join(",") ?? "";
  return [
    formatTime(e?.time),
    String(record.sequence),
    enumWord(EventTypeSchema, e?.type ?? 0),
    enumWord(AuditDecisionSchema, e?.decision ?? 0),
    // A change has no reason to give; what changed, and who changed it, is more use.
    e?.decision === AuditDecision.UNSPECIFIED && e.action !== "" ? `${e.action}${e.actor && ` by ${e.actor}`}` : enumWord(ReasonSchema, e?.reason ?? 0),
    e?.clientId || "-",
    resources === "" && scopes === "" ? "-" : `${resources || "-"}/${scopes || "-"}`,
    e?.decisionId || "-",
  ];
}

/** A record on one line, the first columns padded so a stream of them lines up. */
function tailLine(record: AuditRecord): string {
  const [time = "", seq = "", type = "", decision = "", ...rest] = recordCells(record);
  return [time, seq.padStart(6), type.padEnd(13), decision.padEnd(7), ...rest].join("  ");
}

/** An enum value as the CLI spells it: `EVENT_TYPE_START_SESSION` → `start-session`, `-` when unset. */
function enumWord(schema: DescEnum, value: number): string {
  if (value === 0) return "-";
  const found = schema.values.find((v) => v.number === value);
  return found ? found.localName.toLowerCase().replaceAll("_", "-") : String(value);
}

function choices(schema: DescEnum): string[] {
  return schema.values.filter((v) => v.number !== 0).map((v) => enumWord(schema, v.number));
}

function parseChoice(schema: DescEnum, value: string): number {
  const found = schema.values.find((v) => v.number !== 0 && enumWord(schema, v.number) === value);
  if (!found) throw new InvalidArgumentError(`expected one of ${choices(schema).join(", ")}`);
  return found.number;
}

function parseLimit(value: string): number {
  const n = /^\d{1,6}$/.test(value) ? Number(value) : 0;
  if (n < 1 || n > 100_000) throw new InvalidArgumentError("expected a number from 1 to 100000");
  return n;
}

function parseSequence(value: string): bigint {
  if (!/^[1-9]\d{0,17}$/.test(value)) throw new InvalidArgumentError("expected a sequence number, 1 or more");
  return BigInt(value);
}

/** Runs a stream until it ends or Ctrl-C; Ctrl-C is a normal stop, not a failure. */
async function untilInterrupted(run: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  // SIGTERM too: how a supervisor stops a following export, which must still close its file whole.
  process.once("SIGINT", interrupt);
  process.once("SIGTERM", interrupt);
  try {
    await run(stop.signal);
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  } finally {
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
  }
}
