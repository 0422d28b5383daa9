import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import {
  InterceptingCall,
  Metadata,
  status as GrpcStatus,
  type Interceptor,
  type InterceptingListener,
  type NextCall,
  type StatusObject,
} from "@grpc/grpc-js";
import { caracalError, errorDetailOf } from "../caracal-error.js";
import { MandateError } from "../mandate-error.js";
import type { ClientInterceptorOptions, MandateProvider } from "../mandate-provider.js";
import { requirementOf, type MethodRequirement, type RequirementMap } from "../method-requirement.js";
import { grpcStatusOf } from "./grpc-status.js";

/** Options of the grpc-js {@link mandateClientInterceptor}. */
export interface GrpcMandateClientOptions extends ClientInterceptorOptions {
  /**
   * The services called, so each method's proto requirement
   * (`caracal.mandate.v1.requires`) can be found by its path.
   */
  readonly services?: readonly DescService[];
  /** Requirements for methods without the proto option, by `pkg.Service/Method` or `pkg.Service`. */
  readonly requirements?: RequirementMap;
}

type NextInterceptingCall = ReturnType<NextCall>;

/**
 * A grpc-js client `Interceptor` that attaches `authorization: Bearer <mandate>`
 * to every call whose method requires one, asking the provider for exactly the
 * resource and scopes the method declares, and propagates `traceparent`.
 *
 * The mandate is obtained before the call starts; messages and half-close sent
 * meanwhile are held by grpc-js and go out once it is attached. When the
 * provider fails, the call ends at once with the provider's Caracal refusal
 * (code and `ErrorDetail`) or, for anything else, `UNAVAILABLE`; a deadline or
 * a cancellation while waiting ends it too.
 *
 * @example
 * const Billing = grpc.makeGenericClientConstructor(grpcServiceDefinition(BillingService), "BillingService");
 * const client = new Billing(address, grpc.credentials.createInsecure(), {
 *   interceptors: [mandateClientInterceptor(source, { services: [BillingService] })],
 * });
 */
export function mandateClientInterceptor(provider: MandateProvider, options: GrpcMandateClientOptions = {}): Interceptor {
  const methods = new Map<string, DescMethod>();
  for (const service of options.services ?? []) for (const method of service.methods) methods.set(`/${service.typeName}/${method.name}`, method);

  return (callOptions, nextCall) => {
    const path = callOptions.method_definition.path;
    const requirement = requirementFor(path, methods.get(path), options.requirements);
    const withTraceparent = (metadata: Metadata) => {
      const traceparent = options.traceparent?.();
      if (traceparent !== undefined && metadata.get("traceparent").length === 0) metadata.set("traceparent", traceparent);
      return metadata;
    };
    if (requirement === undefined || requirement.public) {
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, listener, next) => next(withTraceparent(metadata), listener),
      });
    }

    // The call below this interceptor is created only once the mandate is
    // attached. grpc-js starts a call's deadline timer when the call is
    // created, and a call that ends before it is started has no listener to
    // tell: the caller would wait forever. Until then, this interceptor
    // answers deadlines and cancellations itself.
    let listener: InterceptingListener | undefined;
    let outcome: "pending" | "started" | StatusObject = "pending";
    let deadlineTimer: NodeJS.Timeout | undefined;
    const end = (status: StatusObject) => {
      if (outcome !== "pending") return;
      outcome = status;
      clearTimeout(deadlineTimer);
      if (listener) process.nextTick(() => listener!.onReceiveStatus(status));
    };
    const deferred = new DeferredCall(
      () => nextCall(callOptions),
      (code, details) => end({ code, details, metadata: new Metadata() }),
    );

    return new InterceptingCall(deferred, {
      start(metadata, startListener, next) {
        listener = startListener;
        if (outcome !== "pending") {
          // Cancelled before it started.
          const status = outcome as StatusObject;
          process.nextTick(() => startListener.onReceiveStatus(status));
          return;
        }
        const remaining = remainingMs(callOptions.deadline);
        if (remaining !== Infinity) {
          deadlineTimer = setTimeout(
            () => end({ code: GrpcStatus.DEADLINE_EXCEEDED, details: "Deadline exceeded while obtaining a mandate", metadata: new Metadata() }),
            remaining,
          );
        }
        // A provider that throws instead of rejecting ends the call the same way.
        new Promise<string>((resolve) => resolve(provider.mandateFor(requirement.resource, requirement.scopes))).then(
          (mandate) => {
            if (outcome !== "pending") return;
            outcome = "started";
            clearTimeout(deadlineTimer);
            metadata.set("authorization", `Bearer ${mandate}`);
            next(withTraceparent(metadata), startListener);
          },
          (error: unknown) => end(providerFailure(error, requirement.resource)),
        );
      },
    });
  };
}

