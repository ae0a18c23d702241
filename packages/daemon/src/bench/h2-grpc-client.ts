// A lean gRPC client on node:http2, for load generators. grpc-js's client spends more CPU per call
// than a daemon spends serving it (interceptor chains, retry and channel bookkeeping, a captured stack
// trace per call), so on a small machine a grpc-js load generator mostly measures itself. This one
// speaks the same wire protocol (HTTP/2 POST, 5-byte length-prefixed messages, grpc-status in the
// trailers) over ONE HTTP/2 session with one stream per call, and nothing else: no retries, no name
// resolution, no reconnection. It is for benchmarks and tests, not for applications.

import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
  type SecureClientSessionOptions,
} from "node:http2";

/**
 * One method: its path and its message conversions. A grpc-js method definition (the `XService.method`
 * objects ts-proto generates with outputServices=grpc-js) has exactly these fields, so it can be passed
 * as is; `methodOf` builds one from ts-proto message codecs.
 */
export interface GrpcMethod<Req, Res> {
  /** e.g. `/flaredb.v1.FlareDBService/Execute` */
  readonly path: string;
  readonly requestSerialize: (request: Req) => Uint8Array;
  readonly responseDeserialize: (bytes: Buffer) => Res;
}

/** The shape of a ts-proto message codec (`Foo.encode(x).finish()`, `Foo.decode(bytes)`). */
export interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

/** A method from its path and two ts-proto message codecs. */
export function methodOf<Req, Res>(
  path: string,
  request: MessageCodec<Req>,
  response: MessageCodec<Res>,
): GrpcMethod<Req, Res> {
  if (!/^\/[^/]+\/[^/]+$/.test(path)) {
    throw new Error(`gRPC method path must look like /package.Service/Method, got ${JSON.stringify(path)}`);
  }
  return {
    path,
    requestSerialize: (m) => request.encode(m).finish(),
    responseDeserialize: (b) => response.decode(b),
  };
}

/** A call that ended with a non-OK grpc-status (or a transport failure, as UNAVAILABLE). */
export class GrpcCallError extends Error {
  constructor(
    /** The gRPC status code (grpc-js's `status` numbering). */
    readonly code: number,
    readonly details: string,
    /** Response headers and trailers (e.g. `x-photon-error-code`), lower-case names. */
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    super(`gRPC status ${code}: ${details}`);
    this.name = "GrpcCallError";
  }
}

const statusUnavailable = 14;
const statusDeadlineExceeded = 4;
const statusInternal = 13;

export interface H2GrpcClientOptions {
  /** TLS options for an `https://` target (ca, cert, key, servername, ...). */
  readonly tls?: SecureClientSessionOptions;
  /** Metadata sent with every call (e.g. `{ authorization: "Bearer ..." }`); names lower-case. */
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface CallOptions {
  /** Metadata for this method's calls, added to the client's. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Sent as grpc-timeout and enforced here: the call fails with DEADLINE_EXCEEDED after it. */
  readonly deadlineMs?: number;
}

/** One HTTP/2 session to one server; each call is one stream on it. */
export class H2GrpcClient {
  private readonly session: ClientHttp2Session;
  private sessionError: Error | undefined;

  /** `target` is `host:port` (plain text) or an `http://` / `https://` URL. */
  constructor(
    target: string,
    private readonly options: H2GrpcClientOptions = {},
  ) {
    const url = /^https?:\/\//.test(target) ? target : `http://${target}`;
    this.session = connect(url, options.tls ?? {});
    // A failed session fails its open streams (each rejects its call) and every later call.
    this.session.on("error", (err) => {
      this.sessionError = err;
    });
    this.session.on("goaway", () => {
      this.sessionError ??= new Error("the server closed the HTTP/2 session (GOAWAY)");
    });
  }

  /** A function performing one unary call of `method`; headers are built once here. */
  unary<Req, Res>(method: GrpcMethod<Req, Res>, options: CallOptions = {}): (request: Req) => Promise<Res> {
    return this.caller<Req, Res, Res>(method, options, true);
  }

  /** A function performing one server-streaming call of `method` and collecting every message. */
  serverStream<Req, Res>(
    method: GrpcMethod<Req, Res>,
    options: CallOptions = {},
  ): (request: Req) => Promise<Res[]> {
    return this.caller<Req, Res, Res[]>(method, options, false);
  }

  private caller<Req, Res, Out>(
    method: GrpcMethod<Req, Res>,
    options: CallOptions,
    unary: boolean,
  ): (request: Req) => Promise<Out> {
    const headers = this.headersFor(method.path, options);
    const deadlineMs = options.deadlineMs;
    return (request) => {
      const body = method.requestSerialize(request);
      const frame = Buffer.allocUnsafe(5 + body.length);
      frame[0] = 0;
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      return new Promise<Out>((resolve, reject) => {
        if (this.sessionError !== undefined || this.session.closed || this.session.destroyed) {
          reject(unavailable(this.sessionError ?? new Error("the client is closed")));
          return;
        }
        let stream: ClientHttp2Stream;
        try {
          stream = this.session.request(headers);
        } catch (err) {
          reject(unavailable(err as Error));
          return;
        }
        const call = new PendingCall(
          stream,
          method.responseDeserialize,
          unary,
          resolve as (v: unknown) => void,
          reject,
        );
        if (deadlineMs !== undefined) call.startDeadline(deadlineMs);
        stream.end(frame);
      });
    };
  }

