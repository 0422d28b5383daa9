/**
 * The audit traffic of bench/audit: agents at work in four zones, as the STS
 * and the edge verifiers record it. The applications, their usual calls and
 * the resources are bench/policy's realistic set; each zone runs all of them.
 *
 * Traffic comes in flows. A flow is one `Exchange` at the STS (allowed, or
 * denied for a scope not granted, a policy, an expired or a revoked session)
 * and, when allowed, one to three calls at the resource's edge with the
 * mandate it issued (allowed, or denied for a scope the mandate lacks). The
 * agent forwards its `x-request-id` and `traceparent` to the service, so the
 * events of a flow share a request id and a trace id; every event has its own
 * decision id. Fields are filled as services/sts/decision.ts and
 * interceptors/edge-verifier.ts fill them, and encoded as
 * interceptors/publishing-audit-sink.ts encodes them.
 *
 * The mix (which application, call, outcome, how many edge calls) comes from
 * a seeded PRNG; ids are random UUIDs, as in production.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { AuditDecision, AuditEventSchema, EventType } from "../../gen/caracal/audit/v1/audit_event_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { AuditEventInit } from "../../interceptors/audit-sink.js";
import type { IncomingEvent } from "../../services/audit/audit-ledger.js";
import { applications, realisticPolicySource, resources, type BenchApplication, type BenchCall } from "../policy/realistic-set.js";
import { mulberry32, oneOf, pick } from "../support/seeded-random.js";

/** The zones, with their share of the traffic. */
export const ZONES: readonly (readonly [zone: string, share: number])[] = [
  ["acme", 0.5],
  ["globex", 0.25],
  ["initech", 0.15],
  ["umbrella", 0.1],
];

/** An encoded event, with the request id its flow shares. */
export interface TrafficEvent extends IncomingEvent {
  readonly requestId: string;
  /** True for the first event of a flow (its `Exchange`): one per request id. */
  readonly opensFlow: boolean;
}


interface Session {
  readonly app: BenchApplication;
  readonly sessionId: string;
  readonly rootSessionId: string;
  readonly delegationChain: NonNullable<AuditEventInit["delegationChain"]>;
}

interface ZoneState {
  readonly zone: string;
  readonly sessions: Session[];
  policySetVersion: bigint;
}

