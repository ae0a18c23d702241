// The front of a gRPC listener whose service names lean unary methods (see ../grpc/lean-unary.ts).
//
// Each client connection is an H2Connection (./connection.ts). Calls to the lean methods are served
// right there, with the handler the service registered. Every other call (streams, other methods,
// compressed requests, health, reflection) is forwarded unchanged, stream by stream, over one HTTP/2
// connection per client connection to the same grpc-js server listening on a Unix socket in a private
// directory. So grpc-js keeps serving everything it served, while the hot calls skip both Node's
// http2 stream objects and grpc-js's call machinery.
//
// Forwarded calls keep their headers, messages, trailers, resets and flow control (each side's
// backpressure reaches the other). What they lose is the client's address and TLS identity as seen by
// a handler: grpc-js sees the Unix socket. Listeners whose credentials the daemon supplies itself
// (iam's mTLS identities) are therefore not fronted.

import http2, { type IncomingHttpHeaders } from "node:http2";
import { createServer as createNetServer, connect as netConnect, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type DetailedPeerCertificate, type TLSSocket } from "node:tls";
import type { Metadata } from "@grpc/grpc-js";
import {
  LeanCall,
  type LeanLimits,
  RequestBudget,
  type LeanRoute,
  type LeanSink,
  leanTimeout,
  leanResponseHeaders,
  leanOkTrailers,
  leanTrailersOnlyHeaders,
  statusFields,
} from "../grpc/lean-unary.js";
import type { httpsServerOptions } from "../grpc/tls.js";
import { type H2ConnectionOptions, type HeaderFields, H2Connection, type H2Stream } from "./connection.js";
import { ErrorCode } from "./frames.js";
import { encodeHeaders } from "./hpack.js";

export interface GrpcFrontConfig {
  readonly routes: ReadonlyMap<string, LeanRoute>;
  readonly limits: LeanLimits;
  /** The Unix socket the grpc-js server listens on for everything else. */
  readonly fallbackSocketPath: string;
  readonly tls?: ReturnType<typeof httpsServerOptions>;
  /**
   * Checks a verified client certificate beyond its chain (allowed CN or hostname); a connection
   * whose certificate fails it is closed before any request is read.
   */
  readonly clientCertificateCheck?: (cert: DetailedPeerCertificate) => boolean;
  /**
   * Takes a connection that speaks HTTP/1.x: on plain TCP its first bytes are not the HTTP/2
   * preface; over TLS it negotiated http/1.1 (or nothing) by ALPN. Without it such a connection is
   * closed. The handler gets the socket with those first bytes still to be read.
   */
  readonly http1?: (socket: Socket) => void;
  /**
   * Where HTTP/2 requests that are not gRPC (no `application/grpc` content type, as `curl
   * https://…/health` sends over HTTP/2) are forwarded: a cleartext HTTP/2 server's Unix socket.
   * Without it they go to grpc-js, which refuses them.
   */
  readonly httpSocketPath?: string;
  /** Settings of each client connection: stream limit and keepalive (see H2ConnectionOptions). */
  readonly connection?: Pick<
    H2ConnectionOptions,
    "maxConcurrentStreams" | "keepaliveIntervalMs" | "keepaliveTimeoutMs"
  >;
}

/** How long a plain connection may take to send its first bytes (as an HTTP/2 handshake may). */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/** The start of the HTTP/2 client preface: a first read that begins it (or is cut short within it). */
const PREFACE_START = Buffer.from("PRI * HTTP/2.0");

/** Whether a connection's first bytes are an HTTP/1.x request line rather than the HTTP/2 preface. */
export function looksLikeHttp1(first: Buffer): boolean {
  const n = Math.min(first.length, PREFACE_START.length);
  if (first.subarray(0, n).equals(PREFACE_START.subarray(0, n))) return false;
  return /^[A-Z]{3,7} /.test(first.subarray(0, 8).toString("latin1"));
}

