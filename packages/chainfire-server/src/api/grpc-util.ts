// Adapts async handlers to grpc-js callbacks with the one error mapping of this server.
import type { sendUnaryData, ServerUnaryCall, ServiceError } from "@grpc/grpc-js";
import { type GrpcStatus, isMappedGrpcError, grpcError as kitGrpcError } from "@photoncloud/daemon";
import { toGrpcError } from "../errors.js";

/** The mapped error, marked so the daemon kit's instrumentation passes it through unchanged. */
export function grpcError(err: unknown): ServiceError {
  // Already a status (e.g. relayed from the leader): keep it as it is.
  if (isMappedGrpcError(err)) return err;
  const mapped = toGrpcError(err);
  return kitGrpcError(mapped.code as GrpcStatus, mapped.details);
}

export function unary<Req, Res>(
  fn: (request: Req) => Promise<Res> | Res,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    // The handler runs now; what it throws or rejects with becomes the call's status.
    let result: Promise<Res> | Res;
    try {
      result = fn(call.request);
    } catch (err) {
      callback(grpcError(err));
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (response) => callback(null, response),
        (err: unknown) => callback(grpcError(err)),
      );
    } else callback(null, result);
  };
}
