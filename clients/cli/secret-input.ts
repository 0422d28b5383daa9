import { readFile } from "node:fs/promises";
import { UsageError } from "./usage-error.js";

/** Where one secret may come from, and what the flags are called for messages. */
export interface SecretSource {
  /** What it is, for messages: `client secret`, `subject token`. */
  readonly what: string;
  /** The environment variable, e.g. `CARACAL_CLIENT_SECRET`. */
  readonly env: string;
  /** The file flag, e.g. `--client-secret-file`. */
  readonly fileFlag: string;
  /** The stdin flag, e.g. `--client-secret-stdin`. */
  readonly stdinFlag: string;
}

/**
 * Reads a secret from a file, stdin or the environment, in that order of
 * preference; never from a plain argument, because argv is visible to every
 * user of the machine (`ps`) and lands in shell history. Surrounding
 * whitespace, such as the newline `echo` adds, is dropped.
 *
 * @example
 * const secret = await readSecret(
 *   { what: "client secret", env: "CARACAL_CLIENT_SECRET", fileFlag: "--client-secret-file", stdinFlag: "--client-secret-stdin" },
 *   { file: options.clientSecretFile, stdin: options.clientSecretStdin },
 * );
 */
export async function readSecret(
  source: SecretSource,
  given: { readonly file?: string | undefined; readonly stdin?: boolean | undefined },
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  if (given.file !== undefined && given.stdin) throw new UsageError(`${source.fileFlag} and ${source.stdinFlag} exclude each other`);
  let value: string;
  let from: string;
  if (given.file !== undefined) {
    from = `${source.fileFlag} ${given.file}`;
    try {
      value = await readFile(given.file, "utf8");
    } catch (error) {
      throw new UsageError(`cannot read ${from}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`);
    }
  } else if (given.stdin) {
    from = source.stdinFlag;
    value = await readStdin();
  } else if (env[source.env] !== undefined) {
    from = source.env;
    value = env[source.env]!;
  } else {
    throw new UsageError(`no ${source.what}: set ${source.env}, or pass ${source.fileFlag} <path> or ${source.stdinFlag}`);
  }
  value = value.trim();
  if (value === "") throw new UsageError(`the ${source.what} from ${from} is empty`);
  return value;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}
