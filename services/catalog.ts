import type { DescService } from "@bufbuild/protobuf";
import { AdminService } from "../gen/caracal/admin/v1/admin_service_pb.js";
import { AuditService } from "../gen/caracal/audit/v1/audit_service_pb.js";
import { ProbeService } from "../gen/caracal/probe/v1/probe_service_pb.js";
import { PolicyService } from "../gen/caracal/policy/v1/policy_service_pb.js";
import { RevocationService } from "../gen/caracal/revocation/v1/revocation_service_pb.js";
import { TokenService } from "../gen/caracal/sts/v1/token_service_pb.js";
import type { ServiceName } from "./config.js";

/** The gRPC service each `--only` name stands for. */
export const SERVICE_CATALOG: Readonly<Record<ServiceName, DescService>> = {
  sts: TokenService,
  policy: PolicyService,
  audit: AuditService,
  revocation: RevocationService,
  admin: AdminService,
  probe: ProbeService,
};
