import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";

/** Optional facts carried beside the reason. */
export interface CaracalErrorOptions {
  /** The audit decision id, when the refusal was recorded. */
  readonly decisionId?: string;
  /** Non-secret facts a client may use, e.g. the offending `field`. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** The underlying cause: kept for logs, never sent. */
  readonly cause?: unknown;
  /** Further details sent beside the ErrorDetail, e.g. an `ApprovalChallenge`. */
  readonly details?: readonly OutgoingDetail[];
}

/** A protobuf message sent as an error detail. */
export type OutgoingDetail = ConstructorParameters<typeof ConnectError>[3] extends (infer D)[] | undefined ? D : never;

/**
 * Builds the one error shape Caracal puts on the wire: a gRPC code plus a
 * `caracal.errors.v1.ErrorDetail` with a stable reason. Clients branch on the
 * reason; the message is for people.
 *
 * @example
 * throw caracalError(Code.InvalidArgument, Reason.INVALID_ARGUMENT, "zone must match ^[a-z0-9-]{1,63}$", {
 *   metadata: { field: "zone" },
 * });
 */
export function caracalError(
  code: Code,
  reason: Reason,
  message: string,
  options: CaracalErrorOptions = {},
): ConnectError {
  const detail = create(ErrorDetailSchema, {
    reason,
    decisionId: options.decisionId ?? "",
    metadata: { ...options.metadata },
  });
  return new ConnectError(message, code, undefined, [{ desc: ErrorDetailSchema, value: detail }, ...(options.details ?? [])], options.cause);
}

/**
 * Reads the Caracal reason from any error: a `ConnectError` from a Connect
 * client or handler. Returns `Reason.UNSPECIFIED` when there is none.
 *
 * @example
 * if (reasonOf(err) === Reason.MANDATE_EXPIRED) await refreshMandate();
 */
export function reasonOf(error: unknown): Reason {
  return errorDetailOf(error)?.reason ?? Reason.UNSPECIFIED;
}

/** The first `ErrorDetail` on an error, if any. */
export function errorDetailOf(error: unknown) {
  const connectError = ConnectError.from(error);
  return connectError.findDetails(ErrorDetailSchema)[0];
}
