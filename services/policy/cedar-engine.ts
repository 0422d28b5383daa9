import { createHash } from "node:crypto";
import {
  checkParseSchema,
  policySetTextToParts,
  policyToJson,
  preparsePolicySet,
  statefulIsAuthorized,
  validate as cedarValidate,
  type StatefulAuthorizationCall,
  type Context,
  type DetailedError,
  type Schema,
} from "@cedar-policy/cedar-wasm/nodejs";
import type {
  AuthorizationRequestInput,
  CompiledPolicySet,
  OutcomeInfo,
  PolicyDocumentInput,
  PolicyEngine,
  PolicyProblemInfo,
  PolicySourceInput,
} from "./policy-engine.js";
import { PolicyInvalidError } from "./policy-invalid-error.js";
import { mergeReads, project, reachOf, readsNothing, type PolicyReach, type Reads } from "./policy-reach.js";

/** One static policy cut out of a document, with where it came from. */
interface SourcePolicy {
  readonly id: string;
  readonly document: PolicyDocumentInput;
  /** The policy text exactly as Cedar parsed it. */
  readonly text: string;
  /** Character offset of `text` in the document. */
  readonly start: number;
  readonly effect: "permit" | "forbid";
  /** The `@step_up("…")` kind, or undefined for an ordinary policy. */
  readonly stepUp: string | undefined;
  /** Which requests it could apply to and what of them it reads. */
  readonly reach: PolicyReach;
}

interface Analysis {
  readonly policies: SourcePolicy[];
  readonly problems: PolicyProblemInfo[];
}

/**
 * The Cedar policy engine, on `@cedar-policy/cedar-wasm`.
 *
 * Entity model, the same for every request:
 *
 * - principal `Application::"<client_id>"`, attribute `labels`: a record of the
 *   application's labels (strings).
 * - action `Action::"<scope>"`; the STS's session question is
 *   `Action::"StartSession"` on `Resource::"caracal:sts"`, so an active set must
 *   permit it or no session starts.
 * - resource `Resource::"<resource id>"`, no attributes.
 * - context:
 *   - `session`: `{ id: String, age_seconds: Long, labels: { … strings } }`
 *   - `delegation`: `{ hops: Long, chain: Set<String> }` (client ids, outermost first)
 *   - `time`: Long, epoch seconds
 *   - `clock`: `{ hour: Long, weekday: Long }` in UTC, weekday 1 = Monday … 7 =
 *     Sunday, for business-hours rules (Cedar cannot divide epoch seconds)
 *   - `approval`: `{ state: String, kind: String }`; `state` is one of
 *     `unspecified`, `pending`, `approved`, `rejected`, `expired`, `used`.
 *
 * Labels are open-ended, so a policy should test `principal.labels has env`
 * before reading `principal.labels.env`; reading a missing label is an
 * evaluation error, and any evaluation error denies.
 *
 * Policy ids are the `@id("…")` annotation when present, otherwise
 * `<document name>#<index>` with a 0-based index within the document.
 *
 * A permit annotated `@step_up("<kind>")` allows only when the request carries
 * an `approved` approval of that kind; otherwise, if no ordinary permit also
 * applies, the decision is `step_up_required`. Forbid always wins, and nothing
 * permitted means deny.
 *
 * When a schema is given (Cedar or JSON syntax), policies are validated
 * against it in strict mode. Requests are not validated against it: the
 * engine builds them itself, and an operator schema that omits part of the
 * context would otherwise turn every request into an error.
 *
 * @example
 * ```ts
 * const engine = new CedarEngine();
 * const set = engine.compile({
 *   documents: [{ name: "read.cedar", text: 'permit(principal, action == Action::"read", resource);' }],
 * });
 * set.evaluate(request).decision; // "allow" for scope "read"
 * ```
 */
export class CedarEngine implements PolicyEngine {
  readonly #slicing: boolean;
  readonly #cacheSize: number;

  /**
   * @param options.slicing - evaluate each request against only the policies
   *   that could apply, with only what they read (default). `false` hands Cedar
   *   every policy and the whole request: slower, and there to check that
   *   slicing never changes an answer.
   * @param options.cacheSize - Cedar answers each compiled set keeps, keyed
   *   by the exact input Cedar is given; default 10,000, 0 turns it off.
   */
  constructor(options: { slicing?: boolean; cacheSize?: number } = {}) {
    this.#slicing = options.slicing ?? true;
    this.#cacheSize = options.cacheSize ?? 10_000;
  }

