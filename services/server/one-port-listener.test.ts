import http2 from "node:http2";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type HttpHandler, listenOnePort, type OnePortListener } from "./one-port-listener.js";

const quiet = pino({ level: "silent" });
let listener: OnePortListener | undefined;

afterEach(async () => {
  await listener?.close(0);
  listener = undefined;
});

/** Answers with the HTTP version, after waiting `?delay=` milliseconds (or forever for `?hang`). */
const versionHandler: HttpHandler = (req, res) => {
  const url = new URL(req.url ?? "/", "http://x");
  if (url.searchParams.has("hang")) return;
  setTimeout(() => res.end(`HTTP/${req.httpVersion}`), Number(url.searchParams.get("delay") ?? 0));
};

function h2Get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const req = session.request({ ":path": path });
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      session.close();
      resolve(body);
    });
    req.on("error", reject);
  });
}

describe("listenOnePort", () => {
  it("serves HTTP/1.1 and HTTP/2 cleartext on the same port", async () => {
    listener = await listenOnePort(versionHandler, "127.0.0.1", 0, quiet);
    const { port } = listener.address;
    expect(port).toBeGreaterThan(0);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("HTTP/1.1");
    expect(await h2Get(port, "/")).toBe("HTTP/2.0");
  });

  it("lets in-flight requests on both protocols finish when closing, then refuses new connections", async () => {
    listener = await listenOnePort(versionHandler, "127.0.0.1", 0, quiet);
    const { port } = listener.address;
    const slowH1 = fetch(`http://127.0.0.1:${port}/?delay=300`).then((res) => res.text());
    const slowH2 = h2Get(port, "/?delay=300");
    await new Promise((resolve) => setTimeout(resolve, 50)); // let both requests reach the handler
    const closed = listener.close(5_000);
    expect(await slowH1).toBe("HTTP/1.1");
    expect(await slowH2).toBe("HTTP/2.0");
    await closed;
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });

  it("cuts requests still running when the grace period ends", async () => {
    listener = await listenOnePort(versionHandler, "127.0.0.1", 0, quiet);
    const { port } = listener.address;
    const hanging = fetch(`http://127.0.0.1:${port}/?hang`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Without the cut, close() would wait for the request forever and the test would time out.
    await listener.close(200);
    await expect(hanging).rejects.toThrow();
  });

  it("survives a client that connects and sends garbage or nothing", async () => {
    listener = await listenOnePort(versionHandler, "127.0.0.1", 0, quiet);
    const { port } = listener.address;
    const net = await import("node:net");
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.write("PR");
        socket.destroy();
        resolve();
      });
    });
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.end("\u0000\u0001garbage\r\n\r\n");
        socket.on("close", () => resolve());
        socket.resume();
      });
    });
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("HTTP/1.1");
  });
});
