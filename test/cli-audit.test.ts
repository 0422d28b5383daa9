import { randomUUID } from "node:crypto";
import { appendFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { errorDetailOf } from "../interceptors/caracal-error.js";
import { HARNESS_KINDS, startHarness, type CaracalHarness } from "./support/caracal-harness.js";
import { startCli, type RunningCli as Running } from "./support/cli-run.js";



/** What one zone's traffic left behind. */
interface Traffic {
  /** The refused exchange (invoices.write is not granted). */
  readonly deniedDecisionId: string;
  /** The x-request-id of the allowed exchange. */
  readonly allowedRequestId: string;
}

function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

/** The `metadata.sequence` of each export line, as numbers. */
function sequences(jsonl: string): number[] {
  return lines(jsonl).map((line) => Number((JSON.parse(line) as { metadata: { sequence: string } }).metadata.sequence));
}

function oneTo(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

const LEDGER_WAIT = { timeout: 20_000, interval: 100 };

describe.each(HARNESS_KINDS)("caracal audit against a running server on %s", (kind) => {
  let harness: CaracalHarness;
  let dir: string;
  let zones = 0;

  beforeAll(async () => {
    harness = await startHarness(kind);
    dir = await mkdtemp(join(tmpdir(), "caracal-cli-audit-"));
  }, 120_000);

  afterAll(async () => {
    await harness?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Starts `caracal <args>` in-process through `main`, with the harness's
   * admin profile, capturing what it writes (a write's callback is called,
   * as a real stream does); no run may print the admin secret. One command
   * at a time: the capture replaces process.stdout.write.
   */
  function start(args: readonly string[]): Running {
    return startCli(args.includes("--profile") ? args : [...args, "--profile", harness.profilePath], { secret: harness.profile.client_secret });
  }

  const caracal = (args: readonly string[]) => start(args).finished;

  /** A zone with `billing-api` (invoices.read, invoices.write) and `billing-agent` granted invoices.read; returns its secret. */
  async function billingZone(): Promise<{ zone: string; secret: string }> {
    const zone = `audit-cli-${++zones}`;
    await harness.admin.createZone({ zone });
    await harness.admin.createResource({ zone, resourceId: "billing-api", scopes: [{ name: "invoices.read" }, { name: "invoices.write" }] });
    const { clientSecret: secret } = await harness.admin.createApplication({ zone, clientId: "billing-agent" });
    await harness.admin.createGrant({ zone, clientId: "billing-agent", resourceId: "billing-api", scopes: ["invoices.read"] });
    return { zone, secret };
  }

  /** A session, an allowed exchange and a refused one; returns the refusal's decision id. */
  async function traffic(zone: string, secret: string): Promise<Traffic> {
    const allowedRequestId = `req-${randomUUID()}`;
    const { sessionMandate } = await harness.sts.startSession({ zone, clientId: "billing-agent", credential: { case: "clientSecret", value: secret } });
    await harness.sts.exchange(
      { subjectToken: sessionMandate, resources: ["billing-api"], scopes: ["invoices.read"] },
      { headers: { "x-request-id": allowedRequestId } },
    );
    const refused = await harness.sts.exchange({ subjectToken: sessionMandate, resources: ["billing-api"], scopes: ["invoices.write"] }).then(
      () => expect.unreachable("invoices.write is not granted"),
      (error: unknown) => error,
    );
    const deniedDecisionId = errorDetailOf(refused)?.decisionId ?? "";
    expect(deniedDecisionId).not.toBe("");
    return { deniedDecisionId, allowedRequestId };
  }

  /** The zone's chain length, once every event published so far is in the ledger. */
  async function settledLedger(zone: string, atLeast: number): Promise<number> {
    await harness.audit.settle();
    const published = harness.audit.events.filter((tapped) => tapped.zone === zone).length;
    expect(published).toBeGreaterThanOrEqual(atLeast);
    await vi.waitFor(async () => expect(await ledgerHead(zone)).toBe(published), LEDGER_WAIT);
    return published;
  }

  async function ledgerHead(zone: string): Promise<number> {
    const [row] = await harness.sql<{ n: string }>("SELECT count(*) AS n FROM audit_events WHERE zone = $1", [zone]);
    return Number(row?.n ?? 0);
  }

  describe("on a zone with an allowed and a refused exchange", () => {
    let zone: string;
    let seen: Traffic;

    beforeAll(async () => {
      const made = await billingZone();
      zone = made.zone;
      seen = await traffic(zone, made.secret);
      await settledLedger(zone, 7);
    }, 60_000);

    it("lists the records newest first in a table, and as protobuf JSON with --json", async () => {
      const run = await caracal(["audit", "query", "--zone", zone]);
      expect(run).toMatchObject({ code: 0, stderr: "" });
      const [header, ...rows] = lines(run.stdout);
      expect(header).toMatch(/^TIME +SEQ +TYPE +DECISION +REASON +CLIENT +RESOURCES\/SCOPES +DECISION ID$/);
      expect(rows.map((row) => Number(row.split(/ +/)[1]))).toEqual(oneTo(rows.length).reverse());
      expect(rows).toContainEqual(
        expect.stringMatching(new RegExp(`^\\S+Z +\\d+ +exchange +deny +scope-not-granted +billing-agent +billing-api/invoices\\.write +${seen.deniedDecisionId}$`)),
      );
      expect(rows).toContainEqual(expect.stringMatching(/ +start-session +allow +- +billing-agent +/));
      expect(rows).toContainEqual(expect.stringMatching(/ +admin-change +- +grant created by caracal-admin-cli +billing-agent +billing-api\/invoices\.read +-$/));
      expect(rows.at(-1)).toMatch(/ +1 +admin-change +- +zone created by caracal-admin-cli +- +- +-$/);

      const json = JSON.parse((await caracal(["audit", "query", "--zone", zone, "--json"])).stdout) as { records: { sequence: string; event: object }[] };
      expect(json.records.map((r) => r.sequence)).toEqual(oneTo(rows.length).reverse().map(String));
      expect(json.records).toContainEqual(
        expect.objectContaining({ event: expect.objectContaining({ decision: "AUDIT_DECISION_DENY", reason: "REASON_SCOPE_NOT_GRANTED", decisionId: seen.deniedDecisionId }) }),
      );
    });

    it.each([
      [["--decision", "deny"], ["exchange deny"]],
      [["--decision", "allow", "--type", "exchange"], ["exchange allow"]],
      [["--type", "start-session", "--type", "exchange"], ["exchange deny", "exchange allow", "start-session allow"]],
      [["--client", "billing-agent", "--resource", "billing-api"], ["exchange deny", "exchange allow", "admin-change unspecified"]],
    ])("filters the records: %j", async (filter, expected) => {
      const run = await caracal(["audit", "query", "--zone", zone, ...filter, "--json"]);
      expect(run.code).toBe(0);
      const { records } = JSON.parse(run.stdout) as { records: { event: { type: string; decision: string } }[] };
      const short = (name: string) => name.replace(/^(EVENT_TYPE|AUDIT_DECISION)_/, "").toLowerCase().replace("_", "-");
      expect(records.map((r) => `${short(r.event.type)} ${short(r.event.decision)}`)).toEqual(expected);
    });

    it("filters by request id, decision id and time, and pages up to --limit", async () => {
      const byRequest = await caracal(["audit", "query", "--zone", zone, "--request-id", seen.allowedRequestId]);
      expect(lines(byRequest.stdout).slice(1)).toEqual([expect.stringMatching(/ exchange +allow +- +billing-agent +billing-api\/invoices\.read /)]);
      const byDecision = await caracal(["audit", "query", "--zone", zone, "--decision-id", seen.deniedDecisionId]);
      expect(lines(byDecision.stdout)).toHaveLength(2);

      const now = new Date(harness.clock.now());
      const later = new Date(harness.clock.now() + 1_000).toISOString();
      const inWindow = await caracal(["audit", "query", "--zone", zone, "--since", now.toISOString(), "--until", later, "--json"]);
      expect((JSON.parse(inWindow.stdout) as { records: unknown[] }).records.length).toBeGreaterThanOrEqual(7);
      const after = await caracal(["audit", "query", "--zone", zone, "--since", later]);
      expect(after).toEqual({ code: 0, stdout: "", stderr: `no audit records in zone ${zone} match\n` });

      const limited = await caracal(["audit", "query", "--zone", zone, "--limit", "3"]);
      expect(lines(limited.stdout)).toHaveLength(4);
      expect(limited.stderr).toBe("showing the newest 3; raise --limit for more\n");
    });

    it("explains a refusal by its decision id: the summary first, then each step", async () => {
      const run = await caracal(["audit", "explain", "--zone", zone, "--decision-id", seen.deniedDecisionId]);
      expect(run.code).toBe(0);
      const [summary, ...steps] = lines(run.stdout);
      expect(summary).toBe("denied: scope invoices.write is not granted on billing-api");
      expect(steps).toEqual([expect.stringMatching(/^\S+Z +\d+ +the STS refused billing-agent invoices\.write on billing-api: scope invoices\.write is not granted/)]);

      const json = JSON.parse((await caracal(["audit", "explain", "--zone", zone, "--decision-id", seen.deniedDecisionId, "--json"])).stdout);
      expect(json).toMatchObject({ decision: "AUDIT_DECISION_DENY", steps: [{ record: { event: { decisionId: seen.deniedDecisionId } } }] });

      const allowed = await caracal(["audit", "explain", "--zone", zone, "--request-id", seen.allowedRequestId]);
      expect(lines(allowed.stdout)[0]).toMatch(/^allowed: the STS issued billing-agent mandate \S+ for invoices\.read on billing-api/);
      const unknown = await caracal(["audit", "explain", "--zone", zone, "--request-id", "req-never-made"]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe(`caracal: not_found REASON_NOT_FOUND: the ledger holds nothing for request_id req-never-made in zone ${zone}\n`);
    });
  });

  it("verifies an intact chain, then names the sequence of a tampered row and exits 1", async () => {
    const { zone, secret } = await billingZone();
    await traffic(zone, secret);
    const rows = await settledLedger(zone, 7);
    expect(await caracal(["audit", "verify", "--zone", zone])).toEqual({ code: 0, stdout: `intact: ${rows} rows checked\n`, stderr: "" });

    await harness.sql("UPDATE audit_events SET decision = (decision + 1) % 4 WHERE zone = $1 AND seq = 2", [zone]);
    const broken = await caracal(["audit", "verify", "--zone", zone]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toBe("broken at sequence 2 (edited): row 2 was changed: column decision does not match the signed payload\n");
    expect(broken.stderr).toBe(`caracal: the audit chain of zone ${zone} is broken at sequence 2\n`);
    const json = await caracal(["audit", "verify", "--zone", zone, "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ intact: false, rowsChecked: "1", firstBreak: { sequence: "2", kind: "CHAIN_BREAK_KIND_EDITED" } });

    // Row 2's HMAC is untouched, so the rows after it still chain to it.
    expect((await caracal(["audit", "verify", "--zone", zone, "--from", "3"])).stdout).toBe(`intact: ${rows - 2} rows checked\n`);
    expect((await caracal(["audit", "verify", "--zone", zone, "--to", "1"])).stdout).toBe("intact: 1 rows checked\n");
  });

  it("exports to a file, and each later run appends only the records after its last complete line", async () => {
    const { zone, secret } = await billingZone();
    await traffic(zone, secret);
    const first = await settledLedger(zone, 7);
    const file = join(dir, `${zone}.jsonl`);

    expect(await caracal(["audit", "export", "--zone", zone, "--output", file])).toEqual({ code: 0, stdout: "", stderr: "" });
    const exported = await readFile(file, "utf8");
    expect(sequences(exported)).toEqual(oneTo(first));
    expect(JSON.parse(lines(exported)[0]!)).toMatchObject({ metadata: { log_name: zone, log_provider: "caracal.ledger", sequence: "1", product: { name: "Caracal" } } });

    const again = await caracal(["audit", "export", "--zone", zone, "--output", file]);
    expect(again).toEqual({ code: 0, stdout: "", stderr: `resuming zone ${zone} after sequence ${first}\n` });
    expect(await readFile(file, "utf8")).toBe(exported);

    await traffic(zone, secret);
    const second = await settledLedger(zone, first + 1);
    expect((await caracal(["audit", "export", "--zone", zone, "--output", file])).code).toBe(0);
    expect(sequences(await readFile(file, "utf8"))).toEqual(oneTo(second));

    // An export killed mid-write leaves half a line; the next run cuts it and carries on.
    await appendFile(file, '{"time":1,"metadata":{"seq');
    await traffic(zone, secret);
    const third = await settledLedger(zone, second + 1);
    const resumed = await caracal(["audit", "export", "--zone", zone, "--output", file]);
    expect(resumed.code).toBe(0);
    expect(lines(resumed.stderr)[0]).toBe(`cut a partial last line (26 bytes) from ${file}, left by an interrupted export`);
    expect(sequences(await readFile(file, "utf8"))).toEqual(oneTo(third));
  });

  it("exports to stdout from a cursor, and keeps a cursor file that the next run resumes after", async () => {
    const { zone, secret } = await billingZone();
    await traffic(zone, secret);
    const first = await settledLedger(zone, 7);
    const cursorFile = join(dir, `${zone}.cursor`);

    const run = await caracal(["audit", "export", "--zone", zone, "--cursor-file", cursorFile]);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(sequences(run.stdout)).toEqual(oneTo(first));
    expect(JSON.parse(await readFile(cursorFile, "utf8"))).toEqual({ provider: "caracal.ledger", zone, cursor: String(first) });
    expect(await caracal(["audit", "export", "--zone", zone, "--cursor-file", cursorFile])).toMatchObject({ code: 0, stdout: "" });

    await traffic(zone, secret);
    const second = await settledLedger(zone, first + 1);
    const resumed = await caracal(["audit", "export", "--zone", zone, "--cursor-file", cursorFile]);
    expect(sequences(resumed.stdout)).toEqual(oneTo(second).slice(first));
    expect(JSON.parse(await readFile(cursorFile, "utf8"))).toEqual({ provider: "caracal.ledger", zone, cursor: String(second) });

    expect(sequences((await caracal(["audit", "export", "--zone", zone, "--cursor", "5"])).stdout)).toEqual(oneTo(second).slice(5));
  });

  it("follows an export until Ctrl-C and exits 0 with every stored record written once", async () => {
    const { zone, secret } = await billingZone();
    await traffic(zone, secret);
    const first = await settledLedger(zone, 7);
    const file = join(dir, `${zone}-follow.jsonl`);

    const sigints = process.listenerCount("SIGINT");
    const follow = start(["audit", "export", "--zone", zone, "--follow", "--output", file]);
    await vi.waitFor(async () => expect(sequences(await readFile(file, "utf8").catch(() => ""))).toEqual(oneTo(first)), LEDGER_WAIT);
    await traffic(zone, secret);
    const second = await settledLedger(zone, first + 1);
    await vi.waitFor(async () => expect(sequences(await readFile(file, "utf8"))).toEqual(oneTo(second)), LEDGER_WAIT);

    expect(process.listenerCount("SIGINT")).toBe(sigints + 1);
    process.emit("SIGINT");
    expect(await follow.finished).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(process.listenerCount("SIGINT")).toBe(sigints);
    expect(sequences(await readFile(file, "utf8"))).toEqual(oneTo(second));
  });

  it("ends a following export with exit 1 when the server shuts down, keeping the file whole", async () => {
    const own = await startHarness(kind);
    try {
      await own.admin.createZone({ zone: "shutting-down" });
      const file = join(dir, `shutting-down-${kind}.jsonl`);
      const follow = start(["audit", "export", "--zone", "shutting-down", "--follow", "--output", file, "--profile", own.profilePath]);
      await vi.waitFor(async () => expect(sequences(await readFile(file, "utf8").catch(() => ""))).toEqual([1]), LEDGER_WAIT);
      await own.server.close();
      expect(await follow.finished).toEqual({ code: 1, stdout: "", stderr: "caracal: the server ended the export stream; run the same command again to resume\n" });
      expect(sequences(await readFile(file, "utf8"))).toEqual([1]);
    } finally {
      await own.stop();
    }
  });

  it("tails only records stored after it started, one JSON object per line, until Ctrl-C", async () => {
    const { zone, secret } = await billingZone();
    const before = await traffic(zone, secret);
    await settledLedger(zone, 7);

    const tail = start(["audit", "tail", "--zone", zone, "--decision", "deny", "--json"]);
    const refusals: string[] = [];
    // The stream starts at the ledger's head when the server gets it; refuse again until one shows.
    await vi.waitFor(
      async () => {
        refusals.push((await traffic(zone, secret)).deniedDecisionId);
        expect(tail.stdout()).toContain('"decisionId"');
      },
      { timeout: 20_000, interval: 500 },
    );
    process.emit("SIGINT");
    const run = await tail.finished;
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(`waiting for new records in zone ${zone} (Ctrl-C to stop)\n`);
    const records = lines(run.stdout).map((line) => JSON.parse(line) as { sequence: string; event: { decision: string; decisionId: string } });
    expect(records.length).toBeGreaterThan(0);
    for (const { event } of records) {
      expect(event.decision).toBe("AUDIT_DECISION_DENY");
      expect(refusals).toContain(event.decisionId);
    }
    expect(run.stdout).not.toContain(before.deniedDecisionId);
  });

  it.each([
    [["audit", "query"], "caracal: required option '--zone <zone>' not specified"],
    [["audit", "query", "--zone", "z", "--decision", "maybe"], "caracal: option '--decision <decision>' argument 'maybe' is invalid. expected one of allow, deny, step-up"],
    [
      ["audit", "query", "--zone", "z", "--type", "login"],
      "caracal: option '--type <type>' argument 'login' is invalid. expected one of start-session, exchange, edge-call, admin-change, policy-change, revocation, approval",
    ],
    [["audit", "query", "--zone", "z", "--since", "yesterday"], "caracal: option '--since <time>' argument 'yesterday' is invalid. expected an ISO 8601 time, e.g. 2025-01-31T22:00:00Z"],
    [["audit", "query", "--zone", "z", "--limit", "0"], "caracal: option '--limit <n>' argument '0' is invalid. expected a number from 1 to 100000"],
    [["audit", "explain", "--zone", "z"], "caracal: name exactly one of --request-id, --decision-id"],
    [["audit", "explain", "--zone", "z", "--request-id", "a", "--decision-id", "b"], "caracal: name exactly one of --request-id, --decision-id"],
    [["audit", "verify", "--zone", "z", "--from", "0"], "caracal: option '--from <seq>' argument '0' is invalid. expected a sequence number, 1 or more"],
    [["audit", "export", "--zone", "z", "--output", "x.jsonl", "--cursor", "3"], "caracal: --output resumes from its own last line; --cursor and --cursor-file are for stdout"],
    [["audit", "export", "--zone", "z", "--cursor-file", "c.json", "--cursor", "3"], "caracal: give --cursor-file or --cursor, not both"],
    [["audit", "export", "--zone", "z", "--cursor", "next"], "caracal: option '--cursor <seq>' argument 'next' is invalid. expected a sequence number from a previous export"],
  ])("exits 2 on a usage error without calling the server: %j", async (args, line) => {
    const run = await caracal([...args, "--target", "http://127.0.0.1:1"]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(lines(run.stderr)[0]).toBe(line);
  });

  it("refuses to resume from a file or cursor file that is not this zone's export, with exit 2", async () => {
    const notExport = join(dir, "notes.txt");
    await writeFile(notExport, "dear diary\n");
    const run = await caracal(["audit", "export", "--zone", "z", "--output", notExport, "--target", "http://127.0.0.1:1"]);
    expect(run).toEqual({ code: 2, stdout: "", stderr: `caracal: --output ${notExport}: its last line is not a Caracal export line, so there is no place to resume from\n` });
    expect(await readFile(notExport, "utf8")).toBe("dear diary\n");

    const otherZone = join(dir, "other.jsonl");
    await writeFile(otherZone, `${JSON.stringify({ metadata: { log_name: "acme", sequence: "4" } })}\n`);
    const wrongZone = await caracal(["audit", "export", "--zone", "z", "--output", otherZone, "--target", "http://127.0.0.1:1"]);
    expect(wrongZone).toMatchObject({ code: 2, stderr: `caracal: --output ${otherZone} holds the export of zone acme, not z\n` });

    const cursorFile = join(dir, "acme.cursor");
    await writeFile(cursorFile, JSON.stringify({ zone: "acme", cursor: "4" }));
    const wrongCursor = await caracal(["audit", "export", "--zone", "z", "--cursor-file", cursorFile, "--target", "http://127.0.0.1:1"]);
    expect(wrongCursor).toMatchObject({ code: 2, stderr: `caracal: --cursor-file ${cursorFile} is the cursor of zone acme, not z\n` });
  });
});
