import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { AuditService } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { ProbeService } from "../../gen/caracal/probe/v1/probe_service_pb.js";
import { PolicyService } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { RevocationService } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { mandateClientInterceptor } from "../../interceptors/connect/mandate-client-interceptor.js";
import { MandateSource } from "../mandate-source.js";

/** The admin application's credential, from the admin profile. */
export interface AdminCredential {
  /** The admin zone. */
  readonly zone: string;
  /** The admin application's client id. */
  readonly clientId: string;
  /** Its client secret. */
  readonly clientSecret: string;
}

/** Typed clients over one HTTP/2 connection to a Caracal server. */
export interface CaracalConnection {
  /** The STS, called without a mandate (its methods are public). */
  readonly sts: Client<typeof TokenService>;
  /** Caracal's built-in probe service, called with whatever mandate the caller puts in the headers. */
  readonly probe: Client<typeof ProbeService>;
  /**
   * The admin plane, or undefined when opened without a credential. Each call
   * carries a resource mandate for `caracal-admin` with exactly the scope its
   * proto declares (`admin.read` for reads, `admin.write` for changes).
   */
  readonly admin: Client<typeof AdminService> | undefined;
  /** The revocation service, with mandates like `admin`; undefined without a credential. */
  readonly revocation: Client<typeof RevocationService> | undefined;
  /** The policy service, with mandates like `admin`; undefined without a credential. */
  readonly policy: Client<typeof PolicyService> | undefined;
  /** The audit service, with mandates like `admin` (`audit.read`); undefined without a credential. */
  readonly audit: Client<typeof AuditService> | undefined;
  /** The mandate source behind `admin`, to sign in before the first call. */
  readonly mandates: MandateSource | undefined;
  /** Closes the connection, so a finished command lets the process exit. */
  close(): void;
}

/**
 * Opens gRPC clients to `target`. Both share one HTTP/2 session, so an admin
 * command costs one connection for its StartSession, Exchange and the call.
 *
 * @example
 * const connection = openCaracalConnection("http://127.0.0.1:7070", { zone: "default", clientId, clientSecret });
 * try { await connection.admin!.listZones({}); } finally { connection.close(); }
 */
export function openCaracalConnection(target: string, credential?: AdminCredential): CaracalConnection {
  const sessionManager = new Http2SessionManager(target);
  const plain = createGrpcTransport({ baseUrl: target, sessionManager });
  const sts = createClient(TokenService, plain);
  const probe = createClient(ProbeService, plain);
  const mandates = credential
    ? new MandateSource({ sts, zone: credential.zone, clientId: credential.clientId, credential: { clientSecret: credential.clientSecret } })
    : undefined;
  const transport = mandates
    ? createGrpcTransport({ baseUrl: target, sessionManager, interceptors: [mandateClientInterceptor(mandates)] })
    : undefined;
  const admin = transport ? createClient(AdminService, transport) : undefined;
  const revocation = transport ? createClient(RevocationService, transport) : undefined;
  const policy = transport ? createClient(PolicyService, transport) : undefined;
  const audit = transport ? createClient(AuditService, transport) : undefined;
  return { sts, probe, admin, revocation, policy, audit, mandates, close: () => sessionManager.abort() };
}
