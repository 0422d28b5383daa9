import { ConnectError, type Client } from "@connectrpc/connect";
import { Option, type Command, type CommandOptions } from "commander";
import type { AdminService } from "../../gen/caracal/admin/v1/admin_service_pb.js";
import type { AuditService } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import type { PolicyService } from "../../gen/caracal/policy/v1/policy_service_pb.js";
import type { RevocationService } from "../../gen/caracal/revocation/v1/revocation_service_pb.js";
import type { TokenService } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { errorDetailOf } from "../../interceptors/caracal-error.js";
import { openCaracalConnection, type CaracalConnection } from "./caracal-connection.js";
import { CommandFailed } from "./command-failed.js";
import { failureLine } from "./failure-line.js";
import { loadAdminProfile, resolveTarget, type ProfileOptions } from "./profile.js";
import { UsageError } from "./usage-error.js";

/** The options every client command takes. */
export interface ClientOptions extends ProfileOptions {
  /** `--json`: print protobuf JSON instead of tables. */
  readonly json?: boolean;
}

const CONNECTION_OPTIONS = "Connection options:";

/**
 * Adds a client subcommand to `parent` with the options every client command
 * shares: `--json`, `--profile <path>` and `--target <url>`.
 *
 * @example
 * clientCommand(zone, "list", "list every zone").action((options, command) =>
 *   runClientAction(command, async (cli) => { … }),
 * );
 */
export function clientCommand(parent: Command, nameAndArgs: string, description: string, settings?: CommandOptions): Command {
  return parent
    .command(nameAndArgs, settings)
    .description(description)
    .addOption(new Option("--json", "print the response as protobuf JSON"))
    .addOption(
      new Option("--profile <path>", "admin profile file (env CARACAL_PROFILE, default $CARACAL_DATA_DIR/admin-profile.json)").helpGroup(
        CONNECTION_OPTIONS,
      ),
    )
    .addOption(new Option("--target <url>", "Caracal server URL, overriding the profile's target").helpGroup(CONNECTION_OPTIONS));
}

/**
 * What a client command's action works with: its options, and clients opened
 * on first use (the admin profile is read only by commands that need it).
 */
export class CliContext {
  readonly #options: ClientOptions;
  readonly #env: NodeJS.ProcessEnv;
  #connection: CaracalConnection | undefined;
  #target: string | undefined;

  constructor(options: ClientOptions, env: NodeJS.ProcessEnv = process.env) {
    this.#options = options;
    this.#env = env;
  }

  /** Whether `--json` was given. */
  get json(): boolean {
    return this.#options.json === true;
  }

  /** The server, once known; named in connection failures. */
  get target(): string | undefined {
    return this.#target;
  }

  /** The admin client, signed in with the admin profile's credential. */
  async admin(): Promise<Client<typeof AdminService>> {
    return (await this.#signedIn()).admin!;
  }

  /** The revocation client, signed in with the admin profile's credential. */
  async revocation(): Promise<Client<typeof RevocationService>> {
    return (await this.#signedIn()).revocation!;
  }

  /** The policy client, signed in with the admin profile's credential. */
  async policy(): Promise<Client<typeof PolicyService>> {
    return (await this.#signedIn()).policy!;
  }

  /** The audit client, signed in with the admin profile's credential. */
  async audit(): Promise<Client<typeof AuditService>> {
    return (await this.#signedIn()).audit!;
  }

  /**
   * Every client, signed in with the admin profile, plus the STS and the
   * built-in probe service without a mandate attached: what
   * `validate-rollout` drives a deployment with.
   */
  async all(): Promise<CaracalConnection> {
    return this.#signedIn();
  }

  async #signedIn(): Promise<CaracalConnection> {
    const profile = await loadAdminProfile(this.#options, this.#env);
    const connection = this.#open(profile.target, { zone: profile.zone, clientId: profile.client_id, clientSecret: profile.client_secret });
    try {
      // Signing in first costs no extra call (the interceptor reuses this
      // session) and lets a refused credential be blamed on the profile
      // rather than on the command.
      await connection.mandates!.sessionMandate();
    } catch (error) {
      if (errorDetailOf(error) === undefined) throw error;
      throw new CommandFailed(`admin profile ${profile.path} was refused: ${failureLine(error, profile.target)}`);
    }
    return connection;
  }

  /** The STS client; needs only a target (`--target`, else the profile's). */
  async sts(): Promise<Client<typeof TokenService>> {
    return this.#open(await resolveTarget(this.#options, this.#env)).sts;
  }

  /** Closes whatever was opened. */
  close(): void {
    this.#connection?.close();
  }

  #open(target: string, credential?: Parameters<typeof openCaracalConnection>[1]): CaracalConnection {
    this.#connection?.close();
    this.#target = target;
    this.#connection = openCaracalConnection(target, credential);
    return this.#connection;
  }
}

/**
 * Runs a client command's action and maps its failures to exit codes: a
 * {@link UsageError} is printed by commander and exits 2; a refused or failed
 * call becomes one `<code> <REASON>: <message>` line and exits 1.
 */
export async function runClientAction(command: Command, action: (cli: CliContext) => Promise<void>): Promise<void> {
  const cli = new CliContext(command.optsWithGlobals<ClientOptions>());
  try {
    await action(cli);
  } catch (error) {
    if (error instanceof UsageError) command.error(error.message, { exitCode: 2, code: "caracal.usage" });
    if (error instanceof ConnectError) throw new CommandFailed(failureLine(error, cli.target));
    throw error;
  } finally {
    cli.close();
  }
}
