import { readFile } from "node:fs/promises";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Option, type Command } from "commander";
import { ApplicationStateSchema, CredentialKind, CredentialKindSchema, type Application } from "../../gen/caracal/admin/v1/admin_pb.js";
import {
  CreateApplicationResponseSchema,
  DisableApplicationResponseSchema,
  ListApplicationsResponseSchema,
  RotateApplicationSecretResponseSchema,
} from "../../gen/caracal/admin/v1/admin_service_pb.js";
import { JwkSchema, type Jwk } from "../../gen/caracal/mandate/v1/mandate_pb.js";
import { clientCommand, runClientAction } from "./client-command.js";
import { collectPages } from "./collect-pages.js";
import { collectLabel, parsePageSize, parseSeconds } from "./option-parsers.js";
import { formatEnum, formatList, formatTime, printFields, printJson, printNote, printTable } from "./output.js";
import { UsageError } from "./usage-error.js";

/** Members only a private JWK has (RFC 7518 §6). */
const PRIVATE_JWK_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** Registers `caracal app create|list|disable|rotate-secret`. */
export function registerAppCommands(program: Command): void {
  const app = program.command("app").description("manage applications: the identities agents authenticate as");

  clientCommand(app, "create <client-id>", "register an application; its client secret is printed once")
    .requiredOption("--zone <zone>", "the zone")
    .option("--display-name <name>", "a name for people")
    .option("--label <key=value>", "a label policies may read; repeat for more", collectLabel)
    .option("--public-key-file <jwk.json>", "authenticate with private_key_jwt using this public JWK instead of a secret")
    .action(
      (
        clientId: string,
        options: { zone: string; displayName?: string; label?: Record<string, string>; publicKeyFile?: string },
        command: Command,
      ) =>
        runClientAction(command, async (cli) => {
          const publicKey = options.publicKeyFile === undefined ? undefined : await readPublicJwk(options.publicKeyFile);
          const response = await (await cli.admin()).createApplication({
            zone: options.zone,
            clientId,
            displayName: options.displayName ?? "",
            labels: options.label ?? {},
            credentialKind: publicKey ? CredentialKind.PRIVATE_KEY_JWT : CredentialKind.CLIENT_SECRET,
            ...(publicKey ? { publicKey } : {}),
          });
          if (cli.json) printJson(CreateApplicationResponseSchema, response);
          else if (response.application) {
            printFields([...applicationFields(response.application), ...(response.clientSecret ? [["client secret", response.clientSecret] as [string, string]] : [])]);
          }
          if (response.clientSecret) printNote("The client secret is shown only now and cannot be retrieved again; store it safely.");
        }),
    );

  clientCommand(app, "list", "list the zone's applications")
    .requiredOption("--zone <zone>", "the zone")
    .addOption(new Option("--page-size <n>", "applications fetched per request; every page is fetched").argParser(parsePageSize).default(100))
    .action((options: { zone: string; pageSize: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const admin = await cli.admin();
        const applications = await collectPages(async (pageToken) => {
          const page = await admin.listApplications({ zone: options.zone, pageToken, pageSize: options.pageSize });
          return { items: page.applications, nextPageToken: page.nextPageToken };
        });
        if (cli.json) printJson(ListApplicationsResponseSchema, create(ListApplicationsResponseSchema, { applications }));
        else
          printTable(
            ["CLIENT ID", "STATE", "CREDENTIAL", "DISPLAY NAME", "LABELS", "CREATED"],
            applications.map((a) => [
              a.clientId,
              formatEnum(ApplicationStateSchema, a.state),
              formatEnum(CredentialKindSchema, a.credentialKind),
              a.displayName || "-",
              formatLabels(a.labels),
              formatTime(a.createdAt),
            ]),
            `no applications in zone ${options.zone}`,
          );
      }),
    );

  clientCommand(app, "disable <client-id>", "disable an application: the STS refuses it from now on")
    .requiredOption("--zone <zone>", "the zone")
    .action((clientId: string, options: { zone: string }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).disableApplication({ zone: options.zone, clientId });
        if (cli.json) printJson(DisableApplicationResponseSchema, response);
        else if (response.application) printFields(applicationFields(response.application));
      }),
    );

  clientCommand(app, "rotate-secret <client-id>", "issue a new client secret, printed once; the old one stays valid for the overlap")
    .requiredOption("--zone <zone>", "the zone")
    .option("--overlap <seconds>", "how long the old secret stays valid (default 86400; 0 ends it now)", parseSeconds)
    .action((clientId: string, options: { zone: string; overlap?: number }, command: Command) =>
      runClientAction(command, async (cli) => {
        const response = await (await cli.admin()).rotateApplicationSecret({
          zone: options.zone,
          clientId,
          ...(options.overlap === undefined ? {} : { overlap: { seconds: BigInt(options.overlap) } }),
        });
        if (cli.json) printJson(RotateApplicationSecretResponseSchema, response);
        else if (response.application) printFields([...applicationFields(response.application), ["client secret", response.clientSecret]]);
        printNote("The new client secret is shown only now and cannot be retrieved again; store it safely.");
      }),
    );
}

function applicationFields(app: Application): [string, string][] {
  const fields: [string, string][] = [
    ["zone", app.zone],
    ["client id", app.clientId],
    ["display name", app.displayName || "-"],
    ["state", formatEnum(ApplicationStateSchema, app.state)],
    ["credential", formatEnum(CredentialKindSchema, app.credentialKind)],
    ["labels", formatLabels(app.labels)],
    ["created", formatTime(app.createdAt)],
  ];
  for (const secret of app.secrets) {
    fields.push(["secret", `${secret.secretId} created ${formatTime(secret.createdAt)}${secret.expiresAt ? `, expires ${formatTime(secret.expiresAt)}` : ""}`]);
  }
  for (const key of app.publicKeys) fields.push(["public key", `${key.kid} ${key.alg}`]);
  return fields;
}

function formatLabels(labels: Readonly<Record<string, string>>): string {
  return formatList(Object.entries(labels).map(([key, value]) => `${key}=${value}`));
}

/** Reads a public JWK file; refuses a private key so it is never sent anywhere. */
async function readPublicJwk(path: string): Promise<Jwk> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read --public-key-file ${path}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not quoting the parser's message: a private key passed by mistake would leak into the terminal.
    throw new UsageError(`--public-key-file ${path} is not valid JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError(`--public-key-file ${path} is not a JWK object`);
  if (PRIVATE_JWK_MEMBERS.some((member) => member in parsed)) {
    throw new UsageError(`--public-key-file ${path} holds a private key; pass the public JWK only`);
  }
  try {
    // Members the API does not carry (key_ops, ext, x5t…) are dropped.
    return fromJson(JwkSchema, parsed as JsonValue, { ignoreUnknownFields: true });
  } catch {
    throw new UsageError(`--public-key-file ${path} is not a JWK: members must be strings`);
  }
}
