// Adapts async handlers to grpc-js callbacks with the one error mapping of this server.
import { Metadata, type sendUnaryData, type ServerUnaryCall, type ServiceError } from "@grpc/grpc-js";
import { toGrpcError } from "../errors.js";

export function grpcError(err: unknown): Partial<ServiceError> {
  const mapped = toGrpcError(err);
  return { code: mapped.code, details: mapped.details, message: mapped.details, metadata: new Metadata() };
}

export function unary<Req, Res>(
  fn: (request: Req) => Promise<Res> | Res,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(grpcError(err)),
      );
  };
}
