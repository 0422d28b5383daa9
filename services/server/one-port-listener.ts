import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";

/** A request handler that takes both HTTP/1.1 and HTTP/2 requests, as connect-node makes. */
export type HttpHandler = ReturnType<typeof connectNodeAdapter>;

/** Where HTTP/2 connections go, when not to a Node http2 server running the same handler. */
export interface Http2Sink {
  /** Takes over a connection whose first bytes are the HTTP/2 preface (still buffered in the socket). */
  accept(socket: net.Socket): void;
  /** Sends GOAWAY so open streams finish and no new ones start; cuts what is left after `graceMs`. */
  drain(graceMs: number): void;
}

/** A listening one-port server. */
export interface OnePortListener {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: { readonly host: string; readonly port: number };
  /**
   * Stops accepting, lets in-flight requests finish for up to `graceMs`, then
   * cuts whatever is left. Resolves when every connection is closed.
   */
  close(graceMs: number): Promise<void>;
}

// Every HTTP/2 prior-knowledge connection opens with this preface
// ("PRI * HTTP/2.0…"); no HTTP/1 request line starts with "PRI ".
const H2_PREFACE_START = Buffer.from("PRI ");
const SNIFF_TIMEOUT_MS = 10_000;
const H1_IDLE_TIMEOUT_MS = 120_000;

/**
 * Listens on one TCP address and serves HTTP/1.1 (Connect, gRPC-Web, plain
 * GETs) with `handler`, and HTTP/2 cleartext with `http2` (gRPC), or with the
 * same handler when none is given. Node's `allowHTTP1` only works with TLS
 * (it relies on ALPN), so the first bytes of each connection decide.
 */
export async function listenOnePort(
  handler: HttpHandler,
  host: string,
  port: number,
  log: Logger,
  http2Sink?: Http2Sink,
): Promise<OnePortListener> {
  const h1 = http.createServer(handler);
  // Idle HTTP/1 sockets are closed; Node's header and request timeouts are
  // enforced by a timer that only runs for servers that listen themselves.
  h1.setTimeout(H1_IDLE_TIMEOUT_MS);
  const sockets = new Set<net.Socket>();
  const sink = http2Sink ?? nodeHttp2Sink(handler);
  // HTTP/1 sockets and how many requests each is answering. Node's own idle
  // tracking (closeIdleConnections) only exists for servers that listen
  // themselves, and this one is handed sockets, so it is done here.
  const h1Busy = new Map<net.Socket, number>();
  let draining = false;
  h1.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    h1Busy.set(socket, (h1Busy.get(socket) ?? 0) + 1);
    if (draining) res.setHeader("connection", "close");
    res.once("close", () => {
      const busy = (h1Busy.get(socket) ?? 1) - 1;
      h1Busy.set(socket, busy);
      if (draining && busy === 0) socket.end();
    });
  });

  // RPCs are small request/response pairs: Nagle's algorithm would hold them back.
  const tcp = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // A peer that resets mid-handshake must not take the process down.
    socket.on("error", (error) => log.debug({ err: error }, "connection error"));
    // A connection that never says which protocol it speaks is dropped.
    socket.setTimeout(SNIFF_TIMEOUT_MS, () => socket.destroy());
    let seen = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const probe = seen.subarray(0, H2_PREFACE_START.length);
      if (probe.length < H2_PREFACE_START.length && H2_PREFACE_START.subarray(0, probe.length).equals(probe)) return;
      socket.off("data", sniff);
      socket.setTimeout(0);
      // Put the sniffed bytes back, paused. HTTP/2 drains the buffer into its
      // native session by itself and breaks if the stream is set flowing here;
      // the HTTP/1 parser reads through 'data' events and needs it flowing.
      socket.pause();
      socket.unshift(seen);
      if (probe.equals(H2_PREFACE_START)) {
        sink.accept(socket);
      } else {
        h1Busy.set(socket, 0);
        socket.once("close", () => h1Busy.delete(socket));
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", sniff);
  });

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const bound = tcp.address() as net.AddressInfo;

  return {
    address: { host, port: bound.port },
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      // GOAWAY lets streams already open finish; HTTP/1 keep-alive connections
      // close now when idle, otherwise as soon as their request is answered.
      draining = true;
      sink.drain(graceMs);
      for (const [socket, busy] of h1Busy) if (busy === 0) socket.end();
      const deadline = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      deadline.unref();
      await closed;
      clearTimeout(deadline);
    },
  };
}

/** HTTP/2 served by Node's own http2 server with the same handler. */
function nodeHttp2Sink(handler: HttpHandler): Http2Sink {
  const server = http2.createServer({}, handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  return {
    accept: (socket) => server.emit("connection", socket),
    drain: () => {
      for (const session of sessions) session.close();
    },
  };
}
