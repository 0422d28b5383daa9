import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { importJWK } from "jose";
import { ApplicationState, CredentialKind, type ApplicationSchema } from "../../gen/caracal/admin/v1/admin_pb.js";
import type {
  AddApplicationKeyRequest,
  CreateApplicationRequest,
  DisableApplicationRequest,
  GetApplicationRequest,
  ListApplicationsRequest,
  RemoveApplicationKeyRequest,
  RotateApplicationSecretRequest,
} from "../../gen/caracal/admin/v1/admin_service_pb.js";
import type { Jwk } from "../../gen/caracal/mandate/v1/mandate_pb.js";
import {
  deleteApplicationKey,
  expireSecrets,
  findApplication,
  insertApplication,
  insertApplicationKey,
  insertSecret,
  listApplications,
  setApplicationState,
  type ApplicationRecord,
} from "../directory/applications.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { toProtoJwk } from "../sts/get-jwks.js";
import { boundedText, durationSeconds, identifier, invalidArgument, labels, pageSize, pageToken } from "../validation.js";
import { changed, type AdminDeps } from "./admin-deps.js";
import { notFound, requireZone } from "../directory/require-zone.js";

const DEFAULT_SECRET_OVERLAP_SECONDS = 24 * 3_600;
const ASSERTION_ALGORITHMS = ["ES256", "ES384", "EdDSA", "PS256", "RS256"];

/** A new client secret: 256 bits from the CSPRNG, prefixed so secret scanners can spot a leaked one. */
export function newClientSecret(): string {
  return `cs_${randomBytes(32).toString("base64url")}`;
}

/** An application as the API shows it: secrets by id and dates only, never their hashes. */
export function applicationMessage(zone: string, app: ApplicationRecord): MessageInitShape<typeof ApplicationSchema> {
  return {
    zone,
    clientId: app.clientId,
    displayName: app.displayName,
    labels: app.labels,
    state: app.state === "active" ? ApplicationState.ACTIVE : ApplicationState.DISABLED,
    credentialKind: app.credentialKind === "client_secret" ? CredentialKind.CLIENT_SECRET : CredentialKind.PRIVATE_KEY_JWT,
    secrets: app.secrets.map((secret) => ({
      secretId: secret.secretId,
      createdAt: timestampFromDate(secret.createdAt),
      ...(secret.expiresAt ? { expiresAt: timestampFromDate(secret.expiresAt) } : {}),
    })),
    publicKeys: app.keys.map((key) => toProtoJwk(key.jwk)),
    createdAt: timestampFromDate(app.createdAt),
  };
}

/** A registered client key must be a usable public key with a kid and one pinned algorithm. */
async function publicJwk(jwk: Jwk | undefined, field: string): Promise<Record<string, string> & { kid: string }> {
  if (!jwk) throw invalidArgument(field, "is required");
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(jwk.kid)) throw invalidArgument(`${field}.kid`, "is required: 1–128 of A-Z a-z 0-9 . _ -");
  if (!ASSERTION_ALGORITHMS.includes(jwk.alg)) throw invalidArgument(`${field}.alg`, `must be one of ${ASSERTION_ALGORITHMS.join(", ")}`);
  const plain: Record<string, string> = { kty: jwk.kty, kid: jwk.kid, alg: jwk.alg, use: "sig" };
  for (const member of ["crv", "x", "y", "n", "e"] as const) if (jwk[member] !== "") plain[member] = jwk[member];
  try {
    const key = await importJWK(plain, jwk.alg);
    if (key instanceof Uint8Array || key.type !== "public") throw new Error("not a public key");
  } catch {
    throw invalidArgument(field, `is not a public ${jwk.alg} key`);
  }
  return plain as Record<string, string> & { kid: string };
}

async function requireApplication(deps: AdminDeps, zoneId: string, clientId: string): Promise<ApplicationRecord> {
  const app = await findApplication(deps.store, zoneId, clientId);
  if (!app) throw notFound(`application ${clientId}`, Reason.APPLICATION_NOT_FOUND);
  return app;
}

/** `CreateApplication`: returns the client secret once; only its keyed hash is stored. */
export async function createApplication(deps: AdminDeps, request: CreateApplicationRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const clientId = identifier(request.clientId, "client_id");
  const displayName = boundedText(request.displayName, "display_name", 200);
  const appLabels = labels(request.labels);
  let secret = "";
  let credential: Parameters<typeof insertApplication>[2]["credential"];
  switch (request.credentialKind) {
    case CredentialKind.CLIENT_SECRET:
    case CredentialKind.UNSPECIFIED:
      if (request.publicKey) throw invalidArgument("public_key", "is only for CREDENTIAL_KIND_PRIVATE_KEY_JWT");
      secret = newClientSecret();
      credential = { kind: "client_secret", hash: deps.kek.hashSecret(secret) };
      break;
    case CredentialKind.PRIVATE_KEY_JWT:
      credential = { kind: "private_key_jwt", jwk: await publicJwk(request.publicKey, "public_key") };
      break;
    default:
      throw invalidArgument("credential_kind", "is not a known kind");
  }
  await deps.store.transaction((tx) => insertApplication(tx, zone.id, { clientId, displayName, labels: appLabels, credential }));
  changed(deps, ctx, { zone: zone.slug, action: "application created", clientId });
  return { application: applicationMessage(zone.slug, await requireApplication(deps, zone.id, clientId)), clientSecret: secret };
}

