import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ApprovalState } from "../../gen/caracal/approval/v1/approval_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import {
  Decision,
  type AuthorizationRequest,
  type AuthorizationRequestSchema,
  type OutcomeSchema,
  type PolicyProblemSchema,
  type PolicySource,
} from "../../gen/caracal/policy/v1/policy_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { boundedText, identifier, invalidArgument, labels, SCOPE_PATTERN } from "../validation.js";
import {
  START_SESSION_ACTION,
  START_SESSION_RESOURCE,
  type ApprovalStateName,
  type AuthorizationRequestInput,
  type OutcomeInfo,
  type PolicyDecision,
  type PolicyEngine,
  type PolicyProblemInfo,
  type PolicySourceInput,
} from "./policy-engine.js";

const MAX_DOCUMENTS = 100;
const MAX_SOURCE_BYTES = 1024 * 1024;
const MAX_SCHEMA_BYTES = 256 * 1024;
const DOCUMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_CHAIN = 16;

/** A policy source from the API, checked for shape and size (not yet for meaning). */
export function sourceFromProto(source: PolicySource | undefined, field = "source"): PolicySourceInput {
  if (!source || source.documents.length === 0) throw invalidArgument(`${field}.documents`, "give at least one policy document");
  if (source.documents.length > MAX_DOCUMENTS) throw invalidArgument(`${field}.documents`, `at most ${MAX_DOCUMENTS} documents`);
  const names = new Set<string>();
  let bytes = 0;
  for (const doc of source.documents) {
    if (!DOCUMENT_NAME.test(doc.name)) throw invalidArgument(`${field}.documents.name`, `must match ${DOCUMENT_NAME.source}, got ${JSON.stringify(doc.name.slice(0, 140))}`);
    if (names.has(doc.name)) throw invalidArgument(`${field}.documents.name`, `${doc.name} appears twice`);
    names.add(doc.name);
    bytes += Buffer.byteLength(doc.text, "utf8");
  }
  if (bytes > MAX_SOURCE_BYTES) throw invalidArgument(`${field}.documents`, `at most ${MAX_SOURCE_BYTES} bytes of policy text`);
  if (Buffer.byteLength(source.schema, "utf8") > MAX_SCHEMA_BYTES) throw invalidArgument(`${field}.schema`, `at most ${MAX_SCHEMA_BYTES} bytes`);
  return {
    documents: source.documents.map((d) => ({ name: d.name, text: d.text })),
    ...(source.schema.trim() !== "" ? { schema: source.schema } : {}),
  };
}

/**
 * A policy-set version number from the API: a stored version (1 or more),
 * or, where 0 has a meaning (`zeroMeans`), 0 or more.
 */
export function versionNumber(value: bigint, field: string, zeroMeans?: string): number {
  const version = Number(value);
  if (zeroMeans === undefined ? version <= 0 : version < 0) {
    throw invalidArgument(field, zeroMeans === undefined ? "must be a stored version (1 or more)" : `must not be negative (0 means ${zeroMeans})`);
  }
  return version;
}

/**
 * Refuses a source with syntax or schema problems: INVALID_ARGUMENT,
 * `REASON_POLICY_INVALID`, with the first problem's position in the metadata
 * (`ValidatePolicySet` lists them all).
 */
export function requireValid(engine: PolicyEngine, source: PolicySourceInput): void {
  const problems = engine.validate(source);
  const first = problems[0];
  if (!first) return;
  throw caracalError(
    Code.InvalidArgument,
    Reason.POLICY_INVALID,
    `policy set has ${problems.length} problem${problems.length === 1 ? "" : "s"}; first: ${first.document || "schema"}:${first.line}:${first.column}: ${first.message}`,
    {
      metadata: {
        problems: String(problems.length),
        document: first.document,
        policy_id: first.policyId,
        line: String(first.line),
        column: String(first.column),
      },
    },
  );
}

/** A problem as the API shows it. */
export function problemMessage(p: PolicyProblemInfo): MessageInitShape<typeof PolicyProblemSchema> {
  return { document: p.document, policyId: p.policyId, line: p.line, column: p.column, message: p.message, schemaError: p.schemaError };
}

const APPROVAL_STATES: Record<ApprovalState, ApprovalStateName> = {
  [ApprovalState.UNSPECIFIED]: "unspecified",
  [ApprovalState.PENDING]: "pending",
  [ApprovalState.APPROVED]: "approved",
  [ApprovalState.REJECTED]: "rejected",
  [ApprovalState.EXPIRED]: "expired",
  [ApprovalState.USED]: "used",
};

