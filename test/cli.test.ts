import { spawn } from "node:child_process";
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRemoteJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MANDATE_TYPE } from "../interceptors/mandate-claims.js";
import { loadConfig } from "../services/config.js";
import { createLogger, serve, type RunningCaracal } from "../services/serve.js";
import { runCli, type CliRun as Run } from "./support/cli-run.js";


const caracalBin = fileURLToPath(new URL("../bin/caracal.js", import.meta.url));

let adminSecret: string | undefined;

/**
 * Runs `caracal <args>` in-process through `main`, with exactly the given
 * CARACAL_* environment, capturing what it writes. No command may ever print
 * the admin profile's secret, so every run checks that.
 */
async function caracal(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const saved = Object.fromEntries(Object.entries(process.env).filter(([key]) => key.startsWith("CARACAL_")));
  for (const key of Object.keys(saved)) delete process.env[key];
  Object.assign(process.env, env);
  try {
    return await runCli(args, adminSecret ? { secret: adminSecret } : {});
  } finally {
    for (const key of Object.keys(env)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

/** Runs the installed `caracal` bin as a separate process, as a shell would. */
function caracalProcess(args: readonly string[], stdin = ""): Promise<Run> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("CARACAL_")));
  const child = spawn(process.execPath, [caracalBin, ...args], { env: inherited, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  child.stdin.end(stdin);
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

describe("the caracal CLI against a running server", () => {
  let dataDir: string;
  let server: RunningCaracal;
  let profilePath: string;
  let target: string;

  /** Runs an admin command with the server's admin profile. */
  const admin = (args: readonly string[]) => caracal([...args, "--profile", profilePath]);

  /** Creates an application and returns its client secret. */
  async function newApplication(zone: string, clientId: string): Promise<string> {
    const created = await admin(["app", "create", clientId, "--zone", zone, "--json"]);
    expect(created.code).toBe(0);
    return (JSON.parse(created.stdout) as { clientSecret: string }).clientSecret;
  }

  /** A zone with `billing-api` (invoices.read, invoices.write) and `billing-agent` granted invoices.read. */
  async function billingZone(zone: string): Promise<{ secret: string }> {
    expect((await admin(["zone", "create", zone])).code).toBe(0);
    expect((await admin(["resource", "create", "billing-api", "--zone", zone, "--scope", "invoices.read", "invoices.write"])).code).toBe(0);
    const secret = await newApplication(zone, "billing-agent");
    expect((await admin(["grant", "billing-agent", "billing-api", "--zone", zone, "--scope", "invoices.read"])).code).toBe(0);
    return { secret };
  }

  async function sessionMandate(zone: string, secret: string): Promise<string> {
    const run = await caracal(["token", "session", "--zone", zone, "--client-id", "billing-agent", "--target", target], {
      CARACAL_CLIENT_SECRET: secret,
    });
    expect(run.code).toBe(0);
    return run.stdout.trim();
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "caracal-cli-client-"));
    const config = loadConfig({ CARACAL_LISTEN: "127.0.0.1:0", CARACAL_DATA_DIR: dataDir, CARACAL_LOG_LEVEL: "silent" });
    server = await serve(config, createLogger(config.logLevel));
    profilePath = join(dataDir, "admin-profile.json");
    const profile = JSON.parse(await readFile(profilePath, "utf8")) as { target: string; client_secret: string };
    target = profile.target;
    adminSecret = profile.client_secret;
  });

  afterAll(async () => {
    adminSecret = undefined;
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it.each([[["--help"]], [["zone", "--help"]], [["app", "create", "--help"]], [["grant", "--help"]], [["token", "exchange", "--help"]], [["help", "key"]]])(
    "prints help and exits 0 for %j",
    async (args) => {
      const run = await caracal(args);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^Usage: caracal/);
    },
  );

  it("lists every client command in the top-level help", async () => {
    const { stdout } = await caracal(["--help"]);
    for (const command of ["serve", "zone", "app", "resource", "grant", "key", "token"]) expect(stdout).toMatch(new RegExp(`^  ${command}\\b`, "m"));
  });

  it("takes a new user from an empty zone to resource mandates that verify against the zone's JWKS, across a key rotation", async () => {
    const zone = await admin(["zone", "create", "acme", "--display-name", "Acme"]);
    expect(zone).toMatchObject({ code: 0, stderr: "" });
    expect(zone.stdout).toMatch(/^zone: +acme$/m);

    const resource = await admin(["resource", "create", "billing-api", "--zone", "acme", "--scope", "invoices.read", "invoices.write"]);
    expect(resource.code).toBe(0);
    expect(resource.stdout).toMatch(/^scopes: +invoices\.read,invoices\.write$/m);

    const app = await admin(["app", "create", "billing-agent", "--zone", "acme"]);
    expect(app.code).toBe(0);
    const secret = /^client secret: +(cs_\S+)$/m.exec(app.stdout)?.[1];
    expect(secret).toBeDefined();
    expect(app.stderr).toContain("shown only now");

    const grant = await admin(["grant", "billing-agent", "billing-api", "--zone", "acme", "--scope", "invoices.read"]);
    expect(grant.code).toBe(0);
    expect(grant.stdout).toMatch(/^scopes: +invoices\.read$/m);

    const session = await caracal(["token", "session", "--zone", "acme", "--client-id", "billing-agent", "--target", target], {
      CARACAL_CLIENT_SECRET: secret!,
    });
    expect(session.code).toBe(0);
    expect(lines(session.stdout)).toHaveLength(1);
    const sessionFile = join(dataDir, "session-mandate");
    await writeFile(sessionFile, session.stdout, { mode: 0o600 });

    const exchange = (args: string[] = []) =>
      caracal(["token", "exchange", "--subject-token-file", sessionFile, "--resource", "billing-api", "--scope", "invoices.read", ...args, "--target", target]);
    const first = await exchange();
    expect(first.code).toBe(0);
    const firstMandate = first.stdout.trim();
    const jwksUrl = new URL(`${target}/.well-known/jwks.json?zone=acme`);
    const verified = await jwtVerify(firstMandate, createRemoteJWKSet(jwksUrl), { typ: MANDATE_TYPE });
    expect(verified.payload).toMatchObject({ zone: "acme", use: "resource", client_id: "billing-agent", scope: "invoices.read", target: ["billing-api"] });

    const rotated = await admin(["key", "rotate", "--zone", "acme", "--json"]);
    expect(rotated.code).toBe(0);
    const keys = JSON.parse(rotated.stdout) as { current: { keyId: string }; previous: { keyId: string; state: string } };
    expect(keys.previous).toMatchObject({ keyId: decodeProtectedHeader(firstMandate).kid, state: "KEY_STATE_RETIRING" });

    const second = await exchange();
    expect(second.code).toBe(0);
    const secondMandate = second.stdout.trim();
    expect(decodeProtectedHeader(secondMandate).kid).toBe(keys.current.keyId);
    const jwksAfterRotation = createRemoteJWKSet(jwksUrl);
    await expect(jwtVerify(firstMandate, jwksAfterRotation, { typ: MANDATE_TYPE })).resolves.toBeDefined();
    await expect(jwtVerify(secondMandate, jwksAfterRotation, { typ: MANDATE_TYPE })).resolves.toBeDefined();
  });

  it("prints protobuf JSON with --json: every field present, enums by name, int64 as strings", async () => {
    const zone = await admin(["zone", "create", "json-zone", "--max-session-ttl", "1800", "--json"]);
    expect(zone.code).toBe(0);
    expect(JSON.parse(zone.stdout)).toMatchObject({ zone: { zone: "json-zone", displayName: "", maxSessionTtl: "1800s" } });

    expect((await admin(["resource", "create", "billing-api", "--zone", "json-zone", "--scope", "invoices.read"])).code).toBe(0);
    const secret = await newApplication("json-zone", "billing-agent");
    expect(secret).toMatch(/^cs_/);
    const grant = await admin(["grant", "billing-agent", "billing-api", "--zone", "json-zone", "--scope", "invoices.read", "--json"]);
    expect(JSON.parse(grant.stdout)).toMatchObject({ grant: { clientId: "billing-agent", resourceId: "billing-api", scopes: ["invoices.read"] } });

    const apps = JSON.parse((await admin(["app", "list", "--zone", "json-zone", "--json"])).stdout) as { applications: unknown[] };
    expect(apps).toEqual({
      applications: [
        expect.objectContaining({ clientId: "billing-agent", state: "APPLICATION_STATE_ACTIVE", credentialKind: "CREDENTIAL_KIND_CLIENT_SECRET", labels: {} }),
      ],
      nextPageToken: "",
    });
    const resources = JSON.parse((await admin(["resource", "list", "--zone", "json-zone", "--json"])).stdout);
    expect(resources).toMatchObject({ resources: [{ resourceId: "billing-api", scopes: [{ name: "invoices.read", description: "" }] }] });
    const grants = JSON.parse((await admin(["grant", "list", "--zone", "json-zone", "--client-id", "billing-agent", "--json"])).stdout);
    expect(grants.grants).toHaveLength(1);
    const keys = JSON.parse((await admin(["key", "list", "--zone", "json-zone", "--json"])).stdout) as { keys: { state: string; algorithm: string }[] };
    expect(keys.keys.map((k) => k.state).sort()).toEqual(["KEY_STATE_CURRENT", "KEY_STATE_NEXT"]);
    const zones = JSON.parse((await admin(["zone", "list", "--json"])).stdout) as { zones: { zone: string }[] };
    expect(zones.zones.map((z) => z.zone)).toContain("json-zone");

    const session = await caracal(["token", "session", "--zone", "json-zone", "--client-id", "billing-agent", "--target", target, "--json"], {
      CARACAL_CLIENT_SECRET: secret,
    });
    const response = JSON.parse(session.stdout);
    expect(response).toMatchObject({ info: { use: "USE_SESSION", clientId: "billing-agent", policySetVersion: "0" } });
    expect(response.sessionMandate.split(".")).toHaveLength(3);
  });

  it("prints aligned tables without --json, and a note on stderr for an empty list", async () => {
    await billingZone("table-zone");
    const apps = await admin(["app", "list", "--zone", "table-zone"]);
    expect(lines(apps.stdout)[0]).toMatch(/^CLIENT ID +STATE +CREDENTIAL +DISPLAY NAME +LABELS +CREATED$/);
    expect(lines(apps.stdout)[1]).toMatch(/^billing-agent +active +client_secret +- +- +\d{4}-\d\d-\d\dT/);
    const [header, row] = lines((await admin(["resource", "list", "--zone", "table-zone"])).stdout);
    expect(row!.indexOf("invoices.read")).toBe(header!.indexOf("SCOPES"));

    expect((await admin(["zone", "create", "empty-zone"])).code).toBe(0);
    const empty = await admin(["app", "list", "--zone", "empty-zone"]);
    expect(empty).toEqual({ code: 0, stdout: "", stderr: "no applications in zone empty-zone\n" });
  });

  it("follows next_page_token to the last page", async () => {
    expect((await admin(["zone", "create", "paged"])).code).toBe(0);
    for (const id of ["r1", "r2", "r3", "r4", "r5"]) {
      expect((await admin(["resource", "create", id, "--zone", "paged", "--scope", "read"])).code).toBe(0);
    }
    const listed = await admin(["resource", "list", "--zone", "paged", "--page-size", "2", "--json"]);
    const ids = (JSON.parse(listed.stdout) as { resources: { resourceId: string }[] }).resources.map((r) => r.resourceId);
    expect(ids).toEqual(["r1", "r2", "r3", "r4", "r5"]);
  });

  it("refuses a scope outside the grant with exit 1 and the reason on one stderr line", async () => {
    const { secret } = await billingZone("refusals");
    const session = await sessionMandate("refusals", secret);
    const run = await caracal(["token", "exchange", "--resource", "billing-api", "--scope", "invoices.write", "--target", target], {
      CARACAL_SUBJECT_TOKEN: session,
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(lines(run.stderr)).toEqual([expect.stringMatching(/^caracal: permission_denied REASON_SCOPE_NOT_GRANTED: scope invoices\.write /)]);
  });

  it.each([
    [["app", "list", "--zone", "nowhere"]],
    [["resource", "create", "billing-api", "--zone", "nowhere", "--scope", "read"]],
    [["key", "rotate", "--zone", "nowhere"]],
  ])("exits 1 with REASON_ZONE_NOT_FOUND for an unknown zone: %j", async (args) => {
    const run = await admin(args);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual(["caracal: not_found REASON_ZONE_NOT_FOUND: zone nowhere does not exist"]);
  });

  it("refuses a disabled application at the STS with REASON_APPLICATION_DISABLED", async () => {
    const { secret } = await billingZone("disabling");
    const disabled = await admin(["app", "disable", "billing-agent", "--zone", "disabling"]);
    expect(disabled.code).toBe(0);
    expect(disabled.stdout).toMatch(/^state: +disabled$/m);
    const run = await caracal(["token", "session", "--zone", "disabling", "--client-id", "billing-agent", "--target", target], {
      CARACAL_CLIENT_SECRET: secret,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^caracal: permission_denied REASON_APPLICATION_DISABLED: /);
  });

  it("rotates a client secret: the new one works, the old one is refused after a zero overlap", async () => {
    const { secret: oldSecret } = await billingZone("rotation");
    const rotated = await admin(["app", "rotate-secret", "billing-agent", "--zone", "rotation", "--overlap", "0", "--json"]);
    expect(rotated.code).toBe(0);
    expect(rotated.stderr).toContain("shown only now");
    const newSecret = (JSON.parse(rotated.stdout) as { clientSecret: string }).clientSecret;
    expect(newSecret).not.toBe(oldSecret);
    await sessionMandate("rotation", newSecret);
    const old = await caracal(["token", "session", "--zone", "rotation", "--client-id", "billing-agent", "--target", target], {
      CARACAL_CLIENT_SECRET: oldSecret,
    });
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/^caracal: unauthenticated REASON_INVALID_CLIENT: /);
  });

  it("registers a private_key_jwt application from a public JWK file and refuses a private key file", async () => {
    expect((await admin(["zone", "create", "keyed"])).code).toBe(0);
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const publicFile = join(dataDir, "agent-public.jwk.json");
    const privateFile = join(dataDir, "agent-private.jwk.json");
    await writeFile(publicFile, JSON.stringify({ ...(await exportJWK(publicKey)), kid: "agent-1", alg: "ES256" }));
    await writeFile(privateFile, JSON.stringify({ ...(await exportJWK(privateKey)), kid: "agent-1", alg: "ES256" }));

    const created = await admin(["app", "create", "keyed-agent", "--zone", "keyed", "--public-key-file", publicFile, "--json"]);
    expect(created.code).toBe(0);
    const response = JSON.parse(created.stdout);
    expect(response).toMatchObject({ clientSecret: "", application: { credentialKind: "CREDENTIAL_KIND_PRIVATE_KEY_JWT", publicKeys: [{ kid: "agent-1" }] } });
    expect(created.stderr).toBe("");

    const refused = await admin(["app", "create", "leaky-agent", "--zone", "keyed", "--public-key-file", privateFile]);
    expect(refused.code).toBe(2);
    expect(lines(refused.stderr)).toEqual([`caracal: --public-key-file ${privateFile} holds a private key; pass the public JWK only`]);
  });

  it("finds the admin profile through CARACAL_PROFILE and CARACAL_DATA_DIR", async () => {
    expect((await caracal(["zone", "list"], { CARACAL_PROFILE: profilePath })).code).toBe(0);
    expect((await caracal(["zone", "list"], { CARACAL_DATA_DIR: dataDir })).code).toBe(0);
  });

  it("exits 2 with one line naming the path when the admin profile is missing", async () => {
    const empty = await mkdtemp(join(tmpdir(), "caracal-no-profile-"));
    try {
      const run = await caracal(["zone", "list"], { CARACAL_DATA_DIR: empty });
      expect(run.code).toBe(2);
      expect(lines(run.stderr)).toEqual([expect.stringContaining(`caracal: no admin profile at ${join(empty, "admin-profile.json")}`)]);
      const token = await caracal(["token", "session", "--zone", "acme", "--client-id", "a"], { CARACAL_DATA_DIR: empty, CARACAL_CLIENT_SECRET: "x" });
      expect(token.code).toBe(2);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("refuses an admin profile that group or others can read", async () => {
    const openProfile = join(dataDir, "open-profile.json");
    await copyFile(profilePath, openProfile);
    await chmod(openProfile, 0o644);
    const run = await caracal(["zone", "list", "--profile", openProfile]);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([`caracal: admin profile ${openProfile} is accessible to group or others (mode 0644); it holds the admin secret, run: chmod 600 ${openProfile}`]);
  });

  it("refuses a malformed admin profile without echoing its content", async () => {
    const broken = join(dataDir, "broken-profile.json");
    await writeFile(broken, '{"target": "http://127.0.0.1:1", "client_secret": cs_do-not-print-me', { mode: 0o600 });
    const run = await caracal(["zone", "list", "--profile", broken]);
    expect(run.code).toBe(2);
    expect(lines(run.stderr)).toEqual([`caracal: admin profile ${broken} is not valid JSON`]);

    await writeFile(broken, JSON.stringify({ target: "http://127.0.0.1:1", zone: "default" }), { mode: 0o600 });
    expect((await caracal(["zone", "list", "--profile", broken])).stderr).toBe(`caracal: admin profile ${broken} lacks "client_id" (a non-empty string)\n`);
  });

  it("blames the admin profile, with exit 1, when the server refuses its credential", async () => {
    const stale = join(dataDir, "stale-profile.json");
    const profile = JSON.parse(await readFile(profilePath, "utf8")) as Record<string, string>;
    await writeFile(stale, JSON.stringify({ ...profile, client_secret: "cs_not-the-admin-secret" }), { mode: 0o600 });
    const run = await caracal(["zone", "list", "--profile", stale]);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([`caracal: admin profile ${stale} was refused: unauthenticated REASON_INVALID_CLIENT: unknown application or wrong credential`]);
  });

  it.each([
    [["zone", "list", "--no-such-flag"], "caracal: unknown option '--no-such-flag'"],
    [["zone", "lst"], "caracal: unknown command 'lst'"],
    [["app", "list"], "caracal: required option '--zone <zone>' not specified"],
    [["zone", "create", "x", "--max-session-ttl", "soon"], "caracal: option '--max-session-ttl <seconds>' argument 'soon' is invalid. expected whole seconds, e.g. 3600"],
    [["app", "create", "x", "--zone", "acme", "--label", "novalue"], "caracal: option '--label <key=value>' argument 'novalue' is invalid. expected key=value"],
    [["zone", "list", "--target", "ftp://example"], 'caracal: --target: expected an http:// or https:// URL, got "ftp://example"'],
    [
      ["token", "session", "--zone", "acme", "--client-id", "a", "--target", "http://127.0.0.1:1"],
      "caracal: no client secret: set CARACAL_CLIENT_SECRET, or pass --client-secret-file <path> or --client-secret-stdin",
    ],
    [
      ["token", "exchange", "--resource", "r", "--scope", "s", "--subject-token-file", "/nonexistent/token", "--target", "http://127.0.0.1:1"],
      "caracal: cannot read --subject-token-file /nonexistent/token: ENOENT",
    ],
  ])("exits 2 on a usage error: %j", async (args, line) => {
    const run = await caracal([...args, "--profile", profilePath]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(lines(run.stderr)[0]).toBe(line);
  });

  it("revokes with one target and a reason, lists what is in force, and refuses two targets as usage", async () => {
    expect((await admin(["zone", "create", "revoking"])).code).toBe(0);
    const revoked = await admin(["revoke", "--zone", "revoking", "--session", "s-cli-1", "--reason", "lost laptop", "--json"]);
    expect(revoked.code).toBe(0);
    const { revocation, created } = JSON.parse(revoked.stdout) as { revocation: { revocationId: string; revokedBy: string }; created: boolean };
    expect(created).toBe(true);
    expect(revocation.revokedBy).toBe("caracal-admin-cli");
    const again = await admin(["revoke", "--zone", "revoking", "--session", "s-cli-1", "--reason", "lost laptop"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("already revoked");
    const listed = await admin(["revocations", "list", "--zone", "revoking"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(revocation.revocationId);
    expect(listed.stdout).toContain("session s-cli-1");
    const twoTargets = await admin(["revoke", "--zone", "revoking", "--session", "a", "--mandate", "b", "--reason", "x"]);
    expect(twoTargets.code).toBe(2);
    expect(twoTargets.stderr).toContain("name exactly one of");
    const noReason = await admin(["revoke", "--zone", "revoking", "--session", "a"]);
    expect(noReason.code).toBe(2);
  });

  it("exits 1 naming the target when nothing listens there", async () => {
    const run = await caracal(["zone", "list", "--profile", profilePath, "--target", "http://127.0.0.1:1"]);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([expect.stringMatching(/^caracal: cannot reach Caracal at http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/)]);
  });

  it("runs as the installed bin: reads a client secret from stdin, and exits promptly after an admin call", async () => {
    const { secret } = await billingZone("spawned");
    const session = await caracalProcess(["token", "session", "--zone", "spawned", "--client-id", "billing-agent", "--client-secret-stdin", "--target", target], `${secret}\n`);
    expect(session).toMatchObject({ code: 0, stderr: "" });
    expect(session.stdout.trim().split(".")).toHaveLength(3);

    const started = performance.now();
    const zones = await caracalProcess(["zone", "list", "--profile", profilePath]);
    expect(zones.code).toBe(0);
    expect(zones.stdout).toMatch(/^spawned /m);
    // An HTTP/2 session left open would keep the process alive for minutes.
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
