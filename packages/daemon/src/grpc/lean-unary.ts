// A lean path for hot unary and client-streaming methods on the kit's gRPC servers.
//
// grpc-js serves every call through a chain of objects (an intercepting call, a stream decoder, a
// responder, a writable-stream wrapper) and several events and promise turns per call. For small
// unary calls that machinery costs about as much CPU as the HTTP/2 stream itself, and it makes most of
// the garbage. For the methods a service names (`leanUnaryMethods`), a LeanCall serves the call
// directly: read one length-prefixed message, call the kit's (instrumented) handler with a call object
// that has what unary handlers use, and answer with the same headers, message framing and trailers
// grpc-js sends. Its stream is one of the kit's own HTTP/2 front (../h2/grpc-front.ts) or, on
// listeners left to grpc-js, a stream of grpc-js's Node http2 servers taken before grpc-js sees it.
//
// A client-streaming method named in `leanClientStreamMethods` (a peer's long-lived stream of small
// message batches, say) is served the same way: its handler starts when the call opens, gets every
// request message as a "data" event on the call and an "end" event when the client half-closes, and
// answers through its callback. The call is an event emitter, not a Readable stream: handlers that
// iterate the call or pause it stay on grpc-js.
//
// Everything unusual is left to grpc-js, unchanged: another content type, a compressed request
// (grpc-encoding other than identity), a malformed grpc-timeout, and every method not named. Server
// interceptors do not run on the lean path; the kit adds none.
//
// What a unary handler gets (grpc-js's ServerUnaryCall): request, metadata (the request headers less
// the transport ones, as grpc-js gives it), cancelled and the "cancelled" event, getPeer, getDeadline,
// getPath, getHost, getAuthContext (TLS peer certificate), getConnectionInfo and sendMetadata.

import { EventEmitter } from "node:events";
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { Metadata, type MethodDefinition, type Server, status } from "@grpc/grpc-js";

type Http2Stream = ServerHttp2Stream;

/** A unary or client-streaming handler in grpc-js's shape: `(call, callback)`. */
export type LeanHandler = (
  call: LeanServerCall,
  callback: (err: unknown, value?: unknown, trailer?: Metadata | null, flags?: number) => void,
) => void;

export interface LeanRoute {
  readonly method: MethodDefinition<unknown, unknown>;
  readonly handler: LeanHandler;
}

export interface LeanLimits {
  readonly maxReceiveMessageBytes: number;
  readonly maxSendMessageBytes: number;
  /**
   * Request bytes the lean calls of one connection may hold at once (messages still arriving, not
   * yet handed to a handler). A call whose data would go over it ends with RESOURCE_EXHAUSTED and
   * its bytes are let go; the connection and its other calls go on. Default (see effectiveLimits):
   * 64 MiB, or one largest message if that is more.
   */
  readonly connectionRequestBytesMax?: number;
}

/** The default of LeanLimits.connectionRequestBytesMax when one message fits in it. */
const DEFAULT_CONNECTION_REQUEST_BYTES = 64 << 20;

/**
 * The request bytes held by the lean calls of one connection. Without it a client could open its
 * thousand streams and send each a message just under the receive limit, and the server would hold
 * all of them: gigabytes from one connection.
 */
export class RequestBudget {
  private used = 0;
  readonly max: number;

  /** A budget of `limits.connectionRequestBytesMax` (unbounded when unset). */
  constructor(limits: LeanLimits) {
    this.max = limits.connectionRequestBytesMax ?? Number.POSITIVE_INFINITY;
  }

  /** Counts `bytes` more, unless that would go over the maximum (then false, nothing counted). */
  take(bytes: number): boolean {
    if (this.used + bytes > this.max) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used -= bytes;
  }
}

const deadlinePattern = /^(\d{1,8})\s*([HMSmun])$/;
const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** Headers grpc-js removes before the application sees the metadata. */
const transportHeaders = [
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "accept-encoding",
  "te",
  "content-type",
];

export const leanTrailersOnlyHeaders = { ":status": 200, "content-type": "application/grpc+proto" };
export const leanResponseHeaders = {
  ...leanTrailersOnlyHeaders,
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
};

