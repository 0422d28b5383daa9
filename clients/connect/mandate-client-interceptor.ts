import type { Interceptor } from "@connectrpc/connect";
import { requirementOf, type RequirementMap } from "../../interceptors/method-requirement.js";
import type { MandateSource } from "../mandate-source.js";

/**
 * A Connect client interceptor that attaches `authorization: Bearer <mandate>`
 * to every call whose method requires one, asking the {@link MandateSource}
 * for exactly the resource and scopes the method declares in its proto.
 *
 * @example
 * const transport = createGrpcTransport({ baseUrl, interceptors: [mandateClientInterceptor(source)] });
 */
export function mandateClientInterceptor(source: MandateSource, requirements?: RequirementMap): Interceptor {
  return (next) => async (req) => {
    const requirement = requirementOf(req.method, requirements);
    if (requirement && !requirement.public) {
      req.header.set("authorization", `Bearer ${await source.mandateFor(requirement.resource, requirement.scopes)}`);
    }
    return next(req);
  };
}
