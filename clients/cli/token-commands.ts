import { Option, type Command } from "commander";
import { ExchangeResponseSchema, StartSessionResponseSchema } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { parseSeconds } from "./option-parsers.js";
import { printJson } from "./output.js";
import { readSecret } from "./secret-input.js";

/**
 * Registers `caracal token session|exchange`: what an agent does, from a
 * shell. They need no admin credential, only a target.
 */
export function registerTokenCommands(program: Command): void {
  const token = program.command("token").description("obtain mandates from the STS, as an agent would");

  // Secrets come from the environment, a file or stdin, never from a flag
  // value: argv is readable by every local user (`ps`) and lands in shell history.
  clientCommand(token, "session", "start a session with an application credential; prints the session mandate")
    .requiredOption("--zone <zone>", "the application's zone")
    .requiredOption("--client-id <id>", "the application's client id")
    .option("--client-secret-file <path>", "read the client secret from this file (default: env CARACAL_CLIENT_SECRET)")
    .option("--client-secret-stdin", "read the client secret from stdin")
    .addOption(new Option("--ttl <seconds>", "requested lifetime (default 3600, capped by the zone)").argParser(parseSeconds))
    .action(
      (options: { zone: string; clientId: string; clientSecretFile?: string; clientSecretStdin?: boolean; ttl?: number }, command: Command) =>
        runClientAction(command, async (cli) => {
          const clientSecret = await readSecret(
            { what: "client secret", env: "CARACAL_CLIENT_SECRET", fileFlag: "--client-secret-file", stdinFlag: "--client-secret-stdin" },
            { file: options.clientSecretFile, stdin: options.clientSecretStdin },
          );
          const response = await (await cli.sts()).startSession({
            zone: options.zone,
            clientId: options.clientId,
            credential: { case: "clientSecret", value: clientSecret },
            ...(options.ttl === undefined ? {} : { ttl: { seconds: BigInt(options.ttl) } }),
          });
          if (cli.json) printJson(StartSessionResponseSchema, response);
          else process.stdout.write(`${response.sessionMandate}\n`);
        }),
    );

  clientCommand(token, "exchange", "exchange a session mandate for a resource mandate; prints the resource mandate")
    .option("--subject-token-file <path>", "read the session mandate from this file (default: env CARACAL_SUBJECT_TOKEN)")
    .option("--subject-token-stdin", "read the session mandate from stdin")
    .requiredOption("--resource <id...>", "resources the mandate must be good at")
    .requiredOption("--scope <name...>", "scopes requested, each granted on the resources")
    .addOption(new Option("--ttl <seconds>", "requested lifetime (default 900, never past the session's expiry)").argParser(parseSeconds))
    .action(
      (
        options: { subjectTokenFile?: string; subjectTokenStdin?: boolean; resource: string[]; scope: string[]; ttl?: number },
        command: Command,
      ) =>
        runClientAction(command, async (cli) => {
          const subjectToken = await readSecret(
            { what: "subject token", env: "CARACAL_SUBJECT_TOKEN", fileFlag: "--subject-token-file", stdinFlag: "--subject-token-stdin" },
            { file: options.subjectTokenFile, stdin: options.subjectTokenStdin },
          );
          const response = await (await cli.sts()).exchange({
            subjectToken,
            resources: options.resource,
            scopes: options.scope,
            ...(options.ttl === undefined ? {} : { ttl: { seconds: BigInt(options.ttl) } }),
          });
          if (cli.json) printJson(ExchangeResponseSchema, response);
          else process.stdout.write(`${response.mandate}\n`);
        }),
    );
}
