import type { ServiceImpl } from "@connectrpc/connect";
import type { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { waitApproval } from "../approval/wait-approval.js";
import { exchange } from "./exchange.js";
import { getJwks } from "./get-jwks.js";
import { startSession } from "./start-session.js";
import type { StsDeps } from "./sts-deps.js";

/** The STS's RPCs. */
export function createTokenService(deps: StsDeps, draining: AbortSignal): ServiceImpl<typeof TokenService> {
  return {
    startSession: (request, ctx) => startSession(deps, request, ctx),
    exchange: (request, ctx) => exchange(deps, request, ctx),
    getJwks: (request) => getJwks(deps, request),
    waitApproval: (request, ctx) => waitApproval({ ...deps, draining }, request, ctx),
  };
}
