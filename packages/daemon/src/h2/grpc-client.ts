// The client side of the kit's HTTP/2 (./connection.ts) for the one call shape hot enough to skip
// grpc-js on the way out: a long-lived client stream of small messages, as the Raft members keep one
// to each other. grpc-js spends a chain of call objects, a Node http2 stream and several callbacks on
// every message it writes; here a message is one DATA frame appended to the turn's output.
//
// A GrpcClientConnection is one HTTP/2 connection (plain TCP, or TLS with ALPN h2; through the HTTP
// CONNECT proxy the environment names, see ./http-connect.ts) carrying any number of client streams.
// It does not reconnect: once it is closed or going away, its owner opens a new one. A stream's outcome is a gRPC status, read as grpc-js reads it: the HTTP status and content
// type first, then grpc-status and grpc-message from the trailers (or a trailers-only response), and
// a reset or a lost connection as UNAVAILABLE / CANCELLED / INTERNAL.

import { isIP, type Socket } from "node:net";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import { status } from "@grpc/grpc-js";
import { H2Connection, type H2Stream } from "./connection.js";
import { ErrorCode } from "./frames.js";
import { encodeHeaders } from "./hpack.js";
import { proxyFor, tcpConnect } from "./http-connect.js";

export interface GrpcClientTarget {
  readonly host: string;
  readonly port: number;
  /** TLS options (CA, client certificate...) for https targets; absent: plain TCP. */
  readonly tls?: ConnectionOptions;
}

export interface GrpcCallStatus {
  readonly code: number;
  readonly details: string;
}

/** The largest response a client stream keeps (its one message and framing). */
const RESPONSE_BYTES_MAX = 4 << 20;

/** How a client stream ended: its status and, when it is OK, the response message (without framing). */
export type ClientStreamDone = (result: GrpcCallStatus, response: Buffer | null) => void;

/** The gRPC status for an HTTP status other than 200 (the gRPC HTTP/2 mapping). */
function httpStatusCode(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return status.INTERNAL;
    case 401:
      return status.UNAUTHENTICATED;
    case 403:
      return status.PERMISSION_DENIED;
    case 404:
      return status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return status.UNAVAILABLE;
    default:
      return status.UNKNOWN;
  }
}

function headerValue(flat: readonly string[], name: string): string | undefined {
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) return flat[i + 1];
  return undefined;
}

function decodeMessage(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** One client stream: messages out, one response and a status back. */
export class GrpcClientStream {
  /** Everything written has gone to the connection's output (after `write` returned false). */
  onDrain: (() => void) | null = null;
  private done = false;
  private cancelled = false;
  /** The response problem found in its headers, if any (reported once the stream ends). */
  private headerProblem: GrpcCallStatus | null = null;
  private readonly responseChunks: Buffer[] = [];
  private responseBytes = 0;

  constructor(
    private readonly stream: H2Stream,
    private readonly onDone: ClientStreamDone,
  ) {
    stream.onHeaders = (headers) => this.onHeaders(headers);
    stream.onData = (chunk) => {
      // A client stream has one response message, kept until the end (up to a bound).
      if (this.headerProblem !== null) return;
      this.responseBytes += chunk.length;
      if (this.responseBytes <= RESPONSE_BYTES_MAX) this.responseChunks.push(Buffer.from(chunk));
      else {
        this.stream.reset(ErrorCode.CANCEL);
        this.finish({ code: status.RESOURCE_EXHAUSTED, details: "The response is too large" }, null);
      }
    };
    stream.onEnd = (trailers) => this.onEnd(trailers);
    stream.onClose = (code) => this.onReset(code);
    stream.onDrain = () => this.onDrain?.();
  }

  /**
   * Sends one serialized message. Returns false when more than a window's worth waits for the
   * server's window: wait for `onDrain` before writing more.
   */
  write(message: Uint8Array): boolean {
    const framed = Buffer.allocUnsafe(5 + message.length);
    framed[0] = 0;
    framed.writeUInt32BE(message.length, 1);
    framed.set(message, 5);
    return this.stream.write(framed);
  }

  /** Half-closes: the server answers once it has read everything. */
  end(): void {
    this.stream.end();
  }

  /** Abandons the call (RST_STREAM CANCEL); it ends with CANCELLED. */
  cancel(): void {
    if (this.done) return;
    this.cancelled = true;
    this.stream.reset(ErrorCode.CANCEL);
    this.finish({ code: status.CANCELLED, details: "Cancelled on client" }, null);
  }

  private onHeaders(headers: readonly string[]): void {
    const httpStatus = Number(headerValue(headers, ":status"));
    if (httpStatus !== 200) {
      this.headerProblem = {
        code: httpStatusCode(httpStatus),
        details: `Received HTTP status code ${httpStatus}`,
      };
      return;
    }
    const contentType = headerValue(headers, "content-type") ?? "";
    if (!contentType.startsWith("application/grpc"))
      this.headerProblem = { code: status.UNKNOWN, details: `Received content-type ${contentType}` };
  }

  private onEnd(trailers: readonly string[]): void {
    if (this.headerProblem !== null) {
      this.finish(this.headerProblem, null);
      return;
    }
    const codeText = headerValue(trailers, "grpc-status");
    const code = codeText === undefined ? Number.NaN : Number(codeText);
    if (!Number.isInteger(code)) {
      this.finish({ code: status.UNKNOWN, details: "No status received" }, null);
      return;
    }
    const details = decodeMessage(headerValue(trailers, "grpc-message") ?? "");
    if (code !== status.OK) {
      this.finish({ code, details }, null);
      return;
    }
    const body = Buffer.concat(this.responseChunks);
    if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5) {
      this.finish({ code: status.INTERNAL, details: "The response is not one complete message" }, null);
      return;
    }
    this.finish({ code, details }, body.subarray(5));
  }

  private onReset(code: number): void {
    if (this.cancelled) return;
    if (code === ErrorCode.REFUSED_STREAM)
      this.finish({ code: status.UNAVAILABLE, details: "The server refused the stream" }, null);
    else if (code === ErrorCode.CANCEL)
      this.finish({ code: status.UNAVAILABLE, details: "The connection closed" }, null);
    else this.finish({ code: status.INTERNAL, details: `Received RST_STREAM with code ${code}` }, null);
  }

  private finish(result: GrpcCallStatus, response: Buffer | null): void {
    if (this.done) return;
    this.done = true;
    this.onDone(result, response);
  }
}

