/**
 * What the `caracal policy` commands read: `.cedar` files and a schema, a
 * requests file to simulate, and option values.
 *
 * @module
 */
import { create, fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { InvalidArgumentError } from "commander";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  AuthorizationRequestSchema,
  PolicySourceSchema,
  type AuthorizationRequest,
  type PolicyProblem,
  type PolicySource,
} from "../../gen/caracal/policy/v1/policy_pb.js";
import type { SimulatePolicySetRequestSchema } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import { UsageError } from "./usage-error.js";

/** A policy set read from disk, and where each document came from. */
export interface PolicyFiles {
  /** The source to send: one document per file, named by its base name. */
  readonly source: PolicySource;
  /** The path each document was read from, by document name. */
  readonly paths: ReadonlyMap<string, string>;
  /** The schema file, when one was given. */
  readonly schemaPath: string | undefined;
}

/**
 * Reads `.cedar` files into a policy source. Each path is a file or a
 * directory; a directory means the `*.cedar` files directly in it, sorted by
 * name (the order decides positional policy ids such as `billing.cedar#0`).
 * The schema file is sent as-is (Cedar or JSON syntax). Every problem is a
 * {@link UsageError}: nothing is sent.
 *
 * @example
 * const files = await readPolicyFiles(["policies/"], "policies/schema.cedarschema");
 * await policy.validatePolicySet({ zone: "acme", source: files.source });
 */
export async function readPolicyFiles(paths: readonly string[], schemaPath?: string): Promise<PolicyFiles> {
  const files: string[] = [];
  for (const path of paths) {
    if (!(await statOf(path)).isDirectory()) files.push(path);
    else {
      const entries = await readdir(path, { withFileTypes: true });
      const cedar = entries.filter((e) => (e.isFile() || e.isSymbolicLink()) && e.name.endsWith(".cedar")).map((e) => e.name);
      if (cedar.length === 0) throw new UsageError(`no .cedar files in directory ${path}`);
      files.push(...cedar.sort().map((name) => join(path, name)));
    }
  }
  const byName = new Map<string, string>();
  const documents = [];
  for (const file of files) {
    const name = basename(file);
    const earlier = byName.get(name);
    if (earlier !== undefined) throw new UsageError(`two policy files are named ${name}: ${earlier} and ${file}; document names must differ`);
    byName.set(name, file);
    documents.push({ name, text: await readText(file) });
  }
  const schema = schemaPath === undefined ? "" : await readText(schemaPath);
  return { source: create(PolicySourceSchema, { documents, schema }), paths: byName, schemaPath };
}

/**
 * One problem as `path:line:column: [policy id] message`, naming the file the
 * user gave. A problem with no document is in the schema, or about the set as
 * a whole; position and policy id are left out when the server has none.
 */
export function problemLine(problem: PolicyProblem, files: PolicyFiles): string {
  const file = problem.document === "" ? (files.schemaPath ?? "(schema)") : (files.paths.get(problem.document) ?? problem.document);
  const where = problem.line > 0 ? `${file}:${problem.line}:${problem.column}` : file;
  const policy = problem.policyId === "" ? "" : `[${problem.policyId}] `;
  return `${where}: ${policy}${problem.message}`;
}

/**
 * Reads a JSON array of `AuthorizationRequest`s in protobuf JSON form
 * (`{"clientId": "billing-agent", "resource": "billing-api", "scope": "invoices.read"}`).
 */
export async function readRequestsFile(path: string): Promise<AuthorizationRequest[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readText(path));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--requests ${path} is not valid JSON`);
  }
  if (!Array.isArray(parsed)) throw new UsageError(`--requests ${path}: expected a JSON array of AuthorizationRequest objects`);
  return parsed.map((item: JsonValue, i) => {
    try {
      return fromJson(AuthorizationRequestSchema, item);
    } catch (error) {
      throw new UsageError(`--requests ${path}: request [${i}]: ${error instanceof Error ? error.message : String(error)}`);
    }
  });
}

/** The candidate and traffic of `caracal policy simulate`, as given on the command line. */
export interface SimulationOptions {
  /** `--version`: a stored candidate, instead of paths. */
  readonly version?: bigint;
  /** `--schema`: with paths only. */
  readonly schema?: string;
  /** `--recent`: replay the zone's last n recorded decisions. */
  readonly recent?: number;
  /** `--requests`: replay the requests in this file. */
  readonly requests?: string;
}

/**
 * The candidate (`.cedar` paths or `--version`) and the traffic (`--recent`
 * or `--requests`) of a simulation; exactly one of each.
 */
export async function readSimulation(
  paths: readonly string[],
  options: SimulationOptions,
): Promise<Pick<MessageInitShape<typeof SimulatePolicySetRequestSchema>, "candidate" | "traffic">> {
  if ((options.version === undefined) === (paths.length === 0)) throw new UsageError("give the candidate as .cedar paths or as --version <n>, not both");
  if (options.version !== undefined && options.schema !== undefined) throw new UsageError("--schema goes with .cedar paths; a stored version has its own");
  if ((options.recent === undefined) === (options.requests === undefined)) throw new UsageError("give the traffic as --recent <n> or --requests <file>, not both");
  return {
    candidate:
      options.version === undefined
        ? { case: "candidateSource", value: (await readPolicyFiles(paths, options.schema)).source }
        : { case: "candidateVersion", value: options.version },
    traffic:
      options.requests === undefined
        ? { case: "recentDecisions", value: options.recent! }
        : { case: "requests", value: { requests: await readRequestsFile(options.requests) } },
  };
}

/** Parses a stored version number (1 or more). */
export function parseVersion(value: string): bigint {
  if (!/^[1-9]\d{0,14}$/.test(value)) throw new InvalidArgumentError("expected a version number, e.g. 3");
  return BigInt(value);
}

/** Parses `--expect`: a version number, or `none` (0) when no version is active. */
export function parseExpectedVersion(value: string): bigint {
  if (value === "none") return 0n;
  if (!/^\d{1,15}$/.test(value)) throw new InvalidArgumentError("expected a version number, or none when no version is active");
  return BigInt(value);
}

/** Parses `--recent`: 1 to 10,000 recorded decisions. */
export function parseRecent(value: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : 0;
  if (n < 1 || n > 10_000) throw new InvalidArgumentError("expected a number from 1 to 10000");
  return n;
}

/** Parses an ISO 8601 time. */
export function parseTime(value: string): Date {
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new InvalidArgumentError("expected an ISO 8601 time, e.g. 2025-01-31T22:00:00Z");
  return at;
}

async function statOf(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`);
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`);
  }
}