/** `GetApplication`. */
export async function getApplication(deps: AdminDeps, request: GetApplicationRequest) {
  const zone = await requireZone(deps.store, request.zone);
  return { application: applicationMessage(zone.slug, await requireApplication(deps, zone.id, identifier(request.clientId, "client_id"))) };
}

/** `ListApplications`, by client id. */
export async function listApplicationsPage(deps: AdminDeps, request: ListApplicationsRequest) {
  const zone = await requireZone(deps.store, request.zone);
  const limit = pageSize(request.pageSize);
  const apps = await listApplications(deps.store, zone.id, pageToken.decode(request.pageToken), limit + 1);
  const page = apps.slice(0, limit);
  return {
    applications: page.map((app) => applicationMessage(zone.slug, app)),
    nextPageToken: apps.length > limit ? pageToken.encode(page.at(-1)!.clientId) : "",
  };
}

/** `DisableApplication`: the STS refuses it from the next call on (this replica at once, others within the cache TTL). */
export async function disableApplication(deps: AdminDeps, request: DisableApplicationRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const clientId = identifier(request.clientId, "client_id");
  if (!(await setApplicationState(deps.store, zone.id, clientId, "disabled"))) {
    throw notFound(`application ${clientId}`, Reason.APPLICATION_NOT_FOUND);
  }
  changed(deps, ctx, { zone: zone.slug, action: "application disabled", clientId });
  return { application: applicationMessage(zone.slug, await requireApplication(deps, zone.id, clientId)) };
}

/** `RotateApplicationSecret`: a new secret now; the old ones stay valid for the overlap. */
export async function rotateApplicationSecret(deps: AdminDeps, request: RotateApplicationSecretRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const clientId = identifier(request.clientId, "client_id");
  const overlap = durationSeconds(request.overlap, "overlap", 30 * 24 * 3_600, { allowZero: true }) ?? DEFAULT_SECRET_OVERLAP_SECONDS;
  const app = await requireApplication(deps, zone.id, clientId);
  if (app.credentialKind !== "client_secret") throw invalidArgument("client_id", "application authenticates with private_key_jwt, not a secret");
  const secret = newClientSecret();
  const now = deps.now();
  await deps.store.transaction(async (tx) => {
    await expireSecrets(tx, zone.id, clientId, new Date(now + overlap * 1000), new Date(now));
    await insertSecret(tx, zone.id, clientId, deps.kek.hashSecret(secret));
  });
  changed(deps, ctx, { zone: zone.slug, action: "application secret rotated", clientId, attributes: { overlap_seconds: String(overlap) } });
  return { application: applicationMessage(zone.slug, await requireApplication(deps, zone.id, clientId)), clientSecret: secret };
}

/** `AddApplicationKey`. */
export async function addApplicationKey(deps: AdminDeps, request: AddApplicationKeyRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const clientId = identifier(request.clientId, "client_id");
  const jwk = await publicJwk(request.publicKey, "public_key");
  const app = await requireApplication(deps, zone.id, clientId);
  if (app.credentialKind !== "private_key_jwt") throw invalidArgument("client_id", "application authenticates with a client secret, not keys");
  await insertApplicationKey(deps.store, zone.id, clientId, jwk);
  changed(deps, ctx, { zone: zone.slug, action: "application key added", clientId, attributes: { kid: jwk.kid } });
  return { application: applicationMessage(zone.slug, await requireApplication(deps, zone.id, clientId)) };
}

/** `RemoveApplicationKey`. */
export async function removeApplicationKey(deps: AdminDeps, request: RemoveApplicationKeyRequest, ctx: HandlerContext) {
  const zone = await requireZone(deps.store, request.zone);
  const clientId = identifier(request.clientId, "client_id");
  await requireApplication(deps, zone.id, clientId);
  if (!(await deleteApplicationKey(deps.store, zone.id, clientId, request.keyId))) throw notFound(`key ${request.keyId}`);
  changed(deps, ctx, { zone: zone.slug, action: "application key removed", clientId, attributes: { kid: request.keyId } });
  return { application: applicationMessage(zone.slug, await requireApplication(deps, zone.id, clientId)) };
}
