import type { MandateProvider } from "../interceptors/mandate-provider.js";
import type { Client } from "@connectrpc/connect";
import type { TokenService } from "../gen/caracal/sts/v1/token_service_pb.js";
import { ApprovalRequiredError } from "./approval-required-error.js";

/** How the application proves who it is to the STS. */
export type ApplicationCredential = { readonly clientSecret: string } | { readonly clientAssertion: () => string | Promise<string> };

/** Options of {@link MandateSource}. */
export interface MandateSourceOptions {
  /** A TokenService client pointed at the STS. */
  readonly sts: Client<typeof TokenService>;
  /** The zone slug. */
  readonly zone: string;
  /** The application's client id. */
  readonly clientId: string;
  /** Its credential. */
  readonly credential: ApplicationCredential;
  /** Renew a mandate this long before it expires (default 30 s). */
  readonly refreshBeforeExpiryMs?: number;
  /** The clock, ms since the epoch. */
  readonly now?: () => number;
  /** What to do when policy holds an exchange for a step-up approval. */
  readonly approvals?: ApprovalOptions;
}

/**
 * How {@link MandateSource} handles an exchange held for approval. By default
 * it throws {@link ApprovalRequiredError} at once, so an agent is never
 * blocked unexpectedly.
 */
export interface ApprovalOptions {
  /**
   * Wait for an operator's decision (with `WaitApproval`) and, once approved,
   * retry the exchange with the approval's proof. A rejected or lapsed
   * approval still throws the {@link ApprovalRequiredError}, its `state` now
   * `rejected` or `expired`.
   */
  readonly wait?: boolean;
  /** Gives up waiting when aborted. */
  readonly signal?: AbortSignal;
}

interface Cached {
  readonly token: string;
  readonly expiresAtMs: number;
}

/**
 * Where a client's mandates come from: starts a session with the application
 * credential, exchanges it for a resource mandate per (resource, scopes), and
 * reuses each until shortly before it expires. Concurrent callers asking for
 * the same mandate share one request (single flight).
 *
 * @example
 * const source = new MandateSource({ sts, zone: "default", clientId: "billing-agent", credential: { clientSecret } });
 * const mandate = await source.mandateFor("billing-api", ["invoices.read"]);
 *
 * @example
 * // Wait for an operator to approve a held exchange, then retry it.
 * const patient = new MandateSource({ sts, zone: "default", clientId: "billing-agent", credential: { clientSecret }, approvals: { wait: true } });
 * const write = await patient.mandateFor("billing-api", ["invoices.write"]);
 */
export class MandateSource implements MandateProvider {
  readonly #options: MandateSourceOptions;
  readonly #now: () => number;
  readonly #skewMs: number;
  #session: Promise<Cached> | undefined;
  readonly #mandates = new Map<string, Promise<Cached>>();

  constructor(options: MandateSourceOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#skewMs = options.refreshBeforeExpiryMs ?? 30_000;
  }

  /**
   * A resource mandate for `resource` carrying `scopes`. Throws
   * {@link ApprovalRequiredError} when policy holds the exchange for a step-up
   * approval (see {@link MandateSourceOptions.approvals}).
   */
  async mandateFor(resource: string, scopes: readonly string[]): Promise<string> {
    const key = `${resource} ${[...scopes].sort().join(" ")}`;
    const remember = (next: Promise<Cached> | undefined) => (next ? this.#mandates.set(key, next) : this.#mandates.delete(key));
    return (await this.#fresh(this.#mandates.get(key), remember, () => this.#exchange(resource, scopes))).token;
  }

  /** The current session mandate, starting a session when there is none or it is about to expire. */
  async sessionMandate(): Promise<string> {
    return (await this.#fresh(this.#session, (next) => (this.#session = next), () => this.#startSession())).token;
  }

  /** Drops every cached mandate, e.g. after the server refused one. */
  reset(): void {
    this.#session = undefined;
    this.#mandates.clear();
  }

  async #fresh(current: Promise<Cached> | undefined, store: (next: Promise<Cached> | undefined) => void, obtain: () => Promise<Cached>) {
    if (current) {
      try {
        const cached = await current;
        if (cached.expiresAtMs - this.#skewMs > this.#now()) return cached;
      } catch {
        // A failed attempt is not cached; fall through and try again.
      }
    }
    const next = obtain();
    store(next);
    next.catch(() => store(undefined));
    return next;
  }

  async #startSession(): Promise<Cached> {
    const { sts, zone, clientId, credential } = this.#options;
    const response = await sts.startSession({
      zone,
      clientId,
      credential:
        "clientSecret" in credential
          ? { case: "clientSecret", value: credential.clientSecret }
          : { case: "clientAssertion", value: await credential.clientAssertion() },
    });
    return { token: response.sessionMandate, expiresAtMs: expiry(response.info?.expiresAt) };
  }

  async #exchange(resource: string, scopes: readonly string[]): Promise<Cached> {
    const { sts, zone, approvals } = this.#options;
    const request = { resources: [resource], scopes: [...scopes] };
    const issued = ({ mandate, info }: { mandate: string; info?: { expiresAt?: { seconds: bigint } } }) => ({ token: mandate, expiresAtMs: expiry(info?.expiresAt) });
    // The approval is bound to this session: a retry must present the same one, not a renewed session.
    const subjectToken = await this.sessionMandate();
    try {
      return issued(await sts.exchange({ subjectToken, ...request }));
    } catch (error) {
      const held = ApprovalRequiredError.from(error, { sts, zone, ...request });
      if (!held) throw error;
      if (!approvals?.wait) throw held;
      if ((await held.waitForDecision(approvals.signal)) !== "approved") throw held;
      return issued(await sts.exchange({ subjectToken, ...request, approval: held.approvalProof() }));
    }
  }
}

function expiry(timestamp: { seconds: bigint } | undefined): number {
  return timestamp ? Number(timestamp.seconds) * 1000 : 0;
}