  validate(source: PolicySourceInput): PolicyProblemInfo[] {
    return analyze(source).problems;
  }

  compile(source: PolicySourceInput): CompiledPolicySet {
    const { policies, problems } = analyze(source);
    if (problems.length > 0) throw new PolicyInvalidError(problems);
    // Preparsing the whole set checks it as Cedar will run it; evaluation then
    // uses slices of it (see CedarPolicySet).
    const failure = preparse(policies);
    if (failure) throw new PolicyInvalidError(failure.map((message) => problem("", "", 0, 0, message, false)));
    return new CedarPolicySet(policies, this.#slicing, this.#cacheSize);
  }
}

/** A subset of the set's policies, preparsed, with what its policies read. */
interface Slice {
  readonly setId: string;
  readonly size: number;
  readonly context: Reads;
  readonly principal: Reads;
  readonly resource: Reads;
}

/**
 * Slices are keyed by which policies they hold, so their number is bounded by
 * the shapes of the policies, not by traffic; past this bound a set hands
 * Cedar every policy and the whole request, which is always correct.
 */
const MAX_SLICES = 1_024;

/**
 * A compiled set. Each request is evaluated against the slice of policies
 * whose scope could match it, with only the context and entities they read:
 * cedar-wasm's cost grows with every policy and every attribute it is handed,
 * and the answer cannot change, because a policy whose scope does not match is
 * never satisfied and never evaluates its conditions (so never errs).
 */
class CedarPolicySet implements CompiledPolicySet {
  readonly policyIds: readonly string[];
  readonly #policies: readonly SourcePolicy[];
  readonly #byId: ReadonlyMap<string, { order: number; policy: SourcePolicy }>;
  readonly #slices = new Map<string, Slice | Error>();

  readonly #slicing: boolean;
  readonly #answers: AnswerCache | undefined;

  constructor(policies: readonly SourcePolicy[], slicing: boolean, cacheSize: number) {
    this.#slicing = slicing;
    this.#answers = cacheSize > 0 ? new AnswerCache(cacheSize) : undefined;
    this.#policies = policies;
    this.policyIds = policies.map((p) => p.id);
    this.#byId = new Map(policies.map((policy, order) => [policy.id, { order, policy }]));
  }

  evaluate(request: AuthorizationRequestInput): OutcomeInfo {
    // A malformed request denies whether or not a policy would read the bad field.
    try {
      wholeNumber(request.session.ageSeconds, "session age");
      wholeNumber(Math.floor(request.timeMs / 1000), "request time");
    } catch (err) {
      return denyOnError([`engine failure: ${messageOf(err)}`]);
    }
    const slice = this.#sliceFor(request);
    if (slice instanceof Error) return denyOnError([`engine failure: ${slice.message}`]);
    // Nothing could apply: the default deny, without a trip into the engine.
    if (slice.size === 0) return outcome("deny", [], [DEFAULT_DENY]);
    const call: StatefulAuthorizationCall = {
      principal: { type: "Application", id: request.clientId },
      action: { type: "Action", id: request.scope },
      resource: { type: "Resource", id: request.resource },
      context: project(contextOf(request), slice.context),
      entities: [
        ...(readsNothing(slice.principal)
          ? []
          : [{ uid: { type: "Application", id: request.clientId }, attrs: project({ labels: { ...request.applicationLabels } }, slice.principal), parents: [] }]),
        ...(readsNothing(slice.resource) ? [] : [{ uid: { type: "Resource", id: request.resource }, attrs: {}, parents: [] }]),
      ],
      preparsedPolicySetId: slice.setId,
    };
    const answer = this.#answers ? this.#answers.get(call) : askCedar(call);
    if (answer instanceof Error) return denyOnError([answer.message]);

    // A policy that errors is skipped by Cedar, so an erroring forbid would
    // silently let the request through; any error therefore denies.
    if (answer.errors.length > 0) return denyOnError([...answer.errors]);
    const { decision } = answer;
    const satisfied: SourcePolicy[] = [];
    for (const id of answer.reason) {
      const known = this.#byId.get(id);
      if (!known) return denyOnError([`engine reported unknown policy ${id}`]);
      satisfied.push(known.policy);
    }
    satisfied.sort((a, b) => this.#order(a) - this.#order(b));
    const ids = (ps: readonly SourcePolicy[]) => ps.map((p) => p.id);

    if (decision === "deny") {
      return satisfied.length > 0
        ? outcome("deny", ids(satisfied), [`forbidden by ${ids(satisfied).join(", ")}`])
        : outcome("deny", [], [DEFAULT_DENY]);
    }
    const ordinary = satisfied.filter((p) => p.stepUp === undefined);
    if (ordinary.length > 0) {
      return outcome("allow", ids(ordinary), [`permitted by ${ids(ordinary).join(", ")}`]);
    }
    const approved = request.approvalState === "approved";
    const matching = satisfied.filter((p) => approved && p.stepUp === request.approvalKind);
    if (matching.length > 0) {
      return outcome("allow", ids(matching), [
        `permitted by ${ids(matching).join(", ")} with an approved "${request.approvalKind}" step-up`,
      ]);
    }
    const kind = satisfied[0]?.stepUp ?? "";
    const needing = satisfied.filter((p) => p.stepUp === kind);
    return {
      ...outcome("step_up_required", ids(needing), [
        `permitted by ${ids(needing).join(", ")} only after a "${kind}" approval`,
      ]),
      stepUpKind: kind,
    };
  }

  #sliceFor(request: AuthorizationRequestInput): Slice | Error {
    if (!this.#slicing) return this.#slice("whole", () => makeSlice(this.#policies, { readsAll: true }));
    const members: number[] = [];
    this.#policies.forEach((p, i) => {
      if (p.reach.appliesTo(request)) members.push(i);
    });
    const key = members.join(",");
    if (this.#slices.size >= MAX_SLICES && !this.#slices.has(key)) {
      return this.#slice("whole", () => makeSlice(this.#policies, { readsAll: true }));
    }
    return this.#slice(key, () => makeSlice(members.map((i) => this.#policies[i]!)));
  }