/** The call object a lean handler gets (the surface of grpc-js's ServerUnaryCall; see the top). */
export class LeanServerCall extends EventEmitter {
  cancelled = false;
  request: unknown = undefined;
  /** Metadata to send with the response headers (`sendMetadata`). */
  private headerMetadata: Metadata | null = null;
  private requestMetadata: Metadata | null = null;

  /** The request headers less the transport ones, built when a handler first asks for them. */
  get metadata(): Metadata {
    if (this.requestMetadata === null) {
      const md = Metadata.fromHttp2Headers(this.headers);
      for (const h of transportHeaders) md.remove(h);
      this.requestMetadata = md;
    }
    return this.requestMetadata;
  }

  constructor(
    private readonly socketOf: () => Socket | undefined,
    private readonly headers: IncomingHttpHeaders,
    private readonly path: string,
    private readonly deadline: number,
  ) {
    super();
  }

  getPeer(): string {
    const socket = this.socketOf();
    if (socket?.remoteAddress === undefined) return "unknown";
    return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
  }

  getDeadline(): number {
    return this.deadline;
  }

  getPath(): string {
    return this.path;
  }

  getHost(): string {
    return String(this.headers[":authority"] ?? this.headers.host ?? "");
  }

  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: unknown } {
    const socket = this.socketOf();
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const cert = socket.getPeerCertificate();
    return { transportSecurityType: "ssl", sslPeerCertificate: cert.raw ? cert : undefined };
  }

  getConnectionInfo(): {
    localAddress?: string;
    localPort?: number;
    remoteAddress?: string;
    remotePort?: number;
  } {
    const s = this.socketOf();
    return {
      localAddress: s?.localAddress,
      localPort: s?.localPort,
      remoteAddress: s?.remoteAddress,
      remotePort: s?.remotePort,
    };
  }

  sendMetadata(md: Metadata): void {
    if (this.headerMetadata === null) this.headerMetadata = md.clone();
    else this.headerMetadata.merge(md);
  }

  /** @internal the metadata `sendMetadata` gathered. */
  takeHeaderMetadata(): Metadata | null {
    return this.headerMetadata;
  }
}

export interface StatusLike {
  code: number;
  details: string;
  metadata: Metadata | null;
}

/** grpc-js's mapping of what a handler passes to its callback as an error. */
function errorToStatus(err: unknown, trailer: Metadata | null | undefined): StatusLike {
  const e = (err ?? {}) as { code?: unknown; details?: unknown; message?: unknown; metadata?: unknown };
  const code =
    typeof e.code === "number" && Number.isInteger(e.code) && status[e.code] !== undefined
      ? e.code
      : status.UNKNOWN;
  const details =
    typeof e.details === "string" ? e.details : typeof e.message === "string" ? e.message : "Unknown Error";
  const metadata = e.metadata instanceof Metadata ? e.metadata : (trailer ?? null);
  return { code, details, metadata };
}

/**
 * Where a lean call's answer goes: a Node http2 stream (behind grpc-js's servers) or a stream of the
 * kit's own HTTP/2 connection (../h2). The call feeds itself from the stream's data, end and close.
 */
export interface LeanSink {
  readonly socket: () => Socket | undefined;
  /** The stream is gone (reset, closed): nothing can be sent. */
  gone(): boolean;
  /** A message answer: response headers (plus `headerMd`), one framed message, trailers (plus `trailer`). */
  sendMessage(frame: Buffer, headerMd: Metadata | null, trailer: Metadata | null): void;
  /** A trailers-only answer with this status. */
  sendStatus(status: StatusLike): void;
}

/** One lean call (unary or client-streaming) from stream open to its status. */
export class LeanCall {
  /** Request bytes not yet taken as a message (the message being received), counted in `budget`. */
  private chunks: Buffer[] = [];
  private received = 0;
  private done = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly call: LeanServerCall;

