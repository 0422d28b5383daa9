import type { PolicyProblemInfo } from "./policy-engine.js";

/**
 * Thrown by {@link PolicyEngine.compile} when a policy source has syntax or
 * schema problems. `code` is stable; `problems` lists every one found.
 */
export class PolicyInvalidError extends Error {
  /** Stable code for `switch`es and the RPC error mapping. */
  readonly code = "POLICY_INVALID" as const;
  /** Every problem found, each with document, policy id, line and column. */
  readonly problems: readonly PolicyProblemInfo[];

  constructor(problems: readonly PolicyProblemInfo[]) {
    const first = problems[0];
    const where = first ? `${first.document || "schema"}:${first.line}:${first.column}: ${first.message}` : "no details";
    super(`policy set is invalid (${problems.length} problem${problems.length === 1 ? "" : "s"}); first: ${where}`);
    this.name = "PolicyInvalidError";
    this.problems = problems;
  }
}
