import type { ServiceImpl } from "@connectrpc/connect";
import type { AuditService } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import type { AuditDeps } from "./audit-deps.js";
import { explain } from "./explain.js";
import { query } from "./query.js";
import { exportRecords, tail } from "./tail-and-export.js";
import { verifyChain } from "./verify-chain.js";

/** `caracal.audit.v1.AuditService`, over the ledger. */
export function createAuditService(deps: AuditDeps): ServiceImpl<typeof AuditService> {
  return {
    query: (request) => query(deps, request),
    explain: (request) => explain(deps, request),
    tail: (request, ctx) => tail(deps, request, ctx),
    export: (request, ctx) => exportRecords(deps, request, ctx),
    verifyChain: (request) => verifyChain(deps, request),
  };
}