/**
 * An authorization request from the API, validated. An unset time is `nowMs`.
 * The session question is asked with scope `StartSession` (its resource may
 * be left empty).
 */
export function requestFromProto(request: AuthorizationRequest | undefined, nowMs: number, field = "request"): AuthorizationRequestInput {
  if (!request) throw invalidArgument(field, "is required");
  const startSession = request.scope === START_SESSION_ACTION;
  if (!startSession) {
    if (request.scope === "") throw invalidArgument(`${field}.scope`, "is required");
    if (!SCOPE_PATTERN.test(request.scope)) throw invalidArgument(`${field}.scope`, `must be a scope or ${START_SESSION_ACTION}`);
  }
  const resource = startSession && (request.resource === "" || request.resource === START_SESSION_RESOURCE)
    ? START_SESSION_RESOURCE
    : identifier(request.resource, `${field}.resource`);
  if (request.delegationChain.length > MAX_CHAIN) throw invalidArgument(`${field}.delegation_chain`, `at most ${MAX_CHAIN} actors`);
  const age = request.session?.age;
  const ageSeconds = age ? Number(age.seconds) : 0;
  if (!Number.isSafeInteger(ageSeconds) || ageSeconds < 0) throw invalidArgument(`${field}.session.age`, "must not be negative");
  const timeMs = request.time ? timestampDate(request.time).getTime() : nowMs;
  if (!Number.isFinite(timeMs)) throw invalidArgument(`${field}.time`, "is not a valid time");
  const approvalState = APPROVAL_STATES[request.approvalState];
  if (approvalState === undefined) throw invalidArgument(`${field}.approval_state`, "is not a known state");
  return {
    clientId: identifier(request.clientId, `${field}.client_id`),
    applicationLabels: labels(request.applicationLabels, `${field}.application_labels`),
    resource,
    scope: request.scope,
    session: {
      sessionId: boundedText(request.session?.sessionId ?? "", `${field}.session.session_id`, 128),
      ageSeconds,
      labels: labels(request.session?.labels ?? {}, `${field}.session.labels`),
    },
    delegationChain: request.delegationChain.map((actor) => identifier(actor.clientId, `${field}.delegation_chain.client_id`)),
    timeMs,
    approvalState,
    approvalKind: boundedText(request.approvalKind, `${field}.approval_kind`, 64),
  };
}

/** An authorization request as the API shows it. */
export function requestMessage(request: AuthorizationRequestInput): MessageInitShape<typeof AuthorizationRequestSchema> {
  const state = (Object.entries(APPROVAL_STATES).find(([, name]) => name === request.approvalState)?.[0] ?? "0") as `${ApprovalState}`;
  return {
    clientId: request.clientId,
    applicationLabels: { ...request.applicationLabels },
    resource: request.resource,
    scope: request.scope,
    session: { sessionId: request.session.sessionId, age: durationFromMs(request.session.ageSeconds * 1000), labels: { ...request.session.labels } },
    delegationChain: request.delegationChain.map((clientId) => ({ clientId })),
    time: timestampFromMs(request.timeMs),
    approvalState: Number(state) as ApprovalState,
    approvalKind: request.approvalKind,
  };
}

const DECISIONS: Record<PolicyDecision, Decision> = {
  allow: Decision.ALLOW,
  deny: Decision.DENY,
  step_up_required: Decision.STEP_UP_REQUIRED,
};

/** A decision as the API names it. */
export function decisionMessage(decision: PolicyDecision): Decision {
  return DECISIONS[decision];
}

/** An outcome as the API shows it. */
export function outcomeMessage(outcome: OutcomeInfo): MessageInitShape<typeof OutcomeSchema> {
  return {
    decision: DECISIONS[outcome.decision],
    determiningPolicies: [...outcome.determiningPolicies],
    reasons: [...outcome.reasons],
    errors: [...outcome.errors],
    stepUpKind: outcome.stepUpKind,
  };
}

/** The outcome when a zone has no active policy set: grants alone decide. */
export const DEFAULT_OUTCOME: OutcomeInfo = {
  decision: "allow",
  determiningPolicies: [],
  reasons: ["no active policy set: grants alone decide"],
  errors: [],
  stepUpKind: "",
};
