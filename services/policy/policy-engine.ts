/**
 * The policy engine seam: what the policy RPCs and the STS need from an
 * engine, in plain types that mirror `caracal.policy.v1` without depending on
 * the generated code, so a second engine can be added beside Cedar.
 *
 * @module
 */

/**
 * The action of the session question the STS asks on `StartSession`: may this
 * application start a session at all? Upper case, so no scope can collide with
 * it (scopes are lower case).
 */
export const START_SESSION_ACTION = "StartSession";

/**
 * The resource of the session question. The colon keeps it apart from every
 * resource id (which cannot hold one).
 */
export const START_SESSION_RESOURCE = "caracal:sts";

/** One policy file, e.g. `billing.cedar`. Mirrors `PolicyDocument`. */
export interface PolicyDocumentInput {
  /** The file name; problems are reported against it. */
  readonly name: string;
  /** The policy text. */
  readonly text: string;
}

/** A whole policy set as an operator wrote it. Mirrors `PolicySource`. */
export interface PolicySourceInput {
  /** The policy files, in order; the order decides positional policy ids. */
  readonly documents: readonly PolicyDocumentInput[];
  /** Optional schema; when set, policies are type-checked against it. */
  readonly schema?: string;
}

/** One syntax or schema error. Mirrors `PolicyProblem`. */
export interface PolicyProblemInfo {
  /** The document it is in; empty for the schema itself. */
  readonly document: string;
  /** The policy id when the problem belongs to one policy, otherwise empty. */
  readonly policyId: string;
  /** 1-based line; 0 when the engine gave no position. */
  readonly line: number;
  /** 1-based column; 0 when the engine gave no position. */
  readonly column: number;
  /** What is wrong. */
  readonly message: string;
  /** True for problems in or against the schema, false for policy syntax. */
  readonly schemaError: boolean;
}

/**
 * Where a step-up approval stands. Mirrors `caracal.approval.v1.ApprovalState`
 * in lower case, without the `APPROVAL_STATE_` prefix.
 */
export type ApprovalStateName = "unspecified" | "pending" | "approved" | "rejected" | "expired" | "used";

/** The session behind a request. Mirrors `SessionContext`. */
export interface SessionInput {
  readonly sessionId: string;
  /** Whole seconds since the session started. */
  readonly ageSeconds: number;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * One question to a policy set: may this application use this scope on this
 * resource, now? Mirrors `AuthorizationRequest`.
 */
export interface AuthorizationRequestInput {
  readonly clientId: string;
  readonly applicationLabels: Readonly<Record<string, string>>;
  readonly resource: string;
  /** The scope asked for; it is the action. */
  readonly scope: string;
  readonly session: SessionInput;
  /** Client ids of the delegation chain, outermost first; its length is the hop count. */
  readonly delegationChain: readonly string[];
  /** The request time in epoch milliseconds; callers pass their (injected) clock. */
  readonly timeMs: number;
  readonly approvalState: ApprovalStateName;
  /** The step-up kind that was approved, matched against `@step_up("…")`. */
  readonly approvalKind: string;
}

/** A policy decision. Mirrors `Decision`. */
export type PolicyDecision = "allow" | "deny" | "step_up_required";

/** A decision and why. Mirrors `Outcome`. */
export interface OutcomeInfo {
  readonly decision: PolicyDecision;
  /** Ids of the policies that determined it: the permits, or the forbids. */
  readonly determiningPolicies: readonly string[];
  /** Human-readable reasons. */
  readonly reasons: readonly string[];
  /** Engine errors met while evaluating; any error makes the decision deny. */
  readonly errors: readonly string[];
  /** The `@step_up` kind when the decision is `step_up_required`, else empty. */
  readonly stepUpKind: string;
}

/**
 * A validated policy set, ready to answer requests. Instances are independent:
 * evaluating one never sees another's policies.
 */
export interface CompiledPolicySet {
  /** The ids of the policies in the set, in source order. */
  readonly policyIds: readonly string[];
  /**
   * Decides one request. Never throws and never allows on failure: an engine
   * error comes back as `deny` with `errors` filled.
   */
  evaluate(request: AuthorizationRequestInput): OutcomeInfo;
}

/**
 * A policy language implementation.
 *
 * @example
 * ```ts
 * const engine: PolicyEngine = new CedarEngine();
 * const problems = engine.validate(source);
 * if (problems.length === 0) {
 *   const outcome = engine.compile(source).evaluate(request);
 * }
 * ```
 */
export interface PolicyEngine {
  /** Every syntax and schema problem in `source`; empty when it is valid. */
  validate(source: PolicySourceInput): PolicyProblemInfo[];
  /**
   * Builds an evaluable set.
   *
   * @throws `PolicyInvalidError` with the problems when `source` is not valid.
   */
  compile(source: PolicySourceInput): CompiledPolicySet;
}
