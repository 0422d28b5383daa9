import { fromBinary } from "@bufbuild/protobuf";
import { PolicySetActivatedSchema } from "../../gen/caracal/policy/v1/policy_pb.js";
import type { Bus, Subscription } from "../bus/bus.js";
import type { Queryable } from "../store/store.js";
import type { CompiledPolicySet, PolicyEngine } from "./policy-engine.js";
import { findActivation, findPolicySetVersion } from "./policy-versions.js";

/** A zone's policy set as a decision sees it. */
export type ActivePolicySet =
  /** No version was ever activated: grants alone decide. */
  | { readonly version: 0 }
  | { readonly version: number; readonly set: CompiledPolicySet }
  /** The stored version no longer compiles (say, after an engine upgrade): every decision denies. */
  | { readonly version: number; readonly failure: string };

/** A zone as this cache needs it. */
export interface ZoneRef {
  readonly id: string;
  readonly slug: string;
}

/** Options of {@link ActivePolicySets}. */
export interface ActivePolicySetsOptions {
  /**
   * How long a replica trusts its cached active version before asking the
   * store again: the fallback that bounds staleness when a bus notification
   * is lost. Default 1 s. Real elapsed time, so it uses the wall clock.
   */
  readonly pollMs?: number;
  /** The wall clock, ms; injectable for tests. */
  readonly now?: () => number;
}

// Stored versions are immutable, so a compiled version never goes stale; this
// only bounds memory when many versions are evaluated or simulated.
const MAX_COMPILED = 64;

/**
 * Each zone's active policy set, compiled, for the STS and `Evaluate`.
 *
 * A switch reaches every replica two ways: the activating replica publishes
 * `PolicySetActivated` on the bus and every follower drops its entry at once;
 * and no replica trusts an entry longer than `pollMs` without re-reading the
 * active version from the store (one indexed row), which covers a lost
 * notification or a bus outage. Either way the new version is in use within
 * `pollMs` (1 s by default).
 *
 * @example
 * const sets = new ActivePolicySets(store, new CedarEngine());
 * await sets.follow(bus);
 * const active = await sets.active(zone);
 */
export class ActivePolicySets {
  readonly #db: Queryable;
  readonly #engine: PolicyEngine;
  readonly #pollMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { readonly slug: string; readonly checkedAt: number; readonly value: Promise<ActivePolicySet> }>();
  readonly #compiled = new Map<string, Promise<CompiledPolicySet | Error | undefined>>();

  constructor(db: Queryable, engine: PolicyEngine, options: ActivePolicySetsOptions = {}) {
    this.#db = db;
    this.#engine = engine;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#now = options.now ?? Date.now;
  }

  /** The zone's active set. Rejects when the store cannot be read: callers fail closed. */
  active(zone: ZoneRef): Promise<ActivePolicySet> {
    const entry = this.#entries.get(zone.id);
    if (entry && this.#now() - entry.checkedAt < this.#pollMs) return entry.value;
    const value = this.#load(zone, entry?.value);
    const fresh = { slug: zone.slug, checkedAt: this.#now(), value };
    this.#entries.set(zone.id, fresh);
    value.catch(() => {
      if (this.#entries.get(zone.id) === fresh) this.#entries.delete(zone.id);
    });
    return value;
  }

  /**
   * A stored version, compiled: undefined when the zone has no such version,
   * an `Error` when it does not compile.
   */
  version(zoneId: string, version: number): Promise<CompiledPolicySet | Error | undefined> {
    const key = `${zoneId}:${version}`;
    let compiled = this.#compiled.get(key);
    if (compiled) {
      // Refresh its place: the map's order is least recently used first.
      this.#compiled.delete(key);
      this.#compiled.set(key, compiled);
      return compiled;
    }
    compiled = (async () => {
      const stored = await findPolicySetVersion(this.#db, zoneId, version);
      if (!stored?.source) return undefined;
      try {
        return this.#engine.compile(stored.source);
      } catch (error) {
        return error instanceof Error ? error : new Error(String(error));
      }
    })();
    this.#compiled.set(key, compiled);
    compiled.then(
      (result) => result === undefined && this.#compiled.get(key) === compiled && this.#compiled.delete(key),
      () => this.#compiled.get(key) === compiled && this.#compiled.delete(key),
    );
    if (this.#compiled.size > MAX_COMPILED) this.#compiled.delete(this.#compiled.keys().next().value!);
    return compiled;
  }

  /** Forgets the zone's active set; the next decision reads it from the store. */
  invalidate(zoneSlug: string): void {
    for (const [id, entry] of this.#entries) if (entry.slug === zoneSlug) this.#entries.delete(id);
  }

  /** Drops entries as activations arrive on the bus. Stop the subscription on shutdown. */
  follow(bus: Bus, onError: (error: unknown) => void = () => {}): Promise<Subscription> {
    return bus.follow("policy", (message) => {
      try {
        this.invalidate(fromBinary(PolicySetActivatedSchema, message.data).zone || message.zone);
      } catch (error) {
        // An undecodable notification still names its zone in the subject.
        this.invalidate(message.zone);
        onError(error);
      }
    });
  }

  async #load(zone: ZoneRef, previous: Promise<ActivePolicySet> | undefined): Promise<ActivePolicySet> {
    const activation = await findActivation(this.#db, zone.id);
    if (!activation) return { version: 0 };
    // The usual poll finds the same version: keep what is compiled.
    const known = await previous?.catch(() => undefined);
    if (known && known.version === activation.version) return known;
    const compiled = await this.version(zone.id, activation.version);
    if (compiled === undefined) return { version: activation.version, failure: `version ${activation.version} is missing` };
    if (compiled instanceof Error) return { version: activation.version, failure: compiled.message };
    return { version: activation.version, set: compiled };
  }
}
