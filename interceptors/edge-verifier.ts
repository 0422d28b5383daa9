import { randomUUID } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { AuditDecision, EventType } from "../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import type { AuditEventInit, AuditSink } from "./audit-sink.js";
import { actorsOf } from "./delegation-chain.js";
import { MAX_MANDATE_BYTES, ZONE_PATTERN, type MandateClaims } from "./mandate-claims.js";
import { MandateError } from "./mandate-error.js";
import { requirementOf, type MethodRequirement, type RequirementMap } from "./method-requirement.js";
import { covers, type RevocationView } from "./revocation-view.js";
import { VerifiedMandateCache } from "./verified-mandate-cache.js";
import { checkAuthority, verifyMandate, type MandateKeyResolver } from "./verify-mandate.js";

/** Options of {@link EdgeVerifier}. */
export interface EdgeVerifierOptions {
  /** Zone keys: a `JwksCache.resolve`, or the STS's own key ring. */
  readonly keys: MandateKeyResolver;
  /** Revocations to honour. Without one, nothing is revoked (say so in your deployment). */
  readonly revocations?: RevocationView;
  /** Where every decision goes. */
  readonly audit?: AuditSink;
  /**
   * Refuse calls (UNAVAILABLE, REASON_AUDIT_UNAVAILABLE) when the audit sink
   * cannot take the decision, rather than act unrecorded. Default true.
   */
  readonly requireAudit?: boolean;
  /** Zones accepted; any when unset. */
  readonly allowedZones?: readonly string[];
  /** Requirements for methods without the proto option, by `pkg.Service/Method` or `pkg.Service`. */
  readonly requirements?: RequirementMap;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  /** Leeway for time claims, seconds (default 5). */
  readonly clockToleranceSeconds?: number;
  /** Largest token accepted, bytes (default 8 KiB). */
  readonly maxTokenBytes?: number;
  /** Verified mandates kept (default 10,000); 0 turns the cache off. */
  readonly cacheSize?: number;
}

/** A method known only by name (a service without protobuf-es descriptors): only the requirement map applies. */
export interface MethodName {
  /** Fully qualified service name, e.g. `acme.billing.v1.BillingService`. */
  readonly service: string;
  /** Method name, e.g. `ListInvoices`. */
  readonly name: string;
}

/** What the verifier needs to know about one call. */
export interface EdgeCall {
  /** The method called: its descriptor (which carries the requirement option), or its name. */
  readonly method: DescMethod | MethodName;
  /** The `authorization` metadata, or null. */
  readonly authorization: string | null;
  /** The `traceparent` metadata, or null. */
  readonly traceparent?: string | null;
  /** The caller's request id, if any. */
  readonly requestId?: string;
}

/** An admitted call. */
export interface EdgeAdmission {
  /** The decision id (empty for public methods, which make no decision). */
  readonly decisionId: string;
  /** The verified mandate (undefined for public methods). */
  readonly claims: MandateClaims | undefined;
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]+)$/;

/**
 * The transport-free core of every server interceptor: finds the method's
 * requirement (deny by default), reads the bearer mandate, verifies it (or
 * finds it in the cache of verified mandates), checks this call's authority
 * and the revocation view, and records the decision. Adapters for Connect and
 * grpc-js only translate metadata in and errors out.
 *
 * @example
 * const verifier = new EdgeVerifier({ keys: jwks.resolve, revocations, audit });
 * const { claims, decisionId } = await verifier.check({ method, authorization: header });
 */
export class EdgeVerifier {
  readonly #options: EdgeVerifierOptions;
  readonly #now: () => number;
  readonly #cache: VerifiedMandateCache | undefined;
  // A method's requirement never changes: resolved once per method, not per call.
  readonly #requirements = new WeakMap<DescMethod, MethodRequirement | null>();
  readonly #unsubscribe: (() => void) | undefined;

  constructor(options: EdgeVerifierOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    const size = options.cacheSize ?? 10_000;
    this.#cache = size > 0 ? new VerifiedMandateCache(size) : undefined;
    // A revoked mandate must not be served from the cache for one more call.
    this.#unsubscribe = options.revocations?.onRevocation((entry) => this.#cache?.deleteWhere((claims) => covers(entry, claims)));
  }