/**
 * The next call in the chain, created when it is started. Before that it only
 * records a read request and reports a cancellation to `onCancelled`; grpc-js's
 * `InterceptingCall` already holds messages and half-close until start completes.
 * When the call cannot be created (the client was closed meanwhile), the call
 * ends with UNAVAILABLE.
 */
class DeferredCall implements NextInterceptingCall {
  readonly #create: () => NextInterceptingCall;
  readonly #onCancelled: (code: GrpcStatus, details: string) => void;
  #call: NextInterceptingCall | undefined;
  #readPending = false;
  #halfClosePending = false;
  #failed = false;

  constructor(create: () => NextInterceptingCall, onCancelled: (code: GrpcStatus, details: string) => void) {
    this.#create = create;
    this.#onCancelled = onCancelled;
  }

  start(metadata: Metadata, listener?: Partial<InterceptingListener>): void {
    try {
      this.#call = this.#create();
    } catch (error) {
      this.#failed = true;
      const details = `call could not start: ${error instanceof Error ? error.message : String(error)}`;
      process.nextTick(() => listener?.onReceiveStatus?.({ code: GrpcStatus.UNAVAILABLE, details, metadata: new Metadata() }));
      return;
    }
    this.#call.start(metadata, listener);
    if (this.#readPending) this.#call.startRead();
    if (this.#halfClosePending) this.#call.halfClose();
  }

  cancelWithStatus(code: GrpcStatus, details: string): void {
    if (this.#call) this.#call.cancelWithStatus(code, details);
    else this.#onCancelled(code, details);
  }

  sendMessageWithContext(context: Parameters<NextInterceptingCall["sendMessageWithContext"]>[0], message: unknown): void {
    if (this.#call) this.#call.sendMessageWithContext(context, message);
    else if (!this.#failed) throw new Error("grpc-js sent a message before the call started");
  }

  sendMessage(message: unknown): void {
    this.sendMessageWithContext({}, message);
  }

  startRead(): void {
    if (this.#call) this.#call.startRead();
    else this.#readPending = true;
  }

  halfClose(): void {
    if (this.#call) this.#call.halfClose();
    else this.#halfClosePending = true;
  }

  getPeer(): string {
    return this.#call?.getPeer() ?? "";
  }

  getAuthContext(): ReturnType<NextInterceptingCall["getAuthContext"]> {
    return this.#call?.getAuthContext() ?? null;
  }
}

function requirementFor(path: string, method: DescMethod | undefined, requirements: RequirementMap = {}): MethodRequirement | undefined {
  if (method) return requirementOf(method, requirements);
  const [, service = "", name = ""] = path.split("/");
  return requirements[`${service}/${name}`] ?? requirements[service];
}

function remainingMs(deadline: Date | number | undefined): number {
  if (deadline === undefined) return Infinity;
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return at === Infinity ? Infinity : Math.max(0, at - Date.now());
}

/**
 * A Caracal refusal from the provider (the STS said no, with an `ErrorDetail`)
 * keeps its code and detail, so the caller can branch on the reason; any other
 * failure (STS unreachable, a fault in the provider) is UNAVAILABLE.
 */
function providerFailure(error: unknown, resource: string): StatusObject {
  const prefix = `could not obtain a mandate for ${resource}`;
  if (error instanceof MandateError) {
    return grpcStatusOf(caracalError(error.code, error.reason, `${prefix}: ${error.message}`, { decisionId: error.decisionId, metadata: error.metadata }));
  }
  if (error instanceof ConnectError && errorDetailOf(error) !== undefined) {
    return { ...grpcStatusOf(error), details: `${prefix}: ${error.rawMessage}` };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: GrpcStatus.UNAVAILABLE, details: `${prefix}: ${message}`, metadata: new Metadata() };
}
