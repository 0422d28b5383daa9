import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Metadata, ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../caracal-error.js";
import { EdgeVerifier, type EdgeVerifierOptions } from "../edge-verifier.js";
import type { MandateClaims } from "../mandate-claims.js";
import { MandateError } from "../mandate-error.js";
import { grpcStatusOf } from "./grpc-status.js";

// grpc-js hands the handler the metadata object the interceptor passed on,
// so the verified mandate is keyed by it: no global state, no header a
// client could forge.
const verified = new WeakMap<Metadata, MandateClaims>();

/**
 * The verified mandate of a grpc-js call, from inside its handler:
 *
 *   listInvoices(call, callback) { const mandate = verifiedMandate(call); … }
 *
 * Undefined on public methods (and on calls that did not pass the interceptor).
 */
export function verifiedMandate(call: { readonly metadata: Metadata }): MandateClaims | undefined {
  return verified.get(call.metadata);
}

/** Options of the grpc-js {@link edgeServerInterceptor}. */
export interface GrpcEdgeOptions extends EdgeVerifierOptions {
  /** The services served, so each method's proto requirement can be found by its path. */
  readonly services: readonly DescService[];
}

/**
 * A grpc-js `ServerInterceptor` (grpc-js ≥ 1.10) that admits a call only with a
 * mandate meeting the method's declared requirement. Verification runs when
 * the metadata arrives; the handler (and its request message) waits for it, and
 * a refusal ends the call with `sendStatus` and a Caracal `ErrorDetail`.
 *
 * @example
 * const server = new grpc.Server({ interceptors: [edgeServerInterceptor({ services: [BillingService], keys: jwks.resolve })] });
 */
export function edgeServerInterceptor(options: GrpcEdgeOptions | (EdgeVerifier & { services: readonly DescService[] })): ServerInterceptor {
  const verifier = options instanceof EdgeVerifier ? options : new EdgeVerifier(options);
  const methods = new Map<string, DescMethod>();
  for (const service of options.services) for (const method of service.methods) methods.set(`/${service.typeName}/${method.name}`, method);

  return (descriptor, call) => {
    let decisionId = "";
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, proceed) {
            verifier
              .check({
                method: methods.get(descriptor.path) ?? methodName(descriptor.path),
                authorization: single(metadata, "authorization"),
                traceparent: single(metadata, "traceparent"),
                requestId: single(metadata, "x-request-id") ?? undefined,
              })
              .then(
                (admission) => {
                  decisionId = admission.decisionId;
                  if (admission.claims) verified.set(metadata, admission.claims);
                  proceed(metadata);
                },
                (error: unknown) => {
                  const refusal =
                    error instanceof MandateError
                      ? caracalError(error.code, error.reason, error.message, { decisionId: error.decisionId, metadata: error.metadata })
                      : caracalError(Code.Internal, Reason.INTERNAL, "internal error");
                  call.sendStatus(grpcStatusOf(refusal));
                },
              );
          },
        });
      },
      sendMetadata(metadata, next) {
        if (decisionId !== "") metadata.set("x-caracal-decision-id", decisionId);
        next(metadata);
      },
    });
  };
}

/** A method outside the given services, by name: only the requirement map can admit it. */
function methodName(path: string): { service: string; name: string } {
  const [, service = "", name = ""] = path.split("/");
  return { service, name };
}

/** One string value of a metadata key; null when absent, repeated or binary (all suspicious for these keys). */
function single(metadata: Metadata, key: string): string | null {
  const values = metadata.get(key);
  return values.length === 1 && typeof values[0] === "string" ? values[0] : null;
}
