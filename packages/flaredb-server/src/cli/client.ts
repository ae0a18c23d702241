// The flaredbctl side of the wire: one gRPC client per endpoint for flaredb.v1.FlareDBService and
// flaredb.v1.Cluster. Calls go to the first endpoint; when it cannot be reached (UNAVAILABLE without
// a flaredb error code, i.e. a connection failure) the next one is tried. Domain errors are not
// retried elsewhere: they are answers.

import { readFileSync } from "node:fs";
import {
  type ChannelCredentials,
  type ClientReadableStream,
  type ClientWritableStream,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { ClusterClient } from "../gen/flaredb/v1/cluster.js";
import { FlareDBServiceClient } from "../gen/flaredb/v1/flaredb.js";

export interface ConnectionOptions {
  /** `host:port` or `http(s)://host:port`, in the order to try. */
  endpoints: readonly string[];
  cacert?: string;
  cert?: string;
  key?: string;
  /** Deadline of unary calls. */
  timeoutMs?: number;
}

interface Endpoint {
  address: string;
  url: string;
  db: FlareDBServiceClient;
  cluster: ClusterClient;
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type UnaryFn<Req, Res> = (req: Req, md: Metadata, opts: { deadline: number }, cb: Callback<Res>) => unknown;

/** A failed call, with the server's stable error code when it sent one. */
export class CallError extends Error {
  constructor(
    readonly grpcCode: number,
    readonly errorCode: string,
    message: string,
    readonly endpoint: string,
  ) {
    super(message);
    this.name = "CallError";
  }
}

export function toCallError(err: unknown, endpoint: string): CallError {
  if (err instanceof CallError) return err;
  const e = err as Partial<ServiceError>;
  const code = typeof e.code === "number" ? e.code : status.UNKNOWN;
  const errorCode = String(e.metadata?.get("x-photon-error-code")[0] ?? "");
  const details = e.details || e.message || String(err);
  return new CallError(code, errorCode, details, endpoint);
}

/** A connection failure (nothing was processed): safe to try the next endpoint. */
function unreachable(err: CallError): boolean {
  return err.errorCode === "" && (err.grpcCode === status.UNAVAILABLE || err.grpcCode === status.UNKNOWN);
}

export class FlareDbConnection {
  private readonly endpoints: Endpoint[];
  private readonly timeoutMs: number;

  constructor(options: ConnectionOptions) {
    if (options.endpoints.length === 0) throw new Error("--endpoints: give at least one host:port");
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.endpoints = options.endpoints.map((raw) => {
      const url = /^[a-z]+:\/\//.test(raw) ? raw : `http://${raw}`;
      const parsed = new URL(url);
      if (parsed.port === "") throw new Error(`--endpoints: "${raw}" has no port (example: 127.0.0.1:2479)`);
      const address = `${parsed.hostname}:${parsed.port}`;
      const creds = channelCredentials(parsed.protocol === "https:", options);
      const channelOptions = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };
      return {
        address,
        url,
        db: new FlareDBServiceClient(address, creds, channelOptions),
        cluster: new ClusterClient(address, creds, channelOptions),
      };
    });
  }

  get endpointUrls(): string[] {
    return this.endpoints.map((e) => e.url);
  }

  close(): void {
    for (const e of this.endpoints) {
      e.db.close();
      e.cluster.close();
    }
  }

  /** Calls a unary method, failing over to the next endpoint only when one is unreachable. */
  async unary<Req, Res>(
    pick: (e: Endpoint) => { client: object; fn: UnaryFn<Req, Res> },
    request: Req,
  ): Promise<Res> {
    let last: CallError | undefined;
    for (const e of this.endpoints) {
      try {
        return await this.unaryAt(e, pick, request);
      } catch (err) {
        last = toCallError(err, e.url);
        if (!unreachable(last)) throw last;
      }
    }
    throw last!;
  }

  /** Calls a unary method on one given endpoint (status of each member, for example). */
  unaryAt<Req, Res>(
    e: Endpoint,
    pick: (e: Endpoint) => { client: object; fn: UnaryFn<Req, Res> },
    request: Req,
  ): Promise<Res> {
    const { client, fn } = pick(e);
    return new Promise<Res>((resolve, reject) => {
      fn.call(client, request, new Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) =>
        err ? reject(toCallError(err, e.url)) : resolve(res),
      );
    });
  }

  /** The endpoints themselves, for per-member calls. */
  each(): readonly Endpoint[] {
    return this.endpoints;
  }

  /** Opens a server stream on the first reachable endpoint (failing over before any message arrives). */
  async serverStream<Res>(open: (e: Endpoint) => ClientReadableStream<Res>, onMessage: (m: Res) => void) {
    let last: CallError | undefined;
    for (const e of this.endpoints) {
      let received = false;
      try {
        await new Promise<void>((resolve, reject) => {
          const stream = open(e);
          stream.on("data", (m: Res) => {
            received = true;
            try {
              onMessage(m);
            } catch (err) {
              stream.cancel();
              reject(new LocalFailure(err));
            }
          });
          stream.on("error", reject);
          stream.on("end", () => resolve());
        });
        return;
      } catch (err) {
        if (err instanceof LocalFailure) throw err.inner;
        last = toCallError(err, e.url);
        if (received || !unreachable(last)) throw last;
      }
    }
    throw last!;
  }

  /**
   * Opens a client stream; `feed` writes the messages and ends the stream. When an endpoint cannot
   * be reached the whole stream is sent again to the next one (`feed` must be repeatable).
   */
  async clientStream<Req, Res>(
    open: (e: Endpoint, cb: Callback<Res>) => ClientWritableStream<Req>,
    feed: (stream: ClientWritableStream<Req>) => Promise<void>,
  ): Promise<Res> {
    let last: CallError | undefined;
    for (const e of this.endpoints) {
      try {
        return await new Promise<Res>((resolve, reject) => {
          const stream = open(e, (err, res) => (err ? reject(toCallError(err, e.url)) : resolve(res)));
          feed(stream).catch((err: unknown) => {
            stream.cancel();
            reject(new LocalFailure(err));
          });
        });
      } catch (err) {
        if (err instanceof LocalFailure) throw err.inner;
        last = toCallError(err, e.url);
        if (!unreachable(last)) throw last;
      }
    }
    throw last!;
  }
}

/** An error of the caller's own message handler (not of the call): never a reason to fail over. */
class LocalFailure {
  constructor(readonly inner: unknown) {}
}

function channelCredentials(tls: boolean, o: ConnectionOptions): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  const read = (p?: string) => (p ? readFileSync(p) : null);
  return credentials.createSsl(read(o.cacert), read(o.key), read(o.cert));
}

/** Writes one message to a client stream, waiting for the transport to drain when its buffer is full. */
export function writeChunk<T>(stream: ClientWritableStream<T>, message: T): Promise<void> {
  if (stream.write(message)) return Promise.resolve();
  return new Promise((resolve) => stream.once("drain", () => resolve()));
}