  constructor(
    private readonly sink: LeanSink,
    headers: IncomingHttpHeaders,
    private readonly route: LeanRoute,
    private readonly limits: LeanLimits,
    timeoutMs: number | undefined,
    private readonly budget: RequestBudget,
  ) {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    this.call = new LeanServerCall(sink.socket, headers, route.method.path, deadline);
    if (timeoutMs !== undefined)
      this.timer = setTimeout(
        () => this.finish({ code: status.DEADLINE_EXCEEDED, details: "Deadline exceeded", metadata: null }),
        timeoutMs,
      );
    // A client stream's handler runs from the start and gets its messages as they arrive.
    if (route.method.requestStream) this.runHandler();
  }

  /** Closed before it was answered: the client went away (or the session did). */
  onClose(): void {
    if (!this.done) this.cancel();
  }

  /** The request message's declared length, once its 5-byte prefix has arrived. */
  private declared = -1;

  onData(chunk: Buffer): void {
    if (this.done || !this.hold(chunk)) return;
    if (this.route.method.requestStream) {
      this.onStreamData(chunk);
      return;
    }
    this.received += chunk.length;
    this.chunks.push(chunk);
    if (this.declared < 0 && this.received >= 5) {
      if (!this.takeDeclared(this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks))) return;
    }
    // More than one message: refused now (as grpc-js refuses it), not buffered.
    if (this.declared >= 0 && this.received > this.declared + 5)
      this.finish({
        code: status.UNIMPLEMENTED,
        details: `Received a second request message for server streaming method ${this.route.method.path}`,
        metadata: null,
      });
  }

  /** Counts `chunk` against the connection's budget; over it, the call ends (RESOURCE_EXHAUSTED). */
  private hold(chunk: Buffer): boolean {
    if (this.budget.take(chunk.length)) return true;
    this.finish({
      code: status.RESOURCE_EXHAUSTED,
      details: `Request data held for this connection's calls would exceed ${this.budget.max} bytes`,
      metadata: null,
    });
    return false;
  }

  /** Lets go of the request bytes still held (the call is over, or its message was taken). */
  private dropHeld(): void {
    this.budget.release(this.received);
    this.received = 0;
    this.chunks = [];
  }

  /**
   * Reads the next message's length from the 5-byte prefix at the start of `head`. False when it is
   * over the limit: the call has then ended with RESOURCE_EXHAUSTED, as grpc-js ends it.
   */
  private takeDeclared(head: Buffer): boolean {
    this.declared = head.readUInt32BE(1);
    const max = this.limits.maxReceiveMessageBytes;
    if (this.declared <= max) return true;
    this.finish({
      code: status.RESOURCE_EXHAUSTED,
      details: `Received message larger than max (${this.declared} vs ${max})`,
      metadata: null,
    });
    return false;
  }

  /** Client stream: every complete message goes to the handler as a "data" event, in order. */
  private onStreamData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.received += chunk.length;
    while (!this.done) {
      if (this.declared < 0) {
        if (this.received < 5) return;
        if (this.chunks[0]!.length < 5) this.chunks = [Buffer.concat(this.chunks)];
        if (!this.takeDeclared(this.chunks[0]!)) return;
      }
      const size = 5 + this.declared;
      if (this.received < size) return;
      // Concatenated once per message (not per chunk): batches span several DATA frames.
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const rest = all.subarray(size);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.budget.release(size);
      this.received = rest.length;
      this.declared = -1;
      let request: unknown;
      try {
        request = this.route.method.requestDeserialize(all.subarray(5, size));
      } catch {
        this.finish({ code: status.INTERNAL, details: "Error deserializing request", metadata: null });
        return;
      }
      this.emitToHandler("data", request);
    }
  }

  /** An event for the handler's listeners; one that throws ends the call as a throwing handler does. */
  private emitToHandler(event: "data" | "end", value?: unknown): void {
    try {
      this.call.emit(event, value);
    } catch {
      this.finish({ code: status.UNKNOWN, details: "Unknown error", metadata: null });
    }
  }

  onEnd(): void {
    if (this.done) return;
    if (this.route.method.requestStream) {
      if (this.received > 0)
        this.finish({
          code: status.INTERNAL,
          details: "Incomplete request message at the end of the stream",
          metadata: null,
        });
      else this.emitToHandler("end");
      return;
    }
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.dropHeld();
    const path = this.route.method.path;
    // No complete message: nothing (declared < 0) or fewer bytes than the prefix announced.
    if (this.declared < 0 || body.length < 5 + this.declared) {
      this.finish({
        code: status.UNIMPLEMENTED,
        details: `Received no request message for server streaming method ${path}`,
        metadata: null,
      });
      return;
    }
    // A set compressed flag under identity encoding is read as it stands, as grpc-js does.
    try {
      this.call.request = this.route.method.requestDeserialize(body.subarray(5));
    } catch {
      this.finish({ code: status.INTERNAL, details: "Error deserializing request", metadata: null });
      return;
    }
    this.runHandler();
  }

  private runHandler(): void {
    try {
      this.route.handler(this.call, (err, value, trailer) => this.answer(err, value, trailer));
    } catch {
      // As grpc-js answers a handler that throws: no internal text leaks.
      this.finish({ code: status.UNKNOWN, details: "Unknown error", metadata: null });
    }
  }

  private answer(err: unknown, value: unknown, trailer: Metadata | null | undefined): void {
    if (this.done) return;
    if (err) {
      this.finish(errorToStatus(err, trailer));
      return;
    }
    let bytes: Buffer;
    try {
      bytes = this.route.method.responseSerialize(value);
    } catch (e) {
      this.finish({
        code: status.INTERNAL,
        details: `Error serializing response: ${(e as Error).message}`,
        metadata: null,
      });
      return;
    }
    if (bytes.length > this.limits.maxSendMessageBytes) {
      this.finish({
        code: status.RESOURCE_EXHAUSTED,
        details: `Sent message larger than max (${bytes.length} vs. ${this.limits.maxSendMessageBytes})`,
        metadata: null,
      });
      return;
    }
    this.done = true;
    this.clearTimer();
    this.dropHeld();
    if (this.sink.gone()) return;
    const frame = Buffer.allocUnsafe(5 + bytes.length);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.length, 1);
    frame.set(bytes, 5);
    this.sink.sendMessage(frame, this.call.takeHeaderMetadata(), trailer ?? null);
  }

  /** Ends the call with a non-OK status (trailers only, unless headers went out already). */
  private finish(s: StatusLike): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.dropHeld();
    if (!this.sink.gone()) this.sink.sendStatus(s);
    // The handler may still be running (deadline): it learns the call is over.
    if (s.code === status.DEADLINE_EXCEEDED) this.cancel();
  }

  private cancel(): void {
    this.clearTimer();
    this.done = true;
    this.dropHeld();
    if (this.call.cancelled) return;
    this.call.cancelled = true;
    process.nextTick(() => this.call.emit("cancelled", "cancelled"));
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}

