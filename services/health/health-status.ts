import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";

type Listener = () => void;

/**
 * The serving status of each service on this server, by fully qualified
 * service name; the empty name stands for the server as a whole. The health
 * service reads it, and the server flips it to NOT_SERVING while draining.
 */
export class HealthStatus {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #listeners = new Set<Listener>();

  /** Starts every named service (and the server, `""`) as SERVING. */
  constructor(serviceNames: readonly string[]) {
    for (const name of ["", ...serviceNames]) this.#statuses.set(name, ServingStatus.SERVING);
  }

  /** The status of one service, or undefined when the server does not know it. */
  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /** Every known service and its status. */
  entries(): [string, ServingStatus][] {
    return [...this.#statuses];
  }

  /** Marks every service NOT_SERVING, e.g. while draining for shutdown. */
  stopServing(): void {
    for (const name of this.#statuses.keys()) this.#statuses.set(name, ServingStatus.NOT_SERVING);
    for (const listener of this.#listeners) listener();
  }

  /** Calls `listener` after every change; returns the function that unsubscribes. */
  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
