import type { Interceptor } from "@connectrpc/connect";
import { requirementOf, type RequirementMap } from "../method-requirement.js";
import type { ClientInterceptorOptions, MandateProvider } from "../mandate-provider.js";

/**
 * A Connect client interceptor that attaches `authorization: Bearer <mandate>`
 * to every call whose method requires one, asking the provider for exactly
 * the resource and scopes the method declares in its proto, and propagates
 * `traceparent`.
 *
 * @example
 * const transport = createGrpcTransport({ baseUrl, interceptors: [mandateClientInterceptor(source)] });
 */
export function mandateClientInterceptor(
  provider: MandateProvider,
  options: ClientInterceptorOptions & { requirements?: RequirementMap } = {},
): Interceptor {
  return (next) => async (req) => {
    const requirement = requirementOf(req.method, options.requirements);
    if (requirement && !requirement.public) {
      req.header.set("authorization", `Bearer ${await provider.mandateFor(requirement.resource, requirement.scopes)}`);
    }
    const traceparent = options.traceparent?.();
    if (traceparent !== undefined && !req.header.has("traceparent")) req.header.set("traceparent", traceparent);
    return next(req);
  };
}