export const leanOkTrailers = { "grpc-status": "0", "grpc-message": "OK" };

/** The status as trailers (or trailers-only headers); the message percent-encoded as grpc-js does. */
export function statusFields(s: StatusLike): Record<string, string | number | string[] | undefined> {
  return {
    "grpc-status": String(s.code),
    "grpc-message": encodeURI(s.details),
    ...(s.metadata?.toHttp2Headers() ?? {}),
  };
}

/** A lean call on a stream of one of grpc-js's Node http2 servers. */
function nodeStreamCall(
  stream: Http2Stream,
  headers: IncomingHttpHeaders,
  route: LeanRoute,
  limits: LeanLimits,
  timeoutMs: number | undefined,
  budget: RequestBudget,
): void {
  const sink: LeanSink = {
    socket: () => stream.session?.socket as Socket | undefined,
    gone: () => stream.destroyed || stream.closed,
    sendMessage(frame, headerMd, trailer) {
      const headers =
        headerMd === null ? leanResponseHeaders : { ...leanResponseHeaders, ...headerMd.toHttp2Headers() };
      stream.once("wantTrailers", () => {
        const trailers =
          trailer === null ? leanOkTrailers : { ...leanOkTrailers, ...trailer.toHttp2Headers() };
        stream.sendTrailers(trailers);
      });
      stream.respond(headers, { waitForTrailers: true });
      stream.end(frame);
    },
    sendStatus(s) {
      stream.respond({ ...leanTrailersOnlyHeaders, ...statusFields(s) }, { endStream: true });
    },
  };
  const call = new LeanCall(sink, headers, route, limits, timeoutMs, budget);
  // A stream error is followed by "close", which cancels the call; nothing can be sent then.
  stream.on("error", () => {});
  stream.once("close", () => call.onClose());
  stream.on("data", (chunk: Buffer) => call.onData(chunk));
  stream.once("end", () => call.onEnd());
}

