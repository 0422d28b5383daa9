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

/**
 * The part of a record a policy reads: `"all"`, or per attribute the part of
 * that attribute it reads. `{ labels: { team: "all" } }` reads one label.
 */
export type Reads = "all" | { readonly [attribute: string]: Reads };

/** What one policy reaches. */
export interface PolicyReach {
  /** False only when the policy's scope certainly cannot match `target`. */
  appliesTo(target: ScopeTarget): boolean;
  /** What its conditions read of the context. */
  readonly context: Reads;
  /** What its conditions read of the principal entity (`{}`: nothing, so Cedar needs no entity). */
  readonly principal: Reads;
  /** What its conditions read of the resource entity. */
  readonly resource: Reads;
}

/** The union of what several policies read. */
export function mergeReads(a: Reads, b: Reads): Reads {
  if (a === "all" || b === "all") return "all";
  const merged: Record<string, Reads> = { ...a };
  for (const [name, part] of Object.entries(b)) merged[name] = name in merged ? mergeReads(merged[name]!, part) : part;
  return merged;
}

/** The part of `value` that `reads` covers; attributes the value lacks stay absent. */
export function project<T>(value: T, reads: Reads): T {
  if (reads === "all" || value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const projected: Record<string, unknown> = {};
  for (const [name, part] of Object.entries(reads)) {
    if (Object.hasOwn(value, name)) projected[name] = project((value as Record<string, unknown>)[name], part);
  }
  return projected as T;
}

/** True when nothing is read. */
export function readsNothing(reads: Reads): boolean {
  return reads !== "all" && Object.keys(reads).length === 0;
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
  const reads: Record<Root, Reads> = { context: {}, principal: {}, resource: {} };
  for (const condition of est.conditions) visit(condition.body, reads);
  return {
    appliesTo: (t) =>
      mayMatch(principal, "Application", t.clientId) && mayMatch(action, "Action", t.scope) && mayMatch(resource, "Resource", t.resource),
    context: reads.context,
    principal: reads.principal,
    resource: reads.resource,
  };
}

// Runs for every policy of every request: no closures, no allocation.
function mayMatch(c: Constraint, type: string, id: string): boolean {
  switch (c.op) {
    case "All":
      return true;
    case "==":
      return isEntity(c.entity, type, id);
    case "in":
      if (!c.entities) return isEntity(c.entity, type, id);
      for (const e of c.entities) if (isEntity(e, type, id)) return true;
      return false;
    case "is":
      return c.entity_type === type && (c.in?.entity === undefined || isEntity(c.in.entity, type, id));
    default:
      // Anything this reader does not know stays in: never guess "cannot match".
      return true;
  }
}

function isEntity(e: EntityRef | undefined, type: string, id: string): boolean {
  return e !== undefined && e.type === type && e.id === id;
}

type Root = "context" | "principal" | "resource";
const ROOTS: readonly Root[] = ["context", "principal", "resource"];

/**
 * Records what an expression reads. An attribute chain on a variable
 * (`principal.labels.team`, `principal.labels has env`) reads exactly that
 * path; a variable used any other way (compared, passed, `in`) reads all of it.
 */
function visit(node: unknown, reads: Record<Root, Reads>): void {
  if (Array.isArray(node)) {
    for (const item of node) visit(item, reads);
    return;
  }
  if (node === null || typeof node !== "object") return;
  const chain = accessChain(node);
  if (chain) {
    reads[chain.root] = mergeReads(reads[chain.root], pathReads(chain.path));
    return;
  }
  for (const root of ROOTS) if (isVar(node, root)) reads[root] = "all";
  for (const value of Object.values(node)) visit(value, reads);
}

/** `a.b.c` or `a.b has c` with `a` a variable: the variable and the path; else undefined. */
function accessChain(node: object): { root: Root; path: string[] } | undefined {
  const path: string[] = [];
  let current: unknown = node;
  for (;;) {
    const record = current as Record<string, unknown>;
    const access = (record["."] ?? record["has"]) as { left?: unknown; attr?: unknown } | undefined;
    if (!access || Object.keys(record).length !== 1) break;
    // `e has a.b` carries its path as an array.
    const attrs = typeof access.attr === "string" ? [access.attr] : access.attr;
    if (!Array.isArray(attrs) || attrs.length === 0 || !attrs.every((a) => typeof a === "string")) break;
    path.unshift(...(attrs as string[]));
    current = access.left;
    if (current === null || typeof current !== "object") return undefined;
  }
  if (path.length === 0) return undefined;
  const root = ROOTS.find((r) => isVar(current, r));
  return root ? { root, path } : undefined;
}

function pathReads(path: readonly string[]): Reads {
  return path.reduceRight<Reads>((inner, name) => ({ [name]: inner }), "all");
}

function isVar(node: unknown, name: string): boolean {
  return node !== null && typeof node === "object" && (node as { Var?: unknown }).Var === name;
}