type HeaderValue = string | number | string[] | undefined;

/** Header fields from a Node header object, pseudo-headers first, one field per value of a list. */
function fieldsOf(headers: Record<string, HeaderValue>): [string, string][] {
  const fields: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) fields.push([name, v]);
    else fields.push([name, String(value)]);
  }
  return fields;
}

/** A Node-style header object from flat fields; repeated names joined as Node joins them. */
function headerObject(flat: readonly string[]): IncomingHttpHeaders {
  const headers: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    const previous = headers[name];
    headers[name] = previous === undefined ? flat[i + 1]! : `${previous}, ${flat[i + 1]!}`;
  }
  return headers;
}

/**
 * The host and port of an `:authority` written as a URL (`http://127.0.0.1:2379/`), as etcdctl 3.4
 * sends the endpoints it dials one by one. Node's HTTP/2 (nghttp2) resets a stream whose authority
 * holds a scheme or a path; Go's server takes it, so etcd answers such calls.
 */
function hostAndPort(authority: string): string {
  const scheme = authority.indexOf("://");
  if (scheme === -1) return authority;
  const rest = authority.slice(scheme + 3);
  const end = rest.search(/[/?#]/);
  return end === -1 ? rest : rest.slice(0, end);
}

const RESPONSE_BLOCK = encodeHeaders(fieldsOf(leanResponseHeaders));
const OK_TRAILERS_BLOCK = encodeHeaders(fieldsOf(leanOkTrailers));

function withMetadata(base: Record<string, HeaderValue>, md: Metadata): HeaderFields {
  return fieldsOf({ ...base, ...(md.toHttp2Headers() as Record<string, HeaderValue>) });
}

/** Serves one lean call on a stream of the kit's own connection. */
function serveLean(
  stream: H2Stream,
  headers: IncomingHttpHeaders,
  route: LeanRoute,
  limits: LeanLimits,
  timeoutMs: number | undefined,
  budget: RequestBudget,
): void {
  const sink: LeanSink = {
    socket: () => stream.socket,
    gone: () => stream.closed,
    sendMessage(frame, headerMd, trailer) {
      stream.respond(headerMd === null ? RESPONSE_BLOCK : withMetadata(leanResponseHeaders, headerMd));
      stream.write(frame);
      stream.end(trailer === null ? OK_TRAILERS_BLOCK : withMetadata(leanOkTrailers, trailer));
    },
    sendStatus(s) {
      stream.respond(fieldsOf({ ...leanTrailersOnlyHeaders, ...statusFields(s) }), true);
    },
  };
  const call = new LeanCall(sink, headers, route, limits, timeoutMs, budget);
  // The connection's data is a view of the socket's read (each read is a buffer of its own). A client
  // stream's messages may be held long (a peer's batch of log entries), so it keeps its own copy
  // rather than whole reads. A unary call holds its views until its stream ends, which a client
  // may put off: a view that is a small part of its read is copied, so the budget, which counts
  // the view's bytes, also bounds the memory held (a 1-byte view would hold a 64-KB read).
  stream.onData = route.method.requestStream
    ? (chunk) => call.onData(Buffer.from(chunk))
    : (chunk) => call.onData(chunk.byteLength * 2 < chunk.buffer.byteLength ? Buffer.from(chunk) : chunk);
  stream.onEnd = () => call.onEnd();
  stream.onClose = () => call.onClose();
}

/** One client connection: lean calls served, the rest forwarded to grpc-js. */
class FrontConnection {
  readonly h2: H2Connection;
  /** The sessions to grpc-js and to the HTTP side, opened on first use. */
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();
  /** Request bytes this connection's lean calls hold (see LeanLimits.connectionRequestBytesMax). */
  private readonly budget: RequestBudget;

  constructor(
    socket: Socket,
    private readonly config: GrpcFrontConfig,
    onClose: () => void,
  ) {
    this.budget = new RequestBudget(config.limits);
    this.h2 = new H2Connection(socket, {
      ...config.connection,
      onStream: (stream, flat) => this.onStream(stream, flat),
      onClose: () => {
        // destroy, not close: a forwarded call grpc-js never finished must not hold its shutdown.
        for (const session of this.sessions.values()) session.destroy();
        this.sessions.clear();
        onClose();
      },
    });
  }

  private onStream(stream: H2Stream, flat: readonly string[]): void {
    const headers = headerObject(flat);
    const route = this.config.routes.get(headers[":path"] as string);
    if (route !== undefined) {
      const timeoutMs = leanTimeout(headers);
      if (timeoutMs !== null) {
        serveLean(stream, headers, route, this.config.limits, timeoutMs, this.budget);
        return;
      }
    }
    const http = this.config.httpSocketPath;
    const grpc = headers["content-type"]?.startsWith("application/grpc") === true;
    if (http !== undefined && !grpc) {
      // The HTTP side learns whether the client's connection is TLS from the scheme, set here from
      // the connection itself (never the client's word for it).
      const tls = (stream.socket as { encrypted?: boolean }).encrypted === true;
      this.forward(stream, headers, http, tls ? "https" : "http");
    } else this.forward(stream, headers, this.config.fallbackSocketPath);
  }

  private session(path: string): http2.ClientHttp2Session {
    const open = this.sessions.get(path);
    if (open !== undefined && !open.closed && !open.destroyed) return open;
    const session = http2.connect("http://localhost", { createConnection: () => netConnect(path) });
    session.on("error", () => {});
    session.on("close", () => {
      if (this.sessions.get(path) === session) this.sessions.delete(path);
    });
    this.sessions.set(path, session);
    return session;
  }

  /**
   * Forwards one request to the server on the Unix socket `path` (grpc-js, or the HTTP side) and
   * its answer back, with backpressure both ways.
   */
  private forward(stream: H2Stream, headers: IncomingHttpHeaders, path: string, scheme?: string): void {
    const { ":scheme": _scheme, ...outgoing } = headers;
    if (scheme !== undefined) {
      outgoing[":scheme"] = scheme;
      // A request naming no host must not take the session's own authority on the way (the HTTP
      // side's host whitelist would read it): it arrives with an empty Host, as it came.
      if (outgoing[":authority"] === undefined && outgoing.host === undefined) outgoing.host = "";
    }
    const authority = outgoing[":authority"];
    if (authority !== undefined) outgoing[":authority"] = hostAndPort(authority);
    let req: http2.ClientHttp2Stream;
    try {
      // The client's END_STREAM ends it (onEnd), also for a GET or HEAD, which Node would end at once.
      req = this.session(path).request(outgoing, { endStream: false });
    } catch {
      stream.reset(ErrorCode.REFUSED_STREAM);
      return;
    }
    let trailers: HeaderFields | undefined;
    // The answer is complete (its end may still wait in the stream's queue for the client's window).
    let answered = false;
    stream.onData = (chunk) => {
      // Past a full request buffer the client gets no more window until grpc-js has read it.
      if (!req.write(Buffer.from(chunk)) && !stream.creditHeld) {
        stream.holdCredit();
        req.once("drain", () => stream.releaseCredit());
      }
    };
    stream.onEnd = () => req.end();
    stream.onClose = (code) => {
      if (!req.closed) req.close(code === ErrorCode.NO_ERROR ? ErrorCode.CANCEL : code);
    };
    stream.onDrain = () => req.resume();
    req.on("response", (h, flags) => {
      const endStream = (flags & 0x1) !== 0;
      answered ||= endStream;
      stream.respond(fieldsOf(h as Record<string, HeaderValue>), endStream);
    });
    req.on("data", (chunk: Buffer) => {
      if (!stream.write(chunk)) req.pause();
    });
    req.on("trailers", (t) => {
      trailers = fieldsOf(t as Record<string, HeaderValue>);
    });
    req.on("end", () => {
      answered = true;
      stream.end(trailers);
    });
    req.on("close", () => {
      if (!answered && !stream.closed) stream.reset(req.rstCode || ErrorCode.INTERNAL_ERROR);
    });
    req.on("error", () => {});
  }
}

/** A listener whose connections are served by FrontConnection. */
export class GrpcFront {
  private readonly server: Server;
  private readonly connections = new Set<FrontConnection>();
  /** Plain connections whose first bytes have not come yet (see GrpcFrontConfig.http1). */
  private readonly sniffing = new Set<Socket>();
  /** Connections handed to the HTTP/1.x side: the listener cannot close while they are open. */
  private readonly handedOver = new Set<Socket>();
  /** Called when the last connection has closed (while closing). */
  private allClosed: (() => void) | null = null;

  constructor(config: GrpcFrontConfig) {
    const accept = (socket: Socket) => {
      const c: FrontConnection = new FrontConnection(socket, config, () => {
        this.connections.delete(c);
        if (this.connections.size === 0) this.allClosed?.();
      });
      this.connections.add(c);
    };
    const take = config.http1;
    const http1 =
      take === undefined
        ? undefined
        : (socket: Socket) => {
            this.handedOver.add(socket);
            socket.once("close", () => this.handedOver.delete(socket));
            take(socket);
          };
    if (config.tls === undefined) {
      this.server = createNetServer(
        http1 === undefined
          ? accept
          : (socket) => {
              // The first read says which protocol this is; it is put back for whoever takes it.
              // Until it comes the socket is this front's: a reset is not an error of the process,
              // a client that sends nothing is dropped as one that never finishes its handshake,
              // and closing the front closes it.
              this.sniffing.add(socket);
              const drop = () => socket.destroy();
              socket.on("error", drop);
              socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, drop);
              socket.once("close", () => this.sniffing.delete(socket));
              socket.once("data", (first: Buffer) => {
                this.sniffing.delete(socket);
                socket.setTimeout(0);
                socket.off("timeout", drop);
                socket.pause();
                socket.unshift(first);
                if (looksLikeHttp1(first)) http1(socket);
                else accept(socket);
                // The taker has its own error handling now.
                socket.off("error", drop);
                socket.resume();
              });
            },
      );
    } else {
      const protocols = http1 === undefined ? ["h2"] : ["h2", "http/1.1"];
      const check = config.clientCertificateCheck;
      this.server = createTlsServer({ ...config.tls, ALPNProtocols: protocols }, (socket: TLSSocket) => {
        if (check !== undefined && !check(socket.getPeerCertificate(true))) {
          socket.destroy();
          return;
        }
        // gRPC runs over HTTP/2 only; a client that did not negotiate it gets nothing, or the
        // HTTP/1.x side when there is one.
        if (socket.alpnProtocol === "h2") accept(socket);
        else if (http1 !== undefined) http1(socket);
        else socket.destroy();
      });
      this.server.on("tlsClientError", () => {});
    }
  }

  /** Listens on host:port (0: any free port); resolves with the port bound. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once("error", onError);
      this.server.listen({ host, port }, () => {
        this.server.off("error", onError);
        const address = this.server.address();
        resolve(typeof address === "object" && address !== null ? address.port : port);
      });
    });
  }

  /** Stops accepting, asks every connection to finish (GOAWAY); after `timeoutMs` closes the rest. */
  async close(timeoutMs: number): Promise<void> {
    const listenerClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const drained = new Promise<void>((resolve) => {
      this.allClosed = resolve;
      if (this.connections.size === 0) resolve();
    });
    for (const socket of this.sniffing) socket.destroy();
    for (const c of this.connections) c.h2.goaway();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([drained, timedOut]);
    clearTimeout(timer);
    for (const c of [...this.connections]) c.h2.destroy();
    for (const socket of this.handedOver) socket.destroy();
    await listenerClosed;
  }
}