  /**
   * Admits the call or throws a {@link MandateError} (with its decision id
   * when recorded). Never throws anything else for a bad token.
   */
  async check(call: EdgeCall): Promise<EdgeAdmission> {
    const requirement = this.#requirementOf(call.method);
    if (requirement?.public) return { decisionId: "", claims: undefined };
    const decisionId = randomUUID();
    let claims: MandateClaims | undefined;
    try {
      if (requirement === undefined) {
        throw new MandateError(Reason.METHOD_NOT_DECLARED, `${serviceOf(call.method)}/${call.method.name} declares no requirement`);
      }
      const verified = await this.#verify(call.authorization, requirement);
      claims = verified.claims;
      if (this.#options.revocations?.isRevoked(claims)) throw new MandateError(Reason.MANDATE_REVOKED, "mandate was revoked");
      // Cached only once it passed the revocation check: a revoked mandate a
      // client keeps retrying would otherwise grow the cache every revocation scans.
      if (verified.token !== undefined) this.#cache?.set(verified.token, claims);
    } catch (error) {
      if (!(error instanceof MandateError)) throw error;
      this.#record(call, decisionId, claims ?? error.verifiedClaims, requirement, AuditDecision.DENY, error.reason, error.metadata);
      throw error.withDecision(decisionId);
    }
    if (!this.#record(call, decisionId, claims, requirement, AuditDecision.ALLOW, Reason.UNSPECIFIED) && this.#options.requireAudit !== false) {
      throw new MandateError(Reason.AUDIT_UNAVAILABLE, "audit sink is full; refusing rather than act unrecorded", {}, { decisionId });
    }
    return { decisionId, claims };
  }

  /** Stops listening to the revocation view (a verifier that is done with a shared view). */
  close(): void {
    this.#unsubscribe?.();
  }

  #requirementOf(method: DescMethod | MethodName): MethodRequirement | undefined {
    if (!("kind" in method)) return requirementFor(method, this.#options.requirements);
    let requirement = this.#requirements.get(method);
    if (requirement === undefined) {
      requirement = requirementFor(method, this.#options.requirements) ?? null;
      this.#requirements.set(method, requirement);
    }
    return requirement ?? undefined;
  }

  /** The claims, with the token when they were verified now (not found in the cache). */
  async #verify(
    authorization: string | null,
    requirement: Exclude<MethodRequirement, { public: true }>,
  ): Promise<{ claims: MandateClaims; token?: string }> {
    // Freshness first: a verifier that cannot vouch for its revocation view refuses everything.
    this.#options.revocations?.assertFresh(this.#now());
    if (authorization === null) throw new MandateError(Reason.MANDATE_MISSING, "no mandate: send authorization: Bearer <mandate>");
    if (authorization.length > (this.#options.maxTokenBytes ?? MAX_MANDATE_BYTES) + 7) {
      throw new MandateError(Reason.MANDATE_TOO_LARGE, "authorization metadata is too large");
    }
    const token = BEARER.exec(authorization)?.[1];
    if (token === undefined) throw new MandateError(Reason.MANDATE_MALFORMED, "authorization is not a Bearer token");
    const authority = { use: "resource" as const, resource: requirement.resource, scopes: requirement.scopes, allowedZones: this.#options.allowedZones };
    const cached = this.#cache?.get(token, this.#now());
    if (cached) {
      try {
        checkAuthority(cached, authority);
      } catch (error) {
        throw error instanceof MandateError ? error.withClaims(cached) : error;
      }
      return { claims: cached };
    }
    const claims = await verifyMandate(token, {
      ...authority,
      keys: this.#options.keys,
      now: this.#now,
      clockToleranceSeconds: this.#options.clockToleranceSeconds,
      maxTokenBytes: this.#options.maxTokenBytes,
    });
    return { claims, token };
  }

  #record(
    call: EdgeCall,
    decisionId: string,
    claims: MandateClaims | undefined,
    requirement: MethodRequirement | undefined,
    decision: AuditDecision,
    reason: Reason,
    facts: Readonly<Record<string, string>> = {},
  ): boolean {
    const sink = this.#options.audit;
    // A refusal before verification is filed under the zone the token claims,
    // if this verifier accepts that zone at all; an unreadable token has no ledger.
    const claimed = claims === undefined ? zoneOfUnverified(call.authorization) : undefined;
    const allowed = this.#options.allowedZones;
    const zone = claims?.zone ?? (claimed !== undefined && (!allowed || allowed.includes(claimed)) ? claimed : undefined);
    if (!sink || zone === undefined) return sink === undefined;
    const event: AuditEventInit = {
      zone,
      type: EventType.EDGE_CALL,
      decision,
      reason,
      decisionId,
      requestId: call.requestId ?? "",
      traceId: traceIdOf(call.traceparent ?? null),
      edgeService: serviceOf(call.method),
      edgeMethod: call.method.name,
      resources: requirement && !requirement.public ? [requirement.resource] : [],
      scopes: requirement && !requirement.public ? [...requirement.scopes] : [],
      attributes: { ...facts },
      ...(claims
        ? {
            clientId: claims.client_id,
            subject: claims.sub,
            sessionId: claims.sid,
            rootSessionId: claims.root_sid,
            mandateId: claims.jti,
            policySetVersion: BigInt(claims.policy_set_version),
            delegationChain: actorsOf(claims.act),
          }
        : {}),
    };
    return sink.record(event);
  }
}

function serviceOf(method: DescMethod | MethodName): string {
  return "kind" in method ? method.parent.typeName : method.service;
}

function requirementFor(method: DescMethod | MethodName, requirements: RequirementMap = {}): MethodRequirement | undefined {
  if ("kind" in method) return requirementOf(method, requirements);
  return requirements[`${method.service}/${method.name}`] ?? requirements[method.service];
}

/** The zone a token claims, read only to file a refusal; undefined when unreadable. */
function zoneOfUnverified(authorization: string | null): string | undefined {
  const payload = authorization?.split(".")[1];
  if (payload === undefined || payload.length > MAX_MANDATE_BYTES) return undefined;
  try {
    const zone: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")).zone;
    return typeof zone === "string" && ZONE_PATTERN.test(zone) ? zone : undefined;
  } catch {
    return undefined;
  }
}

/** The trace id of a W3C `traceparent`, or "". */
export function traceIdOf(traceparent: string | null): string {
  const match = traceparent === null ? null : /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent);
  return match?.[1] ?? "";
}