  #slice(key: string, make: () => Slice | Error): Slice | Error {
    let slice = this.#slices.get(key);
    if (!slice) {
      slice = make();
      this.#slices.set(key, slice);
    }
    return slice;
  }

  #order(p: SourcePolicy): number {
    return this.#byId.get(p.id)?.order ?? Number.MAX_SAFE_INTEGER;
  }
}

const DEFAULT_DENY = "no policy permits this request (default deny)";

/** What Cedar answered for one input: the decision, the satisfied policies, and evaluation errors. */
interface CedarAnswer {
  readonly decision: "allow" | "deny";
  readonly reason: readonly string[];
  readonly errors: readonly string[];
}

/** Asks Cedar; an `Error` when the engine itself failed (never cached). */
function askCedar(call: StatefulAuthorizationCall): CedarAnswer | Error {
  try {
    const answer = statefulIsAuthorized(call);
    if (answer.type === "failure") return new Error(answer.errors.map((e) => `engine failure: ${e.message}`).join("; "));
    const { decision, diagnostics } = answer.response;
    return { decision, reason: diagnostics.reason, errors: diagnostics.errors.map((e) => `policy ${e.policyId}: ${e.error.message}`) };
  } catch (err) {
    return new Error(`engine failure: ${messageOf(err)}`);
  }
}

/**
 * Cedar's answers by the complete input Cedar is given: the preparsed set
 * (named after its content) and every entity and context value, serialised.
 * Cedar is deterministic, so two requests can share an entry only when Cedar
 * would see exactly the same thing; anything a policy can read is in the key,
 * and what no policy reads was never handed over. Post-processing that looks
 * at the request itself (step-up approvals) runs after the cache, per request.
 * Least recently used entries go first.
 */
class AnswerCache {
  readonly #entries = new Map<string, CedarAnswer>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(call: StatefulAuthorizationCall): CedarAnswer | Error {
    const key = JSON.stringify(call);
    const known = this.#entries.get(key);
    if (known) {
      this.#entries.delete(key);
      this.#entries.set(key, known);
      return known;
    }
    const answer = askCedar(call);
    if (answer instanceof Error) return answer;
    this.#entries.set(key, answer);
    if (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!);
    return answer;
  }
}

function makeSlice(policies: readonly SourcePolicy[], options: { readsAll?: boolean } = {}): Slice | Error {
  const failure = policies.length > 0 ? preparse(policies) : undefined;
  if (failure) return new Error(failure.join("; "));
  const union = (pick: (reach: PolicyReach) => Reads) =>
    options.readsAll ? "all" : policies.reduce<Reads>((all, p) => mergeReads(all, pick(p.reach)), {});
  return {
    setId: setIdOf(policies),
    size: policies.length,
    context: union((r) => r.context),
    principal: union((r) => r.principal),
    resource: union((r) => r.resource),
  };
}