/** How long connecting (TCP, proxy tunnel, TLS handshake) may take by default. */
const CONNECT_TIMEOUT_MS = 10_000;

/** The TLS session on an established socket, once its handshake is done and ALPN chose h2. */
function tlsHandshake(socket: Socket, target: GrpcClientTarget, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({
      ...target.tls,
      socket,
      // SNI carries host names only; an IP address is still checked against the certificate's IP SANs.
      ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
      ALPNProtocols: ["h2"],
    });
    const fail = (err: Error) => {
      tls.destroy();
      reject(err);
    };
    tls.once("error", fail);
    tls.setTimeout(timeoutMs, () => fail(new Error(`the TLS handshake timed out after ${timeoutMs} ms`)));
    tls.once("secureConnect", () => {
      tls.setTimeout(0);
      if (tls.alpnProtocol !== "h2") {
        fail(new Error("the server did not negotiate HTTP/2 (ALPN h2)"));
        return;
      }
      tls.off("error", fail);
      resolve(tls);
    });
  });
}

/** One HTTP/2 connection to a gRPC server, for client streams. */
export class GrpcClientConnection {
  private readonly h2: H2Connection;
  private readonly scheme: "http" | "https";
  private readonly authority: string;
  /** The server's SETTINGS arrived. */
  private settled = false;

  /**
   * Connects to `target` (through the HTTP CONNECT proxy the environment names, as grpc-js does; then
   * TLS when asked); resolves once the connection can carry streams, or rejects with why not.
   */
  static async connect(
    target: GrpcClientTarget,
    options: { timeoutMs?: number; onClose?: (error?: Error) => void } = {},
  ): Promise<GrpcClientConnection> {
    const timeoutMs = options.timeoutMs ?? CONNECT_TIMEOUT_MS;
    const tcp = await tcpConnect(target.host, target.port, proxyFor(target.host), timeoutMs);
    const socket = target.tls === undefined ? tcp : await tlsHandshake(tcp, target, timeoutMs);
    return new GrpcClientConnection(socket, target, options.onClose);
  }

  private constructor(
    socket: Socket,
    target: GrpcClientTarget,
    onClose: ((error?: Error) => void) | undefined,
  ) {
    this.scheme = target.tls === undefined ? "http" : "https";
    this.authority =
      isIP(target.host) === 6 ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
    this.h2 = new H2Connection(socket, {
      role: "client",
      onReady: () => {
        this.settled = true;
      },
      ...(onClose === undefined ? {} : { onClose }),
    });
    socket.resume();
  }

  /** The connection is up (the server's SETTINGS arrived) and takes new streams. */
  get ready(): boolean {
    return this.settled && this.h2.open;
  }

  /** New streams may be opened (neither side has closed the connection or sent GOAWAY). */
  get usable(): boolean {
    return this.h2.open;
  }

  /** Opens a client stream of `path`; `onDone` gets its outcome once. */
  clientStream(path: string, onDone: ClientStreamDone): GrpcClientStream {
    const stream = this.h2.request(
      encodeHeaders([
        [":method", "POST"],
        [":scheme", this.scheme],
        [":path", path],
        [":authority", this.authority],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ]),
    );
    return new GrpcClientStream(stream, onDone);
  }

  /** Writes the frames made so far to the socket now (else they go at the end of this turn). */
  flush(): void {
    this.h2.flushNow();
  }

  /** No new streams; the open ones finish, then the connection closes. */
  close(): void {
    this.h2.goaway();
  }

  /** Closes at once: open streams end as UNAVAILABLE. */
  destroy(): void {
    this.h2.destroy();
  }
}
