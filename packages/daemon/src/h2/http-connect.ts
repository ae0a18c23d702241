// Outgoing connections for the kit's HTTP/2 client, through an HTTP CONNECT proxy when the
// environment names one, exactly as grpc-js chooses it (so both clients of a daemon take the same
// route): the proxy from grpc_proxy, else https_proxy, else http_proxy (http:// proxies only, with
// optional user:password), skipped for hosts in no_grpc_proxy, else no_proxy (comma-separated host
// suffixes or IPv4 CIDR ranges).

import { connect as netConnect, isIPv4, type Socket } from "node:net";

export interface HttpProxy {
  readonly host: string;
  readonly port: number;
  /** `user:password` (or `user`) for Proxy-Authorization: Basic. */
  readonly credentials?: string;
}

function proxyFromEnv(): HttpProxy | null {
  const value = process.env.grpc_proxy || process.env.https_proxy || process.env.http_proxy;
  if (!value) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== "http:") return null;
  const user = url.username;
  const credentials = user
    ? url.password
      ? decodeURIComponent(`${user}:${url.password}`)
      : user
    : undefined;
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: Number(url.port || 80),
    ...(credentials !== undefined ? { credentials } : {}),
  };
}

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((acc, octet) => ((acc << 8) | Number(octet)) >>> 0, 0);
}

function inNoProxyList(host: string): boolean {
  const list = process.env.no_grpc_proxy ?? process.env.no_proxy;
  if (!list) return false;
  for (const entry of list.split(",")) {
    const [base, bits] = entry.split("/");
    const prefix = Number(bits);
    if (bits !== undefined && isIPv4(base ?? "") && isIPv4(host) && prefix >= 0 && prefix <= 32) {
      const mask = prefix === 0 ? 0 : (-1 << (32 - prefix)) >>> 0;
      if ((ipv4ToInt(host) & mask) >>> 0 === (ipv4ToInt(base!) & mask) >>> 0) return true;
    } else if (host.endsWith(entry)) return true;
  }
  return false;
}

/** The proxy to reach `host` through, or null to connect directly. */
export function proxyFor(host: string): HttpProxy | null {
  const proxy = proxyFromEnv();
  return proxy === null || inNoProxyList(host) ? null : proxy;
}

/** The most a proxy's answer to CONNECT may hold before its end (status line and headers). */
const CONNECT_RESPONSE_BYTES_MAX = 16 << 10;

/**
 * A TCP connection to host:port, through `proxy` when given (CONNECT). Resolves once it is connected
 * (the tunnel established); bytes the proxy sent after its answer are put back on the socket, which
 * is left paused when a proxy was used (the reader resumes it). Rejects when the connection fails,
 * when the proxy refuses or closes the connection without answering, and when the whole dial (the
 * tunnel included) takes longer than `timeoutMs`.
 */
export function tcpConnect(
  host: string,
  port: number,
  proxy: HttpProxy | null,
  timeoutMs: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      proxy === null ? netConnect({ host, port }) : netConnect({ host: proxy.host, port: proxy.port });
    let settled = false;
    // One deadline for the whole dial, not the socket's idle timer: destroying a socket clears that
    // timer, so a proxy that closed without answering would have left the dial pending for ever.
    const timer = setTimeout(
      () => fail(new Error(`connecting to ${host}:${port} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      socket.off("error", fail);
      socket.off("close", onClose);
    };
    function fail(err: Error): void {
      if (settled) return;
      settle();
      socket.destroy();
      reject(err);
    }
    const onClose = () =>
      fail(
        new Error(
          proxy === null
            ? `the connection to ${host}:${port} closed while connecting`
            : `the proxy ${proxy.host}:${proxy.port} closed the connection before answering CONNECT ${host}:${port}`,
        ),
      );
    socket.once("error", fail);
    socket.once("close", onClose);
    const done = () => {
      if (settled) return;
      settle();
      resolve(socket);
    };
    socket.once("connect", () => {
      if (proxy === null) {
        done();
        return;
      }
      const authority = isIPv4(host) || !host.includes(":") ? `${host}:${port}` : `[${host}]:${port}`;
      const auth =
        proxy.credentials === undefined
          ? ""
          : `Proxy-Authorization: Basic ${Buffer.from(proxy.credentials).toString("base64")}\r\n`;
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`);
      let answer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        answer = Buffer.concat([answer, chunk]);
        const end = answer.indexOf("\r\n\r\n");
        if (end < 0) {
          if (answer.length > CONNECT_RESPONSE_BYTES_MAX)
            fail(new Error("the proxy's answer to CONNECT is too long"));
          return;
        }
        socket.off("data", onData);
        socket.pause();
        const statusLine = answer.subarray(0, answer.indexOf("\r\n")).toString("latin1");
        if (!/^HTTP\/1\.[01] 200/.test(statusLine)) {
          fail(new Error(`the proxy refused CONNECT ${authority}: ${statusLine}`));
          return;
        }
        const rest = answer.subarray(end + 4);
        if (rest.length > 0) socket.unshift(rest);
        done();
      };
      socket.on("data", onData);
    });
  });
}
