import type { DescService } from "@bufbuild/protobuf";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";

/**
 * Completes a partial implementation: every method it lacks answers
 * `UNIMPLEMENTED` with `REASON_NOT_IMPLEMENTED`, so the whole API is routable
 * (and discoverable) while handlers are still being written.
 */
export function withUnimplemented<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): ServiceImpl<S> {
  const complete: Record<string, unknown> = { ...impl };
  for (const method of service.methods) {
    if (complete[method.localName] !== undefined) continue;
    const refuse = () =>
      caracalError(Code.Unimplemented, Reason.NOT_IMPLEMENTED, `${service.typeName}/${method.name} is not implemented yet`);
    complete[method.localName] =
      method.methodKind === "unary"
        ? async () => {
            throw refuse();
          }
        : async function* () {
            throw refuse();
          };
  }
  return complete as ServiceImpl<S>;
}