const LIVE_SESSIONS_PER_ZONE = 64;
const POLICY_IDS = realisticPolicySource.documents.flatMap((doc) => [...doc.text.matchAll(/@id\("([^"]+)"\)/g)].map((m) => m[1]!));
const SCOPES_OF = new Map(resources.map((r) => [r.id, r.scopes]));
const TEAM_OF = new Map(resources.map((r) => [r.id, r.team]));

/**
 * An endless stream of encoded audit events, in the order producers publish
 * them. Event times start at `startMicros` and advance by `gapMicros` per
 * event on average.
 */
export class AuditTraffic {
  readonly #random: () => number;
  readonly #zones: ZoneState[];
  readonly #gapMicros: number;
  #clockMicros: number;
  readonly #pending: TrafficEvent[] = [];

  readonly #timeOrderedIds: boolean;

  /**
   * @param options.timeOrderedIds - the ids Caracal makes (event, decision,
   *   mandate) as UUIDv7, which begin with their time, instead of random
   *   UUIDs (what Caracal makes today): to measure what index locality would
   *   gain. Request ids stay random: agents choose them.
   */
  constructor(options: { seed: number; startMicros: number; gapMicros: number; timeOrderedIds?: boolean }) {
    this.#timeOrderedIds = options.timeOrderedIds ?? false;
    this.#random = mulberry32(options.seed);
    this.#clockMicros = options.startMicros;
    this.#gapMicros = options.gapMicros;
    this.#zones = ZONES.map(([zone]) => ({
      zone,
      sessions: Array.from({ length: LIVE_SESSIONS_PER_ZONE }, () => this.#newSession()),
      policySetVersion: BigInt(3 + Math.floor(this.#random() * 20)),
    }));
  }

  /** The next event. */
  next(): TrafficEvent {
    if (this.#pending.length === 0) this.#flow();
    return this.#pending.shift()!;
  }

  /** The next `count` events. */
  take(count: number): TrafficEvent[] {
    return Array.from({ length: count }, () => this.next());
  }

  #flow(): void {
    const random = this.#random;
    const state = this.#zones[zoneIndex(random())]!;
    const slot = Math.floor(random() * state.sessions.length);
    // Sessions end and new ones start: about 40 flows per session.
    if (random() < 1 / 40) state.sessions[slot] = this.#newSession();
    if (random() < 1e-5) state.policySetVersion++;
    const session = state.sessions[slot]!;
    const usual = random() < 0.85;
    const call: BenchCall = usual ? oneOf(random, session.app.calls) : anyCall(random);
    const resourceScopes = SCOPES_OF.get(call.resource) ?? [call.scope];
    const scopes = [call.scope];
    if (random() < 0.3) {
      const other = oneOf(random, resourceScopes);
      if (other !== call.scope) scopes.push(other);
    }

    const requestId = randomUUID();
    const traceId = randomUUID().replaceAll("-", "");
    const exchangeMicros = this.#tick(2.5);
    const base: AuditEventInit = { zone: state.zone, requestId, traceId, resources: [call.resource], scopes };
    const sessionFacts: Partial<AuditEventInit> = {
      clientId: session.app.clientId,
      subject: session.app.clientId,
      sessionId: session.sessionId,
      rootSessionId: session.rootSessionId,
      delegationChain: session.delegationChain,
    };
    const exchange: AuditEventInit = { ...base, type: EventType.EXCHANGE, decisionId: this.#id(), time: timestamp(exchangeMicros) };

    const outcome = usual
      ? pick(random, [["allow", 0.945], ["policy", 0.04], ["expired", 0.01], ["revoked", 0.005]] as const)
      : "not-granted";
    switch (outcome) {
      case "not-granted":
        this.#emit(
          { ...exchange, ...sessionFacts, decision: AuditDecision.DENY, reason: Reason.SCOPE_NOT_GRANTED, attributes: { resource: call.resource, scope: call.scope } },
          requestId,
          true,
        );
        return;
      case "policy":
        this.#emit(
          {
            ...exchange,
            ...sessionFacts,
            decision: AuditDecision.DENY,
            reason: Reason.POLICY_DENIED,
            policySetVersion: state.policySetVersion,
            determiningPolicies: [oneOf(random, POLICY_IDS)],
            attributes: { resource: call.resource, scope: call.scope },
          },
          requestId,
          true,
        );
        return;
      case "expired":
        // Refused while verifying the subject token: nothing about the session is known yet.
        this.#emit({ ...exchange, decision: AuditDecision.DENY, reason: Reason.MANDATE_EXPIRED }, requestId, true);
        return;
      case "revoked":
        this.#emit({ ...exchange, ...sessionFacts, decision: AuditDecision.DENY, reason: Reason.MANDATE_REVOKED }, requestId, true);
        return;
      case "allow":
        break;
    }

    const mandateId = this.#id();
    this.#emit(
      {
        ...exchange,
        ...sessionFacts,
        decision: AuditDecision.ALLOW,
        policySetVersion: state.policySetVersion,
        determiningPolicies: random() < 0.7 ? [oneOf(random, POLICY_IDS)] : [],
        mandateId,
      },
      requestId,
      true,
    );
    const calls = pick(random, [[1, 0.5], [2, 0.3], [3, 0.2]] as const);
    let edgeMicros = exchangeMicros;
    for (let i = 0; i < calls; i++) {
      edgeMicros += 1_000 + Math.floor(random() * 40_000);
      // Calling a method that needs a scope the mandate was not issued for.
      const missing = random() < 0.05 ? resourceScopes.find((scope) => !scopes.includes(scope)) : undefined;
      const scope = missing ?? oneOf(random, scopes);
      this.#emit(
        {
          zone: state.zone,
          type: EventType.EDGE_CALL,
          decision: missing ? AuditDecision.DENY : AuditDecision.ALLOW,
          reason: missing ? Reason.SCOPE_MISSING : Reason.UNSPECIFIED,
          decisionId: this.#id(),
          requestId,
          traceId,
          time: timestamp(edgeMicros),
          edgeService: serviceName(call.resource),
          edgeMethod: methodName(scope),
          resources: [call.resource],
          scopes: [scope],
          attributes: missing ? { scope: missing } : {},
          ...sessionFacts,
          mandateId,
          policySetVersion: state.policySetVersion,
        },
        requestId,
        false,
      );
    }
  }

  #emit(init: AuditEventInit, requestId: string, opensFlow: boolean): void {
    const data = toBinary(AuditEventSchema, create(AuditEventSchema, { eventId: this.#id(), ...init }));
    this.#pending.push({ zone: init.zone, data, requestId, opensFlow });
  }

  /** Moves the clock on by about `events` events' worth of time. */
  #tick(events: number): number {
    this.#clockMicros += Math.floor(this.#random() * 2 * events * this.#gapMicros);
    return this.#clockMicros;
  }

  /** An id Caracal makes: random, or (UUIDv7) the traffic's clock in milliseconds, then random bits. */
  #id(): string {
    if (!this.#timeOrderedIds) return randomUUID();
    const bytes = randomBytes(16);
    bytes.writeUIntBE(Math.floor(this.#clockMicros / 1000), 0, 6);
    bytes[6] = (bytes[6]! & 0x0f) | 0x70;
    bytes[8] = (bytes[8]! & 0x3f) | 0x80;
    const hex = bytes.toString("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  #newSession(): Session {
    const random = this.#random;
    const app = oneOf(random, applications);
    const sessionId = randomUUID();
    // A delegated session: another application acts for this one, under its own root.
    if (random() < 0.15) {
      const actor = oneOf(random, applications);
      return {
        app,
        sessionId,
        rootSessionId: randomUUID(),
        delegationChain: [{ clientId: actor.clientId, subject: actor.clientId, sessionId: randomUUID() }],
      };
    }
    return { app, sessionId, rootSessionId: sessionId, delegationChain: [] };
  }
}

function zoneIndex(r: number): number {
  for (let i = 0; i < ZONES.length; i++) {
    r -= ZONES[i]![1];
    if (r < 0) return i;
  }
  return ZONES.length - 1;
}

function anyCall(random: () => number): BenchCall {
  const resource = oneOf(random, resources);
  return { resource: resource.id, scope: oneOf(random, resource.scopes) };
}

function timestamp(micros: number) {
  return { seconds: BigInt(Math.floor(micros / 1_000_000)), nanos: (micros % 1_000_000) * 1_000 };
}

/** `billing-api` → `acme.billing.v1.BillingApiService`. */
function serviceName(resource: string): string {
  return `acme.${TEAM_OF.get(resource) ?? "shared"}.v1.${resource.split("-").map(capitalised).join("")}Service`;
}

/** `invoices.write` → `WriteInvoices`. */
function methodName(scope: string): string {
  const [noun = "", verb = ""] = scope.split(".");
  return capitalised(verb) + capitalised(noun);
}

function capitalised(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
