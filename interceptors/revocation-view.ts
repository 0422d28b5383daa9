import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import type { MandateClaims } from "./mandate-claims.js";
import { MandateError } from "./mandate-error.js";

/** What one revocation covers; mirrors `caracal.revocation.v1.RevocationTarget`. */
export type RevocationTarget =
  | { readonly kind: "mandate"; readonly mandateId: string }
  /** A session and everything derived from it: matches `sid`, `root_sid`, or a session in the `act` chain. */
  | { readonly kind: "session"; readonly sessionId: string }
  /** Everything issued to an application before `issuedBeforeMs`. */
  | { readonly kind: "application"; readonly clientId: string; readonly issuedBeforeMs: number }
  /** Everything in the zone issued before `issuedBeforeMs`. */
  | { readonly kind: "zone"; readonly issuedBeforeMs: number };

/** One revocation as a verifier holds it. */
export interface RevocationEntry {
  /** The revocation id. */
  readonly id: string;
  /** The zone it applies to. */
  readonly zone: string;
  /** What it covers. */
  readonly target: RevocationTarget;
  /** After this every mandate it could cover has expired; the entry can go. */
  readonly expiresAtMs: number;
}

/**
 * What a verifier asks before admitting a mandate. `isRevoked` answers from
 * the view; `assertFresh` throws `REASON_REVOCATION_STALE` when the view cannot
 * show it is current, so the verifier fails closed.
 */
export interface RevocationView {
  /** Throws a {@link MandateError} with REASON_REVOCATION_STALE when the view may be missing revocations. */
  assertFresh(nowMs: number): void;
  /** Whether any revocation covers these claims. */
  isRevoked(claims: MandateClaims): boolean;
  /** Calls `listener` with every revocation added from now on (the verified-mandate cache drops what it covers). */
  onRevocation(listener: (entry: RevocationEntry) => void): () => void;
}

/** Whether one revocation covers a mandate's claims. */
export function covers(entry: RevocationEntry, claims: MandateClaims): boolean {
  if (entry.zone !== claims.zone) return false;
  const target = entry.target;
  switch (target.kind) {
    case "mandate":
      return claims.jti === target.mandateId;
    case "session":
      return claims.sid === target.sessionId || claims.root_sid === target.sessionId || actedIn(claims, target.sessionId);
    case "application":
      return claims.client_id === target.clientId && claims.iat * 1000 < target.issuedBeforeMs;
    case "zone":
      return claims.iat * 1000 < target.issuedBeforeMs;
  }
}

/**
 * A revocation view held in memory: always fresh, fed by whoever calls `add`.
 * Lookups are by index (mandate id, session id, application), so a check costs
 * a few map reads however many revocations there are. Entries are dropped
 * once every mandate they could cover has expired, so memory stays bounded.
 */
export class InMemoryRevocationView implements RevocationView {
  readonly #byMandate = new Map<string, RevocationEntry>();
  readonly #bySession = new Map<string, RevocationEntry>();
  readonly #byApplication = new Map<string, RevocationEntry[]>();
  readonly #byZone = new Map<string, RevocationEntry[]>();
  readonly #listeners = new Set<(entry: RevocationEntry) => void>();
  readonly #now: () => number;
  /** Entries held, kept as a number so the empty case is one comparison. */
  #count = 0;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** An in-memory view knows everything it was told. */
  assertFresh(): void {}

  /** Adds a revocation and tells listeners. */
  add(entry: RevocationEntry): void {
    const target = entry.target;
    switch (target.kind) {
      case "mandate":
        this.#count += replace(this.#byMandate, `${entry.zone}/${target.mandateId}`, entry);
        break;
      case "session":
        this.#count += replace(this.#bySession, `${entry.zone}/${target.sessionId}`, entry);
        break;
      case "application":
        push(this.#byApplication, `${entry.zone}/${target.clientId}`, entry);
        this.#count++;
        break;
      case "zone":
        push(this.#byZone, entry.zone, entry);
        this.#count++;
        break;
    }
    for (const listener of this.#listeners) listener(entry);
  }

  isRevoked(claims: MandateClaims): boolean {
    // Every admitted call asks; the common answer (nothing revoked) must be cheap.
    if (this.#count === 0) return false;
    const now = this.#now();
    return (
      live(this.#byMandate.get(`${claims.zone}/${claims.jti}`), claims, now) ||
      live(this.#bySession.get(`${claims.zone}/${claims.sid}`), claims, now) ||
      live(this.#bySession.get(`${claims.zone}/${claims.root_sid}`), claims, now) ||
      actorSessionRevoked(this.#bySession, claims, now) ||
      anyLive(this.#byApplication.get(`${claims.zone}/${claims.client_id}`), claims, now) ||
      anyLive(this.#byZone.get(claims.zone), claims, now)
    );
  }

  onRevocation(listener: (entry: RevocationEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Drops entries whose mandates have all expired; returns how many went. */
  prune(): number {
    const now = this.#now();
    let dropped = 0;
    for (const map of [this.#byMandate, this.#bySession]) {
      for (const [key, entry] of map) if (entry.expiresAtMs <= now && map.delete(key)) dropped++;
    }
    for (const map of [this.#byApplication, this.#byZone]) {
      for (const [key, entries] of map) {
        const kept = entries.filter((entry) => entry.expiresAtMs > now);
        dropped += entries.length - kept.length;
        if (kept.length === 0) map.delete(key);
        else map.set(key, kept);
      }
    }
    this.#count -= dropped;
    return dropped;
  }

  /** Entries held. */
  get size(): number {
    return this.#count;
  }
}

/** Whether a session took part in the mandate's delegation chain (`act`). */
function actedIn(claims: MandateClaims, sessionId: string): boolean {
  for (let hop = claims.act; hop; hop = hop.act) if (hop.sid === sessionId) return true;
  return false;
}

/** A revoked session that acted in the chain revokes what it helped obtain. */
function actorSessionRevoked(bySession: ReadonlyMap<string, RevocationEntry>, claims: MandateClaims, now: number): boolean {
  for (let hop = claims.act; hop; hop = hop.act) if (live(bySession.get(`${claims.zone}/${hop.sid}`), claims, now)) return true;
  return false;
}

function live(entry: RevocationEntry | undefined, claims: MandateClaims, now: number): boolean {
  return entry !== undefined && entry.expiresAtMs > now && covers(entry, claims);
}

function anyLive(entries: readonly RevocationEntry[] | undefined, claims: MandateClaims, now: number): boolean {
  if (entries === undefined) return false;
  for (const entry of entries) if (live(entry, claims, now)) return true;
  return false;
}

/** Sets a key; returns 1 when it is new, 0 when it replaced an entry. */
function replace<K, V>(map: Map<K, V>, key: K, value: V): number {
  const added = map.has(key) ? 0 : 1;
  map.set(key, value);
  return added;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** The refusal a stale view causes; exported for views that track freshness. */
export function staleRevocationView(ageMs: number, maxStalenessMs: number): MandateError {
  return new MandateError(Reason.REVOCATION_STALE, `revocation view is ${ageMs} ms old, more than the allowed ${maxStalenessMs} ms`);
}