/**
 * Preparses policies into cedar-wasm's process-wide cache, which has no
 * eviction. Naming each entry after its content means recompiling the same
 * version (or slice) reuses the entry instead of growing the cache, and two
 * different sets can never share one. Returns the failure messages, if any.
 */
function preparse(policies: readonly SourcePolicy[]): string[] | undefined {
  try {
    const answer = preparsePolicySet(setIdOf(policies), { staticPolicies: Object.fromEntries(policies.map((p) => [p.id, p.text])) });
    return answer.type === "failure" ? answer.errors.map((e) => e.message) : undefined;
  } catch (err) {
    return [`engine failure: ${messageOf(err)}`];
  }
}

function setIdOf(policies: readonly SourcePolicy[]): string {
  return `caracal-${createHash("sha256").update(JSON.stringify(policies.map((p) => [p.id, p.text]))).digest("hex")}`;
}

/** The whole Cedar context of a request; evaluation hands Cedar only the part a slice reads. */
function contextOf(request: AuthorizationRequestInput): Context {
  return {
    session: { id: request.session.sessionId, age_seconds: request.session.ageSeconds, labels: { ...request.session.labels } },
    delegation: { hops: request.delegationChain.length, chain: [...request.delegationChain] },
    time: Math.floor(request.timeMs / 1000),
    clock: clockOf(request.timeMs),
    approval: { state: request.approvalState, kind: request.approvalKind },
  };
}

/**
 * The request time as hour and ISO weekday (1 = Monday … 7 = Sunday), in UTC:
 * Cedar has no division, so business hours cannot be computed from epoch seconds.
 */
function clockOf(timeMs: number): { hour: number; weekday: number } {
  const at = new Date(timeMs);
  return { hour: at.getUTCHours(), weekday: at.getUTCDay() === 0 ? 7 : at.getUTCDay() };
}

function outcome(decision: OutcomeInfo["decision"], determiningPolicies: string[], reasons: string[]): OutcomeInfo {
  return { decision, determiningPolicies, reasons, errors: [], stepUpKind: "" };
}

function denyOnError(errors: string[]): OutcomeInfo {
  return {
    decision: "deny",
    determiningPolicies: [],
    reasons: ["the policy engine failed; failures deny"],
    errors,
    stepUpKind: "",
  };
}

function wholeNumber(n: number, what: string): number {
  if (!Number.isSafeInteger(n)) throw new TypeError(`${what} must be a whole number, got ${n}`);
  return n;
}

function analyze(source: PolicySourceInput): Analysis {
  const problems: PolicyProblemInfo[] = [];
  const policies: SourcePolicy[] = [];
  const schema = parseSchema(source.schema, problems);
  for (const doc of source.documents) policies.push(...splitDocument(doc, problems));

  const seen = new Map<string, SourcePolicy>();
  for (const p of policies) {
    const first = seen.get(p.id);
    if (first) {
      const at = position(first.document.text, first.start);
      problems.push(
        policyProblem(p, 0, `duplicate policy id "${p.id}" (first used in ${first.document.name}:${at.line}:${at.column})`, false),
      );
    } else {
      seen.set(p.id, p);
    }
  }
  if (problems.length > 0 || schema === undefined || policies.length === 0) return { policies, problems };

  const byId = new Map(policies.map((p) => [p.id, p]));
  try {
    const answer = cedarValidate({
      schema,
      validationSettings: { mode: "strict" },
      policies: { staticPolicies: Object.fromEntries(policies.map((p) => [p.id, p.text])) },
    });
    if (answer.type === "failure") {
      for (const e of answer.errors) problems.push(problem("", "", 0, 0, e.message, true));
    } else {
      for (const { policyId, error } of answer.validationErrors) {
        const p = byId.get(policyId);
        const offset = firstOffset(error);
        if (p) problems.push(policyProblem(p, offset === undefined ? 0 : charOffset(p.text, offset), describe(error), true));
        else problems.push(problem("", policyId, 0, 0, describe(error), true));
      }
    }
  } catch (err) {
    problems.push(problem("", "", 0, 0, `engine failure: ${messageOf(err)}`, true));
  }
  return { policies, problems };
}

