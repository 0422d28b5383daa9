import { writeFile, rename, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { newClientSecret } from "./admin/applications.js";
import { findApplication, insertApplication } from "./directory/applications.js";
import { insertGrant } from "./directory/grants.js";
import { addScopes, findResource, insertResource } from "./directory/resources.js";
import { findZone, insertZone } from "./directory/zones.js";
import type { KeyEncryptionKey } from "./keys/key-encryption-key.js";
import { createInitialKeys } from "./keys/zone-keys.js";
import type { Store } from "./store/store.js";

/** The zone whose mandates administer Caracal itself. */
export const ADMIN_ZONE = "default";
/** The reserved resource every admin-plane method requires. */
export const ADMIN_RESOURCE = "caracal-admin";
/** The admin application the first start creates for the CLI. */
export const ADMIN_CLIENT_ID = "caracal-admin-cli";
/** Every scope of the admin plane, with what it allows. */
export const ADMIN_SCOPES: readonly { name: string; description: string }[] = [
  { name: "admin.read", description: "read zones, applications, resources, grants and keys" },
  { name: "admin.write", description: "change zones, applications, resources, grants and keys" },
  { name: "admin.approve", description: "approve or reject step-up requests" },
  { name: "policy.read", description: "read, validate, simulate and evaluate policy sets" },
  { name: "policy.write", description: "create and activate policy sets" },
  { name: "audit.read", description: "query, explain, tail, export and verify the audit ledger" },
  { name: "revocation.read", description: "list and watch revocations" },
  { name: "revocation.write", description: "revoke mandates, sessions and applications" },
];

/** The admin profile file: what the CLI needs to reach and authenticate to Caracal. */
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

/** Where the first start writes the admin profile. */
export function adminProfilePath(dataDir: string): string {
  return join(dataDir, "admin-profile.json");
}

// Any fixed number; serialises replicas bootstrapping the same database.
const BOOTSTRAP_LOCK = 0x43415241_424f4f54n; // "CARABOOT"

/**
 * Makes sure the admin plane exists: the `default` zone with keys, the
 * `caracal-admin` resource with every admin scope, and, on first start, an
 * admin application granted all of them whose secret is written to the admin
 * profile (mode 0600). The profile is written inside the transaction, so a
 * secret is never committed without a file that holds it.
 */
export async function bootstrap(
  store: Store,
  kek: KeyEncryptionKey,
  options: { dataDir: string; target: string; now: () => number; log: Logger },
): Promise<void> {
  await store.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [BOOTSTRAP_LOCK.toString()]);
    let zone = await findZone(tx, ADMIN_ZONE);
    if (!zone) {
      zone = await insertZone(tx, { slug: ADMIN_ZONE, displayName: "Default zone" });
      await createInitialKeys(tx, kek, zone.id, new Date(options.now()));
      options.log.info({ zone: ADMIN_ZONE }, "bootstrapped zone");
    }
    if (await findResource(tx, zone.id, ADMIN_RESOURCE)) {
      await addScopes(tx, zone.id, ADMIN_RESOURCE, ADMIN_SCOPES);
    } else {
      await insertResource(tx, zone.id, { resourceId: ADMIN_RESOURCE, displayName: "Caracal administration", scopes: ADMIN_SCOPES });
    }
    if (await findApplication(tx, zone.id, ADMIN_CLIENT_ID)) return;

    const secret = newClientSecret();
    await insertApplication(tx, zone.id, {
      clientId: ADMIN_CLIENT_ID,
      displayName: "Caracal admin CLI",
      labels: {},
      credential: { kind: "client_secret", hash: kek.hashSecret(secret) },
    });
    await insertGrant(tx, { zoneId: zone.id, clientId: ADMIN_CLIENT_ID, resourceId: ADMIN_RESOURCE, scopes: ADMIN_SCOPES.map((s) => s.name) });
    const path = adminProfilePath(options.dataDir);
    await writeProfile(path, { target: options.target, zone: ADMIN_ZONE, client_id: ADMIN_CLIENT_ID, client_secret: secret });
    options.log.info({ path }, "wrote admin profile");
  });
}

async function writeProfile(path: string, profile: AdminProfile): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
  // Written whole to a private temporary file, then renamed: never a half
  // profile, never a moment when the secret is readable by others.
  const partial = `${path}.${process.pid}.tmp`;
  await writeFile(partial, JSON.stringify(profile, null, 2) + "\n", { mode: 0o600, flag: "w" });
  await rename(partial, path);
}
