/**
 * The SIEM export from the audit stream: its own durable consumer
 * (`siem-export` by default) on CARACAL_AUDIT, independent of the ledger, so
 * a SIEM keeps receiving events while the ledger or its database is down.
 * `caracal audit export --follow` runs it when NATS is configured.
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { ExportLine, LineSink, StreamExport } from "../../clients/cli/audit-export.js";
import { printNote } from "../../clients/cli/output.js";
import { AuditEventSchema } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import type { Bus, BusMessage } from "../bus/bus.js";
import { openBus } from "../bus/open-bus.js";
import { ConfigError, loadBusConfig } from "../config.js";
import { siemLine, streamProvider } from "./siem-line.js";

/** The durable consumer the SIEM export reads through unless told another. */
export const SIEM_EXPORT_DURABLE = "siem-export";

/** Options of {@link exportStream}. */
export interface StreamExportOptions {
  /** The durable consumer; default {@link SIEM_EXPORT_DURABLE}. One export per durable at a time. */
  readonly durable?: string;
  /** Only this zone's events; every zone when unset. */
  readonly zone?: string;
  /** Told of each message that is not an AuditEvent; it is skipped, and acknowledged. */
  readonly undecodable?: (message: BusMessage) => void;
}

/**
 * Writes every audit event the stream holds beyond the durable's position to
 * `sink` as SIEM lines (`metadata.sequence` is the stream sequence, the
 * cursor), and follows until `signal` aborts. Exactly once across restarts:
 *
 * - a batch is acknowledged only after `sink` wrote it, so a crash loses nothing;
 * - the durable resumes in order (`resumeInOrder`), and once a write failed no
 *   later batch is written: the export ends with that error, and the next run
 *   starts from the failed batch. So lines are written in stream order, and a
 *   message at or below the sink's cursor was written already (delivered
 *   again after a crash between write and acknowledgement) and is skipped.
 *
 * Resolves once stopped by `signal`; rejects with the sink's error.
 *
 * @example
 * await exportStream(bus, fileSink, { zone: "acme" }, signal);
 */
export async function exportStream(bus: Bus, sink: LineSink, options: StreamExportOptions, signal: AbortSignal): Promise<void> {
  const durable = options.durable ?? SIEM_EXPORT_DURABLE;
  const provider = streamProvider(durable);
  let after = sink.cursor === "" ? 0 : Number(sink.cursor);
  let failure: { error: unknown } | undefined;
  const failed = new AbortController();
  const subscription = await bus.consumeBatch(
    "audit",
    durable,
    async (messages) => {
      // Written after the failed batch, this one would move the cursor past it: the failed batch would be skipped next run.
      if (failure) throw failure.error;
      const lines: ExportLine[] = [];
      let last = after;
      for (const message of messages) {
        if (message.seq <= last) continue;
        last = message.seq;
        let event;
        try {
          event = fromBinary(AuditEventSchema, message.data);
        } catch {
          options.undecodable?.(message);
          continue;
        }
        lines.push({ jsonLine: siemLine(event, { zone: message.zone, sequence: message.seq, provider }), cursor: String(message.seq) });
      }
      try {
        if (lines.length > 0) await sink.write(lines);
      } catch (error) {
        failure = { error };
        failed.abort();
        throw error;
      }
      after = last;
    },
    { zone: options.zone, resumeInOrder: true },
  );
  const stop = AbortSignal.any([signal, failed.signal]);
  if (!stop.aborted) await new Promise((resolve) => stop.addEventListener("abort", resolve, { once: true }));
  await subscription.stop();
  if (failure) throw failure.error;
}

/**
 * `caracal audit export --source stream`: {@link exportStream} on the NATS
 * bus `env` configures (`CARACAL_NATS_URL` and the name prefixes), closed
 * when the export ends. Messages that are not an AuditEvent and bus trouble
 * the bus recovers from are noted on stderr.
 *
 * @example
 * registerClientCommands(program, { auditStream: cliStreamExport(process.env) });
 */
export function cliStreamExport(env: NodeJS.ProcessEnv): StreamExport {
  return {
    defaultConsumer: SIEM_EXPORT_DURABLE,
    provider: streamProvider,
    async run(sink, { consumer, zone }, signal) {
      const { natsUrl, natsNames } = loadBusConfig(env);
      if (natsUrl === undefined) throw new ConfigError("CARACAL_NATS_URL", "required to export from the audit stream (--source stream), which lives on NATS");
      const bus = await openBus({
        natsUrl,
        ...natsNames,
        // Handler failures end the export with their own error; only delivery trouble is news here.
        onError: (error, failure) => {
          if (failure.kind === "subscription") printNote(`audit stream: ${error instanceof Error ? error.message : String(error)}; reconnecting`);
        },
      });
      try {
        const undecodable = (m: BusMessage) => printNote(`skipped stream sequence ${m.seq} (zone ${m.zone}): not an AuditEvent`);
        await exportStream(bus, sink, { durable: consumer, zone, undecodable }, signal);
      } finally {
        await bus.close();
      }
    },
  };
}
