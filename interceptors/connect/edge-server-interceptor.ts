import { Code, createContextKey, type Interceptor } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../caracal-error.js";
import { EdgeVerifier, type EdgeVerifierOptions } from "../edge-verifier.js";
import type { MandateClaims } from "../mandate-claims.js";
import { MandateError } from "../mandate-error.js";

/**
 * The verified mandate of the current call, for handlers:
 * `ctx.values.get(verifiedMandateKey)`. Undefined on public methods.
 */
export const verifiedMandateKey = createContextKey<MandateClaims | undefined>(undefined, {
  description: "caracal verified mandate",
});

/**
 * A Connect server interceptor that admits a call only with a mandate meeting
 * the method's declared requirement (deny by default), records every decision,
 * and answers `x-caracal-decision-id`. Refusals are standard codes with a
 * `caracal.errors.v1.ErrorDetail`.
 *
 * @example
 * connectNodeAdapter({
 *   routes,
 *   interceptors: [edgeServerInterceptor({ keys: new JwksCache({ source: httpJwksSource(caracalUrl) }).resolve })],
 * });
 */
export function edgeServerInterceptor(options: EdgeVerifierOptions | EdgeVerifier): Interceptor {
  const verifier = options instanceof EdgeVerifier ? options : new EdgeVerifier(options);
  return (next) => async (req) => {
    let admission;
    try {
      admission = await verifier.check({
        method: req.method,
        authorization: req.header.get("authorization"),
        traceparent: req.header.get("traceparent"),
        requestId: req.header.get("x-request-id") ?? undefined,
      });
    } catch (error) {
      if (error instanceof MandateError) {
        throw caracalError(error.code, error.reason, error.message, { decisionId: error.decisionId, metadata: error.metadata, cause: error });
      }
      // A verifier fault never admits the call, and never says why.
      throw caracalError(Code.Internal, Reason.INTERNAL, "internal error", { cause: error });
    }
    req.contextValues.set(verifiedMandateKey, admission.claims);
    const res = await next(req);
    if (admission.decisionId !== "") res.header.set("x-caracal-decision-id", admission.decisionId);
    return res;
  };
}
