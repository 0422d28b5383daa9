import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { runCli, type CliRun as Run } from "./support/cli-run.js";


function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

/** Billing policies: anyone may read invoices and start sessions, interns may not read. */
const BILLING = `@id("read-invoices")
permit(principal, action == Action::"invoices.read", resource == Resource::"billing-api");

@id("start-sessions")
permit(principal, action == Action::"StartSession", resource);
`;

const INTERNS = `@id("no-interns")
forbid(principal, action, resource == Resource::"billing-api")
when { principal.labels has role && principal.labels.role == "intern" };
`;

/** A candidate that locks billing-agent out of billing-api. */
const LOCKDOWN = `@id("lockdown")
forbid(principal == Application::"billing-agent", action, resource == Resource::"billing-api");
`;

/** A syntax error on line 3: `when` without its condition block. */
const BROKEN = `// a comment
permit(principal, action, resource)
when ;
`;

/** Cedar schema syntax with a missing attribute type on line 3 (reported at 4:1). */
const BROKEN_SCHEMA = "entity Application;\nentity Resource {\n  owner: \n};\n";

describe.each(HARNESS_KINDS)("caracal policy against a running server on %s", (kind) => {
  let harness: CaracalHarness;
  let dir: string;
  let zones = 0;

  beforeAll(async () => {
    harness = await startHarness(kind);
    dir = await mkdtemp(join(tmpdir(), "caracal-cli-policy-"));
  }, 120_000);

  afterAll(async () => {
    await harness?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Runs `caracal <args>` in-process through `main`, with the harness's admin
   * profile unless the args name one, capturing what it writes; no run may
   * print the admin secret.
   */
  async function caracal(args: readonly string[]): Promise<Run> {
    return runCli(args.includes("--profile") ? args : [...args, "--profile", harness.profilePath], { secret: harness.profile.client_secret });
  }

  /** A fresh zone for one test. */
  async function newZone(): Promise<string> {
    const zone = `policy-cli-${++zones}`;
    await harness.admin.createZone({ zone });
    return zone;
  }

  /** Writes files into a fresh directory and returns its path. */
  async function policyDir(files: Record<string, string>): Promise<string> {
    const path = join(dir, `set-${Object.keys(files).join("-")}-${++zones}`);
    await mkdir(path);
    for (const [name, text] of Object.entries(files)) await writeFile(join(path, name), text);
    return path;
  }

  /** Stores `files` as a version and activates it; returns the version number. */
  async function activeSet(zone: string, files: Record<string, string>): Promise<number> {
    const created = await caracal(["policy", "create", await policyDir(files), "--zone", zone, "-m", "setup", "--json"]);
    expect(created.code).toBe(0);
    const version = Number((JSON.parse(created.stdout) as { version: { version: string } }).version.version);
    expect((await caracal(["policy", "activate", String(version), "--zone", zone, "--reason", "setup"])).code).toBe(0);
    return version;
  }

  it("validates a directory of .cedar files and says how many", async () => {
    const zone = await newZone();
    const run = await caracal(["policy", "validate", await policyDir({ "billing.cedar": BILLING, "interns.cedar": INTERNS, "notes.txt": "not policy" }), "--zone", zone]);
    expect(run).toEqual({ code: 0, stdout: "valid: 2 policy files\n", stderr: "" });
  });

  it("prints each problem as file:line:column and exits 1 for an invalid set", async () => {
    const zone = await newZone();
    const set = await policyDir({ "billing.cedar": BILLING, "broken.cedar": BROKEN });
    const run = await caracal(["policy", "validate", set, "--zone", zone]);
    expect(run.code).toBe(1);
    expect(lines(run.stdout)).toEqual([expect.stringMatching(new RegExp(`^${join(set, "broken.cedar")}:3:\\d+: \\S`))]);
    expect(run.stderr).toBe("caracal: policy set is invalid: 1 problem\n");

    const json = await caracal(["policy", "validate", set, "--zone", zone, "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ valid: false, problems: [{ document: "broken.cedar", line: 3, schemaError: false }] });
  });

  it("names the schema file in a schema problem", async () => {
    const zone = await newZone();
    const schema = join(await policyDir({ "schema.cedarschema": BROKEN_SCHEMA }), "schema.cedarschema");
    const run = await caracal(["policy", "validate", join(await policyDir({ "billing.cedar": BILLING }), "billing.cedar"), "--schema", schema, "--zone", zone]);
    expect(run.code).toBe(1);
    expect(lines(run.stdout)).toEqual([expect.stringMatching(new RegExp(`^${schema}:4:1: \\S`))]);
  });

  it("creates versions that list newest first across pages, and refuses an invalid set with every problem", async () => {
    const zone = await newZone();
    const created = await caracal(["policy", "create", await policyDir({ "billing.cedar": BILLING }), "--zone", zone, "-m", "first cut"]);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^version: +1$/m);
    expect(created.stdout).toMatch(/^content hash: +[0-9a-f]{64}$/m);
    expect(created.stdout).toMatch(/^author: +caracal-admin-cli$/m);
    expect(created.stderr).toContain(`caracal policy activate 1 --zone ${zone}`);
    expect((await caracal(["policy", "create", await policyDir({ "billing.cedar": BILLING, "interns.cedar": INTERNS }), "--zone", zone, "-m", "no interns"])).code).toBe(0);

    const set = await policyDir({ "broken.cedar": BROKEN });
    const refused = await caracal(["policy", "create", set, "--zone", zone, "-m", "oops"]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(lines(refused.stderr)).toEqual([
      expect.stringMatching(new RegExp(`^${join(set, "broken.cedar")}:3:\\d+: `)),
      expect.stringMatching(/^caracal: invalid_argument REASON_POLICY_INVALID: policy set has 1 problem; first: broken\.cedar:3:/),
    ]);

    const listed = await caracal(["policy", "list", "--zone", zone, "--page-size", "1"]);
    expect(listed.code).toBe(0);
    const [header, ...rows] = lines(listed.stdout);
    expect(header).toMatch(/^ACTIVE +VERSION +CREATED +AUTHOR +HASH +MESSAGE$/);
    expect(rows).toEqual([expect.stringMatching(/^ +2 +\S+ +caracal-admin-cli +[0-9a-f]{12} +no interns$/), expect.stringMatching(/^ +1 .* first cut$/)]);
  });

  it("refuses an activation whose --expect is stale with exit 1 and the conflict", async () => {
    const zone = await newZone();
    await activeSet(zone, { "billing.cedar": BILLING });
    expect((await caracal(["policy", "create", await policyDir({ "interns.cedar": INTERNS }), "--zone", zone, "-m", "second"])).code).toBe(0);
    const run = await caracal(["policy", "activate", "2", "--expect", "none", "--zone", zone, "--reason", "race"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(lines(run.stderr)).toEqual([
      `switching zone ${zone} from none to version 2`,
      "caracal: aborted REASON_VERSION_CONFLICT: the active version is 1, not none; read the active version and try again",
    ]);
  });

  it("activates after reading the active version, then shows it with its source and marks it in the list", async () => {
    const zone = await newZone();
    expect(await caracal(["policy", "show", "--zone", zone])).toEqual({ code: 0, stdout: "", stderr: `no active policy set in zone ${zone}: grants alone decide\n` });
    await activeSet(zone, { "billing.cedar": BILLING });
    expect((await caracal(["policy", "create", await policyDir({ "billing.cedar": BILLING, "interns.cedar": INTERNS }), "--zone", zone, "-m", "no interns"])).code).toBe(0);

    const activated = await caracal(["policy", "activate", "2", "--zone", zone, "--reason", "reviewed"]);
    expect(activated.code).toBe(0);
    expect(activated.stderr).toBe(`switching zone ${zone} from version 1 to version 2\n`);
    expect(activated.stdout).toMatch(/^active version: +2\nprevious version: +version 1\n$/);

    const shown = await caracal(["policy", "show", "--zone", zone]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^version: +2$/m);
    expect(shown.stdout).toMatch(/^reason: +reviewed$/m);
    expect(shown.stdout).toContain(`\n==> billing.cedar <==\n${BILLING}\n==> interns.cedar <==\n${INTERNS}`);

    const older = await caracal(["policy", "show", "1", "--zone", zone]);
    expect(older.code).toBe(0);
    expect(older.stdout).toMatch(/^message: +setup\nactive: +no\n$/m);
    expect(older.stdout).toContain("\n==> billing.cedar <==\n");
    const missing = await caracal(["policy", "show", "9", "--zone", zone]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`REASON_NOT_FOUND: policy set version 9 of zone ${zone} does not exist`);
    const json = await caracal(["policy", "show", "2", "--zone", zone, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ version: "2", source: { documents: [{ name: "billing.cedar", text: BILLING }, { name: "interns.cedar" }] } });

    expect(lines((await caracal(["policy", "list", "--zone", zone])).stdout).slice(1)).toEqual([
      expect.stringMatching(/^\* +2 /),
      expect.stringMatching(/^ +1 /),
    ]);
  });

  it.each([
    ["an application reading invoices", [], "allow", "read-invoices"],
    ["an intern", ["--label", "role=intern"], "deny", "no-interns"],
  ])("evaluates a question and prints the decision and its determining policy: %s", async (_, flags, decision, policy) => {
    const zone = await newZone();
    const version = await activeSet(zone, { "billing.cedar": BILLING, "interns.cedar": INTERNS });
    const run = await caracal(["policy", "eval", "--zone", zone, "--client", "billing-agent", "--resource", "billing-api", "--scope", "invoices.read", ...flags]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^decision: +${decision}$`, "m"));
    expect(run.stdout).toMatch(new RegExp(`^policies: +${policy}$`, "m"));
    expect(run.stdout).toMatch(new RegExp(`^version: +version ${version}$`, "m"));
  });

  it("evaluates the session question without a resource, and prints protobuf JSON with --json", async () => {
    const zone = await newZone();
    await activeSet(zone, { "billing.cedar": BILLING });
    const run = await caracal(["policy", "eval", "--zone", zone, "--client", "billing-agent", "--scope", "StartSession", "--json"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ outcome: { decision: "DECISION_ALLOW", determiningPolicies: ["start-sessions"] }, policySetVersion: "1" });
    const denied = await caracal(["policy", "eval", "--zone", zone, "--client", "billing-agent", "--resource", "billing-api", "--scope", "invoices.write"]);
    expect(denied.code).toBe(0);
    expect(denied.stdout).toMatch(/^decision: +deny\npolicies: +-\nreasons: +no policy permits this request \(default deny\)$/m);
  });

  it("simulates a candidate directory on a requests file and shows the change group", async () => {
    const zone = await newZone();
    await activeSet(zone, { "billing.cedar": BILLING });
    const candidate = await policyDir({ "billing.cedar": BILLING, "lockdown.cedar": LOCKDOWN });
    const requests = join(await policyDir({}), "requests.json");
    const ask = (clientId: string) => ({ clientId, resource: "billing-api", scope: "invoices.read", time: "2025-01-31T12:00:00Z" });
    await writeFile(requests, JSON.stringify([ask("billing-agent"), ask("billing-agent"), ask("report-agent")]));

    const run = await caracal(["policy", "simulate", candidate, "--requests", requests, "--zone", zone, "--verbose"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^baseline: +version 1\ncandidate: +the given files \(not stored\)\nevaluated: +3\nchanged: +2\n/);
    const table = lines(run.stdout.split("\n\n")[1]!);
    expect(table).toEqual([
      expect.stringMatching(/^CLIENT +RESOURCE +SCOPE +CHANGE +POLICIES +COUNT$/),
      expect.stringMatching(/^billing-agent +billing-api +invoices\.read +allow → deny +read-invoices → lockdown +2$/),
    ]);
    expect(lines(run.stdout.split("\n\n")[2]!).slice(1)).toEqual([
      expect.stringMatching(/^2025-01-31T12:00:00Z +billing-agent .* allow → deny +read-invoices → lockdown +-$/),
      expect.stringMatching(/^2025-01-31T12:00:00Z +billing-agent /),
    ]);

    const json = await caracal(["policy", "simulate", candidate, "--requests", requests, "--zone", zone, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ baselineVersion: "1", candidateVersion: "0", evaluated: 3, changed: 2, groups: [{ count: 2, after: "DECISION_DENY" }] });

    const same = await caracal(["policy", "simulate", "--version", "1", "--requests", requests, "--zone", zone]);
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/^changed: +0$/m);
    expect(same.stderr).toBe("no decision would change\n");
  });

  it("names the target it cannot reach, and blames the admin profile when its credential is refused", async () => {
    const unreachable = await caracal(["policy", "list", "--zone", "z", "--target", "http://127.0.0.1:1"]);
    expect(unreachable.code).toBe(1);
    expect(lines(unreachable.stderr)).toEqual([expect.stringMatching(/^caracal: cannot reach Caracal at http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/)]);

    const stale = join(dir, `stale-profile-${kind}.json`);
    await writeFile(stale, JSON.stringify({ ...harness.profile, client_secret: "cs_not-the-admin-secret" }), { mode: 0o600 });
    const refused = await caracal(["policy", "list", "--zone", "z", "--profile", stale]);
    expect(refused.code).toBe(1);
    expect(lines(refused.stderr)).toEqual([`caracal: admin profile ${stale} was refused: unauthenticated REASON_INVALID_CLIENT: unknown application or wrong credential`]);
  });

  it.each([
    [["policy", "validate", "/nonexistent/policies", "--zone", "z"], "caracal: cannot read /nonexistent/policies: ENOENT"],
    [["policy", "validate", "policies/"], "caracal: required option '--zone <zone>' not specified"],
    [["policy", "create", "policies/", "--zone", "z"], "caracal: required option '-m, --message <text>' not specified"],
    [["policy", "simulate", "--zone", "z", "--recent", "10"], "caracal: give the candidate as .cedar paths or as --version <n>, not both"],
    [["policy", "simulate", "--version", "2", "--zone", "z"], "caracal: give the traffic as --recent <n> or --requests <file>, not both"],
    [["policy", "simulate", "--version", "2", "--recent", "0", "--zone", "z"], "caracal: option '--recent <n>' argument '0' is invalid. expected a number from 1 to 10000"],
    [["policy", "activate", "latest", "--zone", "z", "--reason", "x"], "caracal: command-argument value 'latest' is invalid for argument 'version'. expected a version number, e.g. 3"],
    [["policy", "eval", "--zone", "z", "--client", "a", "--scope", "invoices.read"], "caracal: --resource is required unless --scope is StartSession"],
  ])("exits 2 on a usage error without calling the server: %j", async (args, line) => {
    const run = await caracal(args);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(lines(run.stderr)[0]).toBe(line);
  });
});
