import { getOption, hasOption, type DescMethod } from "@bufbuild/protobuf";
import { requires } from "../gen/caracal/mandate/v1/options_pb.js";

/** What a method needs from a caller's mandate. */
export type MethodRequirement =
  | { readonly public: true }
  | { readonly public?: false; readonly resource: string; readonly scopes: readonly string[] };

/**
 * Requirements for methods whose proto carries no `caracal.mandate.v1.requires`
 * option, keyed by `package.Service/Method` or by `package.Service` for every
 * method of a service.
 */
export type RequirementMap = Readonly<Record<string, MethodRequirement>>;

const fromProto = new WeakMap<DescMethod, MethodRequirement | null>();

/**
 * The requirement of a method: its proto option first, then the fallback map
 * by method, then by service. Undefined means nothing was declared, which a
 * verifier must treat as deny.
 */
export function requirementOf(method: DescMethod, fallback: RequirementMap = {}): MethodRequirement | undefined {
  let declared = fromProto.get(method);
  if (declared === undefined) {
    declared = null;
    if (hasOption(method, requires)) {
      const option = getOption(method, requires);
      declared = option.public ? { public: true } : { resource: option.resource, scopes: option.scopes };
    }
    fromProto.set(method, declared);
  }
  return declared ?? fallback[`${method.parent.typeName}/${method.name}`] ?? fallback[method.parent.typeName];
}