function parseSchema(text: string | undefined, problems: PolicyProblemInfo[]): Schema | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  let schema: Schema = text;
  // The proto allows either syntax; cedar-wasm takes JSON schemas as objects.
  if (text.trimStart().startsWith("{")) {
    try {
      schema = JSON.parse(text) as Schema;
    } catch (err) {
      problems.push(problem("", "", 0, 0, `schema is not valid JSON: ${messageOf(err)}`, true));
      return undefined;
    }
  }
  const answer = checkParseSchema(schema);
  if (answer.type === "success") return schema;
  for (const e of answer.errors) {
    const offset = firstOffset(e);
    const at = offset === undefined || typeof schema !== "string" ? undefined : position(text, charOffset(text, offset));
    problems.push(problem("", "", at?.line ?? 0, at?.column ?? 0, describe(e), true));
  }
  return undefined;
}

function splitDocument(doc: PolicyDocumentInput, problems: PolicyProblemInfo[]): SourcePolicy[] {
  const parts = policySetTextToParts(doc.text);
  if (parts.type === "failure") {
    for (const e of parts.errors) {
      const offset = firstOffset(e);
      const at = position(doc.text, offset === undefined ? 0 : charOffset(doc.text, offset));
      problems.push(problem(doc.name, "", offset === undefined ? 0 : at.line, offset === undefined ? 0 : at.column, describe(e), false));
    }
    return [];
  }
  for (const t of parts.policy_templates) {
    const at = position(doc.text, Math.max(0, doc.text.indexOf(t)));
    problems.push(problem(doc.name, "", at.line, at.column, "templates (policies with ?principal or ?resource slots) are not supported", false));
  }
  if (parts.policy_templates.length > 0) return [];

  // Cedar names the policies policy0, policy1, … in source order but returns
  // them sorted by name (policy10 before policy2); undo that sort.
  const names = parts.policies.map((_, i) => `policy${i}`).sort();
  const inOrder: string[] = [];
  names.forEach((name, sortedAt) => {
    inOrder[Number(name.slice("policy".length))] = parts.policies[sortedAt] ?? "";
  });

  const result: SourcePolicy[] = [];
  let cursor = 0;
  inOrder.forEach((text, index) => {
    const found = doc.text.indexOf(text, cursor);
    const start = found === -1 ? cursor : found;
    cursor = start + (found === -1 ? 0 : text.length);
    const json = policyToJson(text);
    if (json.type === "failure") {
      for (const e of json.errors) problems.push(problem(doc.name, "", ...lineColumn(doc.text, start), describe(e), false));
      return;
    }
    const annotations = json.json.annotations ?? {};
    const rawId = annotations["id"];
    const rawStepUp = annotations["step_up"];
    const policy: SourcePolicy = {
      id: typeof rawId === "string" && rawId !== "" ? rawId : `${doc.name}#${index}`,
      document: doc,
      text,
      start,
      effect: json.json.effect,
      stepUp: "step_up" in annotations ? (rawStepUp ?? "") : undefined,
      reach: reachOf(json.json),
    };
    if ("id" in annotations && (rawId ?? "") === "") problems.push(policyProblem(policy, 0, '@id needs a value, e.g. @id("read-docs")', false));
    if (policy.stepUp !== undefined && policy.effect !== "permit") {
      problems.push(policyProblem(policy, 0, "@step_up applies to permit policies only", false));
    } else if (policy.stepUp === "") {
      problems.push(policyProblem(policy, 0, '@step_up needs the approval kind, e.g. @step_up("approval")', false));
    }
    result.push(policy);
  });
  return result;
}

function problem(document: string, policyId: string, line: number, column: number, message: string, schemaError: boolean): PolicyProblemInfo {
  return { document, policyId, line, column, message, schemaError };
}

/** A problem inside `p`, `offset` characters into the policy's own text. */
function policyProblem(p: SourcePolicy, offset: number, message: string, schemaError: boolean): PolicyProblemInfo {
  return problem(p.document.name, p.id, ...lineColumn(p.document.text, p.start + offset), message, schemaError);
}

function lineColumn(text: string, offset: number): [number, number] {
  const at = position(text, offset);
  return [at.line, at.column];
}

/** 1-based line and column of a character offset. */
function position(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lastNewline = before.lastIndexOf("\n");
  return { line: before.split("\n").length, column: offset - lastNewline };
}

/** Cedar reports UTF-8 byte offsets; JavaScript strings index UTF-16 units. */
function charOffset(text: string, byteOffset: number): number {
  return Buffer.from(text, "utf8").subarray(0, byteOffset).toString("utf8").length;
}

function firstOffset(e: DetailedError): number | undefined {
  return e.sourceLocations?.[0]?.start;
}

function describe(e: DetailedError): string {
  return e.help ? `${e.message} (${e.help})` : e.message;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
