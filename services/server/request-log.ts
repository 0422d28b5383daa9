import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { requestContextKey, requestIdFrom } from "./request-context.js";

/**
 * Outermost interceptor: gives the call its request id and a child logger,
 * echoes the id in `x-request-id`, and logs one line when the call ends (for
 * streams, when the stream ends), so every line of a call can be joined.
 */
export function requestLog(root: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const requestId = requestIdFrom(req.header.get("x-request-id"));
    const bindings = { request_id: requestId, rpc: `${req.service.typeName}/${req.method.name}` };
    // The child logger is made on first use: pino serialises its bindings at
    // creation, which on a hot path costs more than most calls ever log.
    let child: Logger | undefined;
    const context = {
      requestId,
      get log() {
        return (child ??= root.child(bindings));
      },
    };
    req.contextValues.set(requestContextKey, context);
    const finish = (error: unknown) => {
      if (!root.isLevelEnabled("info")) return;
      const code = error === undefined ? "ok" : Code[ConnectError.from(error).code];
      context.log.info({ code, duration_ms: Math.round((performance.now() - started) * 1000) / 1000 }, "call finished");
    };
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (!res.stream) {
        finish(undefined);
        return res;
      }
      return { ...res, message: observeEnd(res.message, finish) };
    } catch (error) {
      finish(error);
      throw error;
    }
  };
}

async function* observeEnd<T>(messages: AsyncIterable<T>, finish: (error: unknown) => void): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    finish(error);
    throw error;
  }
  finish(undefined);
}
