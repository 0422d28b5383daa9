import { Code, createContextKey, type Interceptor } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../caracal-error.js";
import type { MandateClaims } from "../mandate-claims.js";
import { MandateError } from "../mandate-error.js";
import { requirementOf, type RequirementMap } from "../method-requirement.js";
import { verifyMandate, type MandateKeyResolver } from "../verify-mandate.js";

/**
 * The verified mandate of the current call, for handlers:
 * `ctx.values.get(verifiedMandateKey)`. Undefined on public methods.
 */
export const verifiedMandateKey = createContextKey<MandateClaims | undefined>(undefined, {
  description: "caracal verified mandate",
});

/** Options of {@link mandateServerInterceptor}. */
export interface MandateServerInterceptorOptions {
  /** Where zone keys come from. */
  readonly keys: MandateKeyResolver;
  /** Zones whose mandates are accepted; any when unset. */
  readonly allowedZones?: readonly string[];
  /** Requirements for methods without the proto option. */
  readonly requirements?: RequirementMap;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  /** Leeway for time claims, seconds. */
  readonly clockToleranceSeconds?: number;
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]+)$/;

/**
 * A Connect server interceptor that admits a call only with a resource
 * mandate meeting the method's declared requirement; methods that declare
 * none are refused (deny by default) unless marked public.
 *
 * @example
 * connectNodeAdapter({ routes, interceptors: [mandateServerInterceptor({ keys: jwks.resolve })] });
 */
export function mandateServerInterceptor(options: MandateServerInterceptorOptions): Interceptor {
  return (next) => async (req) => {
    const requirement = requirementOf(req.method, options.requirements);
    if (requirement === undefined) {
      throw caracalError(Code.PermissionDenied, Reason.METHOD_NOT_DECLARED, `${req.service.typeName}/${req.method.name} declares no requirement`);
    }
    if (requirement.public) return next(req);
    const header = req.header.get("authorization");
    if (header === null) throw caracalError(Code.Unauthenticated, Reason.MANDATE_MISSING, "no mandate: send authorization: Bearer <mandate>");
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) throw caracalError(Code.Unauthenticated, Reason.MANDATE_MALFORMED, "authorization is not a Bearer token");
    try {
      const claims = await verifyMandate(token, {
        keys: options.keys,
        use: "resource",
        resource: requirement.resource,
        scopes: requirement.scopes,
        allowedZones: options.allowedZones,
        now: options.now,
        clockToleranceSeconds: options.clockToleranceSeconds,
      });
      req.contextValues.set(verifiedMandateKey, claims);
    } catch (error) {
      if (error instanceof MandateError) {
        throw caracalError(error.code, error.reason, error.message, { metadata: error.metadata, cause: error });
      }
      throw error;
    }
    return next(req);
  };
}