/**
 * Whether the lean path can serve a stream with these headers; anything else goes to grpc-js. Returns
 * the timeout in ms (undefined: none) or null to hand the stream to grpc-js.
 */
export function leanTimeout(headers: IncomingHttpHeaders): number | undefined | null {
  const contentType = headers["content-type"];
  if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) return null;
  const encoding = headers["grpc-encoding"];
  if (encoding !== undefined && encoding !== "identity") return null;
  const timeout = headers["grpc-timeout"];
  if (timeout === undefined) return undefined;
  const m = typeof timeout === "string" ? deadlinePattern.exec(timeout) : null;
  if (m === null) return null;
  return (Number(m[1]) * unitMs[m[2]!]!) | 0;
}

/** The limits as grpc-js applies them: -1 is "no limit". */
export function effectiveLimits(limits: LeanLimits): LeanLimits {
  const bound = (n: number) => (n < 0 ? Number.POSITIVE_INFINITY : n);
  const maxReceiveMessageBytes = bound(limits.maxReceiveMessageBytes);
  return {
    maxReceiveMessageBytes,
    maxSendMessageBytes: bound(limits.maxSendMessageBytes),
    // One largest message (with its 5-byte prefix) always fits.
    connectionRequestBytesMax:
      limits.connectionRequestBytesMax ??
      Math.max(DEFAULT_CONNECTION_REQUEST_BYTES, maxReceiveMessageBytes + 5),
  };
}

type StreamListener = (stream: Http2Stream, headers: IncomingHttpHeaders, ...rest: unknown[]) => void;

/**
 * Puts the lean path in front of grpc-js on every HTTP/2 server `server` listens with. Call after every
 * bind. Throws if grpc-js's servers cannot be found (a grpc-js upgrade changed its internals): the
 * kit's tests catch that before a daemon runs without its lean path.
 */
export function attachLeanUnary(
  server: Server,
  routes: ReadonlyMap<string, LeanRoute>,
  limits: LeanLimits,
): void {
  if (routes.size === 0) return;
  const effective = effectiveLimits(limits);
  const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(http2Servers instanceof Map) || http2Servers.size === 0)
    throw new Error(
      "grpc-js server internals changed: cannot find its HTTP/2 servers for the lean unary path",
    );
  // grpc-js counts a session's open streams for grpc.max_connection_idle_ms; lean streams count too.
  const internals = server as unknown as { onStreamOpened?: (stream: Http2Stream) => void };
  const streamOpened = internals.onStreamOpened?.bind(server);
  const budgets = new WeakMap<object, RequestBudget>();
  const budgetOf = (stream: Http2Stream): RequestBudget => {
    const session = stream.session ?? stream;
    let b = budgets.get(session);
    if (b === undefined) {
      b = new RequestBudget(effective);
      budgets.set(session, b);
    }
    return b;
  };
  for (const h2 of http2Servers.keys() as IterableIterator<Http2Server>) {
    const grpcListeners = h2.listeners("stream") as StreamListener[];
    if (grpcListeners.length === 0)
      throw new Error("grpc-js server internals changed: its HTTP/2 server has no stream listener");
    h2.removeAllListeners("stream");
    h2.on("stream", (stream: Http2Stream, headers: IncomingHttpHeaders, ...rest: unknown[]) => {
      const route = routes.get(headers[":path"] as string);
      if (route !== undefined) {
        const timeout = leanTimeout(headers);
        if (timeout !== null) {
          streamOpened?.(stream);
          nodeStreamCall(stream, headers, route, effective, timeout, budgetOf(stream));
          return;
        }
      }
      for (const l of grpcListeners) l.call(h2, stream, headers, ...rest);
    });
  }
}
