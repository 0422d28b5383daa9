import type { Interceptor } from "@connectrpc/connect";

/**
 * One interceptor per service: calls to a service named in `routes` go
 * through its interceptor, every other call through `fallback`. How Caracal
 * puts its own admin plane and its built-in probe service behind different
 * edges (admin mandates only, and mandates of any zone).
 */
export function interceptorByService(routes: Readonly<Record<string, Interceptor>>, fallback: Interceptor): Interceptor {
  return (next) => {
    const routed = new Map(Object.entries(routes).map(([service, interceptor]) => [service, interceptor(next)]));
    const other = fallback(next);
    return (req) => (routed.get(req.service.typeName) ?? other)(req);
  };
}
