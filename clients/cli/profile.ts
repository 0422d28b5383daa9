import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "./usage-error.js";

/**
 * The admin profile file `caracal serve` writes on first start
 * (`<data dir>/admin-profile.json`, mode 0600): where Caracal listens and the
 * admin application's credential. The CLI keeps its own copy of this shape
 * because clients never import services.
 */
export interface AdminProfile {
  /** Base URL of the Caracal server, e.g. `http://127.0.0.1:7070`. */
  readonly target: string;
  /** The admin zone. */
  readonly zone: string;
  /** The admin application. */
  readonly client_id: string;
  /** Its client secret. */
  readonly client_secret: string;
}

/** Where to find the profile and which server to talk to, as given on the command line. */
export interface ProfileOptions {
  /** `--profile <path>`. */
  readonly profile?: string;
  /** `--target <url>`: overrides the profile's target. */
  readonly target?: string;
}

/** A loaded profile and the file it came from, for messages. */
export interface LoadedProfile extends AdminProfile {
  /** The file it was read from. */
  readonly path: string;
}

/**
 * The profile path: `--profile`, else `CARACAL_PROFILE`, else
 * `${CARACAL_DATA_DIR ?? ".caracal"}/admin-profile.json`.
 */
export function profilePath(options: ProfileOptions, env: NodeJS.ProcessEnv = process.env): string {
  return options.profile ?? env.CARACAL_PROFILE ?? join(env.CARACAL_DATA_DIR ?? ".caracal", "admin-profile.json");
}

/**
 * Loads the admin profile, refusing one that other users can read (it holds
 * the admin secret). `--target` replaces the profile's target. Every problem
 * is a {@link UsageError} with a one-line message that never quotes the file.
 *
 * @example
 * const profile = await loadAdminProfile({ profile: "/srv/caracal/admin-profile.json" });
 */
export async function loadAdminProfile(options: ProfileOptions, env: NodeJS.ProcessEnv = process.env): Promise<LoadedProfile> {
  const path = profilePath(options, env);
  let mode: number;
  let text: string;
  try {
    mode = (await stat(path)).mode;
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new UsageError(`no admin profile at ${path}: run \`caracal serve\` once to create it, or pass --profile <path> (env CARACAL_PROFILE)`);
    }
    throw new UsageError(`cannot read admin profile ${path}: ${code ?? "unreadable"}`);
  }
  // Like ssh with a private key: a secret others can read may already be
  // someone else's, so refuse rather than use it. Windows has no such bits.
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, "0");
    throw new UsageError(`admin profile ${path} is accessible to group or others (mode ${octal}); it holds the admin secret, run: chmod 600 ${path}`);
  }
  const profile = parseProfile(text, path);
  const target = options.target ?? profile.target;
  checkTarget(target, options.target === undefined ? `admin profile ${path}: "target"` : "--target");
  return { ...profile, target, path };
}

/**
 * The server to talk to when no admin credential is needed (`token` commands):
 * `--target` alone, else the profile's target.
 */
export async function resolveTarget(options: ProfileOptions, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (options.target === undefined) return (await loadAdminProfile(options, env)).target;
  checkTarget(options.target, "--target");
  return options.target;
}

function parseProfile(text: string, path: string): AdminProfile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's message quotes the text around the error, which may be the secret.
    throw new UsageError(`admin profile ${path} is not valid JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`admin profile ${path} is not a JSON object`);
  }
  const record = parsed as Record<string, unknown>;
  for (const field of ["target", "zone", "client_id", "client_secret"] as const) {
    if (typeof record[field] !== "string" || record[field] === "") {
      throw new UsageError(`admin profile ${path} lacks "${field}" (a non-empty string)`);
    }
  }
  return record as unknown as AdminProfile;
}

function checkTarget(target: string, source: string): void {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new UsageError(`${source}: expected an http:// or https:// URL, got ${JSON.stringify(target)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`${source}: expected an http:// or https:// URL, got ${JSON.stringify(target)}`);
  }
}
