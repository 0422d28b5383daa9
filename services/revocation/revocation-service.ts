import type { ServiceImpl } from "@connectrpc/connect";
import type { RevocationService } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { listRevocations } from "./list-revocations.js";
import type { RevocationDeps } from "./revocation-deps.js";
import { revoke } from "./revoke.js";
import { watch } from "./watch.js";

/** `caracal.revocation.v1.RevocationService`. */
export function createRevocationService(deps: RevocationDeps): Partial<ServiceImpl<typeof RevocationService>> {
  return {
    revoke: (request, ctx) => revoke(deps, request, ctx),
    listRevocations: (request) => listRevocations(deps, request),
    watch: (request, ctx) => watch(deps, request, ctx),
  };
}