  private headersFor(path: string, options: CallOptions): Record<string, string> {
    const headers: Record<string, string> = {
      [constants.HTTP2_HEADER_METHOD]: "POST",
      [constants.HTTP2_HEADER_PATH]: path,
      [constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
      [constants.HTTP2_HEADER_TE]: "trailers",
    };
    for (const [name, value] of Object.entries({ ...this.options.metadata, ...options.metadata })) {
      if (name.startsWith(":") || name.startsWith("grpc-") || name !== name.toLowerCase()) {
        throw new Error(`metadata name ${JSON.stringify(name)} must be lower-case and not reserved`);
      }
      headers[name] = value;
    }
    if (options.deadlineMs !== undefined) {
      if (!(options.deadlineMs > 0))
        throw new Error(`deadlineMs must be positive, got ${options.deadlineMs}`);
      headers["grpc-timeout"] = `${Math.ceil(options.deadlineMs)}m`;
    }
    return headers;
  }

  /** Closes the session once its open calls have finished. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.session.closed || this.session.destroyed) return resolve();
      this.session.close(() => resolve());
    });
  }
}

/** The state of one call: response headers, message frames, trailers. */
class PendingCall<Res> {
  private readonly chunks: Buffer[] = [];
  /** Response headers and trailers, turned into metadata only for an error. */
  private readonly headerBlocks: IncomingHttpHeaders[] = [];
  private grpcStatus = -1;
  private grpcMessage = "";
  private done = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly decode: (bytes: Buffer) => Res,
    /** Resolve with the one message (unary) or with all of them (server streaming). */
    private readonly unary: boolean,
    private readonly resolve: (value: unknown) => void,
    private readonly reject: (err: Error) => void,
  ) {
    // A trailers-only answer (the usual error) carries grpc-status in the response headers.
    stream.on("response", (h) => this.readHeaders(h));
    stream.on("trailers", (h) => this.readHeaders(h));
    stream.on("data", (c: Buffer) => this.chunks.push(c));
    stream.on("error", (err) => this.fail(unavailable(err)));
    stream.on("close", () => this.finish());
  }

  startDeadline(ms: number): void {
    this.timer = setTimeout(() => {
      this.fail(new GrpcCallError(statusDeadlineExceeded, `no answer within ${ms} ms`, this.metadata()));
      this.stream.close(constants.NGHTTP2_CANCEL);
    }, ms);
  }

  private readHeaders(h: IncomingHttpHeaders): void {
    this.headerBlocks.push(h);
    const s = h["grpc-status"];
    if (s !== undefined) this.grpcStatus = Number(s);
    const m = h["grpc-message"];
    if (typeof m === "string") this.grpcMessage = decodeGrpcMessage(m);
  }

  private metadata(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const h of this.headerBlocks) {
      for (const [name, value] of Object.entries(h)) {
        if (value === undefined || name.startsWith(":")) continue;
        out[name] = Array.isArray(value) ? value.join(", ") : value;
      }
    }
    return out;
  }

  private fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.reject(err);
  }

  private finish(): void {
    if (this.done) return;
    if (this.grpcStatus === -1) {
      const code = this.stream.rstCode ?? 0;
      this.fail(
        new GrpcCallError(statusUnavailable, `the stream ended without grpc-status (reset code ${code})`, {}),
      );
      return;
    }
    if (this.grpcStatus !== 0) {
      this.fail(new GrpcCallError(this.grpcStatus, this.grpcMessage, this.metadata()));
      return;
    }
    let messages: Res[];
    try {
      messages = this.messages();
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.unary && messages.length !== 1) {
      this.fail(new GrpcCallError(statusInternal, `a unary call answered ${messages.length} messages`, {}));
      return;
    }
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.resolve(this.unary ? messages[0] : messages);
  }

  /** Splits the body into length-prefixed messages and decodes each. */
  private messages(): Res[] {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out: Res[] = [];
    let at = 0;
    while (at < all.length) {
      if (all.length - at < 5) throw malformed("a truncated message header");
      if (all[at] !== 0) throw malformed("a compressed message (none was asked for)");
      const length = all.readUInt32BE(at + 1);
      if (all.length - at - 5 < length) throw malformed("a truncated message");
      out.push(this.decode(all.subarray(at + 5, at + 5 + length)));
      at += 5 + length;
    }
    return out;
  }
}

function malformed(what: string): GrpcCallError {
  return new GrpcCallError(statusInternal, `malformed gRPC response: ${what}`, {});
}

function unavailable(err: Error): GrpcCallError {
  return new GrpcCallError(statusUnavailable, err.message, {});
}

/** grpc-message is percent-encoded; a malformed escape is kept as sent. */
function decodeGrpcMessage(m: string): string {
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}
