import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { requestContextKey } from "./request-context.js";

/**
 * The one place where an unexpected error becomes a wire error: anything that
 * is not already a `ConnectError` is logged with its cause and answered as
 * `INTERNAL` / `REASON_INTERNAL` with a generic message, so a cause (SQL, a
 * stack, a file path) never leaks to a caller.
 */
export function errorBoundary(): Interceptor {
  return (next) => async (req) => {
    const conceal = (error: unknown): ConnectError => {
      if (error instanceof ConnectError) return error;
      req.contextValues.get(requestContextKey)?.log.error({ err: error }, "internal error");
      return caracalError(Code.Internal, Reason.INTERNAL, "internal error");
    };
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: concealStream(res.message, conceal) };
    } catch (error) {
      throw conceal(error);
    }
  };
}

async function* concealStream<T>(messages: AsyncIterable<T>, conceal: (error: unknown) => ConnectError): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw conceal(error);
  }
}
