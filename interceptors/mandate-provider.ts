/**
 * Where a client's mandates come from: `clients/MandateSource` implements it
 * with the STS; tests and other stacks can bring their own.
 */
export interface MandateProvider {
  /** A resource mandate for `resource` carrying at least `scopes`. */
  mandateFor(resource: string, scopes: readonly string[]): Promise<string>;
}

/** Options shared by the client interceptors. */
export interface ClientInterceptorOptions {
  /**
   * The current W3C trace context, if the application has one (from
   * OpenTelemetry, say); sent as `traceparent` unless the call already carries one.
   */
  readonly traceparent?: () => string | undefined;
}
