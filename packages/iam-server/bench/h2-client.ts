// A minimal unary gRPC client on node:http2, used as the benchmark's load generator. grpc-js's client
// spends more CPU per call than the daemon does serving it (call stacks, interceptors, retry
// bookkeeping, a captured stack trace per call), so on a small machine a grpc-js load generator measures
// itself. This speaks the same wire protocol (HTTP/2 POST, 5-byte length-prefixed protobuf messages,
// grpc-status in the trailers) to the real daemon, with no retries, deadlines or channel management.
import { type ClientHttp2Session, connect, constants } from "node:http2";

export class GrpcStatusError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`gRPC status ${code}: ${details}`);
  }
}

interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

/** One HTTP/2 connection; each call is one stream. */
export class H2GrpcClient {
  private readonly session: ClientHttp2Session;

  constructor(address: string) {
    this.session = connect(`http://${address}`);
    this.session.on("error", () => {});
  }

  /** Returns a function performing the unary method at `path` (e.g. `/iam.v1.Tokens/ValidateToken`). */
  unary<Req, Res>(
    path: string,
    requestCodec: MessageCodec<Req>,
    responseCodec: MessageCodec<Res>,
    authorization?: string,
  ): (request: Req) => Promise<Res> {
    const headers: Record<string, string> = {
      [constants.HTTP2_HEADER_METHOD]: "POST",
      [constants.HTTP2_HEADER_PATH]: path,
      [constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
      [constants.HTTP2_HEADER_TE]: "trailers",
      ...(authorization ? { authorization } : {}),
    };
    return (request) => {
      const body = requestCodec.encode(request).finish();
      const frame = Buffer.allocUnsafe(5 + body.length);
      frame[0] = 0;
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      return new Promise<Res>((resolve, reject) => {
        const stream = this.session.request(headers);
        const chunks: Buffer[] = [];
        let grpcStatus = -1;
        let grpcMessage = "";
        const readStatus = (h: Record<string, unknown>) => {
          if (h["grpc-status"] !== undefined) grpcStatus = Number(h["grpc-status"]);
          if (h["grpc-message"] !== undefined) grpcMessage = decodeURIComponent(String(h["grpc-message"]));
        };
        // A trailers-only answer (errors) carries grpc-status in the response headers.
        stream.on("response", readStatus);
        stream.on("trailers", readStatus);
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("error", reject);
        stream.on("close", () => {
          if (grpcStatus !== 0) return reject(new GrpcStatusError(grpcStatus, grpcMessage));
          const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          if (all.length < 5 || all[0] !== 0) return reject(new Error("malformed gRPC response frame"));
          resolve(responseCodec.decode(all.subarray(5, 5 + all.readUInt32BE(1))));
        });
        stream.end(frame);
      });
    };
  }

  close(): void {
    this.session.close();
  }
}
