import { Command, CommanderError, Option } from "commander";
import { registerClientCommands } from "../clients/cli/register-client-commands.js";
import { cliStreamExport } from "./audit/siem-export.js";
import { ConfigError, LOG_LEVELS, loadConfig, SERVICE_NAMES } from "./config.js";
import { createLogger, serve } from "./serve.js";

// Exit codes every `caracal` command keeps: 0 ok, 1 refused or failed, 2 usage or configuration.
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/**
 * The `caracal` command line. Returns the process exit code for commands
 * that finish; `serve` resolves only when the server has stopped.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command("caracal")
    .description("Caracal: short-lived, scoped, signed mandates for AI agents")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`caracal: ${text.replace(/^error: /, "")}`) });

  program
    .command("serve")
    .description("run the Caracal services on one address (gRPC, gRPC-Web, Connect, HTTP)")
    .option("--listen <host:port>", "address to listen on (env CARACAL_LISTEN, default 127.0.0.1:7070)")
    .option("--only <services>", `comma-separated subset of: ${SERVICE_NAMES.join(", ")}`)
    .option("--data-dir <dir>", "embedded store directory (env CARACAL_DATA_DIR, default .caracal)")
    .addOption(new Option("--log-level <level>", "minimum log level (env CARACAL_LOG_LEVEL)").choices(LOG_LEVELS))
    .action(async (flags) => {
      const config = loadConfig(process.env, flags);
      const log = createLogger(config.logLevel);
      const caracal = await serve(config, log);
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          log.info({ signal }, "shutting down");
          caracal.stop().then(resolve, resolve);
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      log.info("stopped");
    });
  registerClientCommands(program, { auditStream: cliStreamExport(process.env) });

  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
    if (error instanceof ConfigError) {
      process.stderr.write(`caracal: ${error.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`caracal: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILED;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
