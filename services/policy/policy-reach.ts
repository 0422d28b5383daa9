/**
 * What a Cedar policy can see of a request, read from its JSON form (Cedar's
 * EST). The engine uses it to hand Cedar only the policies that could apply
 * and only the context they read: crossing into cedar-wasm costs per policy
 * and per attribute, and most of a large set never applies to one request.
 *
 * Every answer here errs on the side of "may see it": a policy is left out only
 * when its scope certainly cannot match, and context is left out only when no
 * condition can read it. Leaving out something a policy reads would change a
 * decision; including too much only costs time.
 *
 * @module
 */

/** The request fields a policy's scope constrains. */
export interface ScopeTarget {
  readonly clientId: string;
  readonly scope: string;
  readonly resource: string;
}

/** What one policy reaches. */
export interface PolicyReach {
  /** False only when the policy's scope certainly cannot match `target`. */
  appliesTo(target: ScopeTarget): boolean;
  /** Context attributes its conditions read; `"all"` when a condition uses `context` as a whole. */
  readonly context: ReadonlySet<string> | "all";
  /** Its conditions read the principal (so Cedar needs the application entity). */
  readonly principal: boolean;
  /** Its conditions read the resource (so Cedar needs the resource entity). */
  readonly resource: boolean;
}

interface EntityRef {
  readonly type: string;
  readonly id: string;
}

/** A scope constraint as the EST writes it: `{ op: "All" | "==" | "in" | "is", … }`. */
interface Constraint {
  readonly op?: string;
  readonly entity?: EntityRef;
  readonly entities?: readonly EntityRef[];
  readonly entity_type?: string;
  readonly in?: { readonly entity?: EntityRef };
}

/**
 * Reads a policy's reach from its EST (`policyToJson(...).json`).
 *
 * Scope matching relies on one invariant of the engine: requests carry no
 * entity hierarchy (entities have no parents and no action entities are
 * passed), so `in E` can only hold when the entity is `E` itself.
 */
export function reachOf(est: {
  readonly principal: unknown;
  readonly action: unknown;
  readonly resource: unknown;
  readonly conditions: readonly { readonly body: unknown }[];
}): PolicyReach {
  const principal = est.principal as Constraint;
  const action = est.action as Constraint;
  const resource = est.resource as Constraint;
  const reads = { context: new Set<string>() as Set<string> | "all", principal: false, resource: false };
  for (const condition of est.conditions) visit(condition.body, reads);
  return {
    appliesTo: (t) =>
      mayMatch(principal, "Application", t.clientId) && mayMatch(action, "Action", t.scope) && mayMatch(resource, "Resource", t.resource),
    context: reads.context,
    principal: reads.principal,
    resource: reads.resource,
  };
}

function mayMatch(c: Constraint, type: string, id: string): boolean {
  const is = (e: EntityRef | undefined) => e !== undefined && e.type === type && e.id === id;
  switch (c.op) {
    case "All":
      return true;
    case "==":
      return is(c.entity);
    case "in":
      return c.entities ? c.entities.some(is) : is(c.entity);
    case "is":
      return c.entity_type === type && (c.in?.entity === undefined || is(c.in.entity));
    default:
      // Anything this reader does not know stays in: never guess "cannot match".
      return true;
  }
}

/** Records what an expression reads: which context attributes, and whether principal or resource. */
function visit(node: unknown, reads: { context: Set<string> | "all"; principal: boolean; resource: boolean }): void {
  if (Array.isArray(node)) {
    for (const item of node) visit(item, reads);
    return;
  }
  if (node === null || typeof node !== "object") return;
  const record = node as Record<string, unknown>;
  for (const access of [".", "has"]) {
    const inner = record[access] as { left?: unknown; attr?: unknown } | undefined;
    if (inner && isVar(inner.left, "context") && typeof inner.attr === "string") {
      if (reads.context !== "all") reads.context.add(inner.attr);
      return;
    }
  }
  if (isVar(node, "context")) reads.context = "all";
  if (isVar(node, "principal")) reads.principal = true;
  if (isVar(node, "resource")) reads.resource = true;
  for (const value of Object.values(record)) visit(value, reads);
}

function isVar(node: unknown, name: string): boolean {
  return node !== null && typeof node === "object" && (node as { Var?: unknown }).Var === name;
}
