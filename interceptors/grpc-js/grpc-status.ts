import { ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { Metadata, type StatusObject, type status } from "@grpc/grpc-js";

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
