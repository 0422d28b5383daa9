import { ConnectError } from "@connectrpc/connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { Metadata, type ServiceError, type StatusObject, type status } from "@grpc/grpc-js";
import type { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { reasonOf } from "../caracal-error.js";

/**
 * A ConnectError as grpc-js sends it: code, message, and the error details in
 * `grpc-status-details-bin` (a `google.rpc.Status`), so every gRPC client,
 * in any language, can read the Caracal `ErrorDetail`.
 */
export function grpcStatusOf(error: unknown): StatusObject {
  const connectError = ConnectError.from(error);
  const trailer = new Headers();
  setTrailerStatus(trailer, connectError);
  // grpc-js writes these two itself from code and details.
  trailer.delete("grpc-status");
  trailer.delete("grpc-message");
  return { code: connectError.code as number as status, details: connectError.rawMessage, metadata: headersToMetadata(trailer) };
}

/** Fetch-style headers as grpc-js metadata; `-bin` values travel base64 in headers and raw in metadata. */
export function headersToMetadata(headers: Headers): Metadata {
  const metadata = new Metadata();
  headers.forEach((value, key) => metadata.add(key, key.endsWith("-bin") ? Buffer.from(value, "base64") : value));
  return metadata;
}

/**
 * The Caracal reason of an error a grpc-js client received, read from its
 * `grpc-status-details-bin`; `Reason.UNSPECIFIED` when there is none.
 *
 * @example
 * if (grpcReasonOf(error) === Reason.SCOPE_MISSING) …
 */
export function grpcReasonOf(error: ServiceError): Reason {
  const trailer = new Headers({ "grpc-status": String(error.code), "grpc-message": encodeURIComponent(error.details) });
  for (const [key, value] of Object.entries(error.metadata.getMap())) {
    trailer.set(key, Buffer.isBuffer(value) ? value.toString("base64") : value);
  }
  return reasonOf(findTrailerError(trailer));
}
