import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { ReasonSchema } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { errorDetailOf } from "../../interceptors/caracal-error.js";

/**
 * One line describing a failed call, without the `caracal: ` prefix:
 * `<code> <REASON_NAME>: <message>`, e.g.
 * `permission_denied REASON_SCOPE_NOT_GRANTED: scope invoices.write is not granted …`.
 * A failure without a Caracal reason that is UNAVAILABLE never reached a
 * Caracal handler, so the line names the target instead.
 *
 * @example
 * failureLine(new ConnectError("connect ECONNREFUSED 127.0.0.1:7070", Code.Unavailable), "http://127.0.0.1:7070");
 * // "cannot reach Caracal at http://127.0.0.1:7070: connect ECONNREFUSED 127.0.0.1:7070"
 */
export function failureLine(error: unknown, target: string | undefined): string {
  const connectError = ConnectError.from(error);
  // Server messages are one line by design; a transport's may not be.
  const message = connectError.rawMessage.replace(/\s*\n\s*/g, " ");
  const detail = errorDetailOf(connectError);
  if (!detail) {
    if (connectError.code === Code.Unavailable && target !== undefined) return `cannot reach Caracal at ${target}: ${message}`;
    return `${codeToString(connectError.code)}: ${message}`;
  }
  const reason = ReasonSchema.values.find((value) => value.number === detail.reason)?.name ?? `REASON_${detail.reason}`;
  return `${codeToString(connectError.code)} ${reason}: ${message}`;
}
