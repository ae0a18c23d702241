import type { ServerUnaryCall, UntypedServiceImplementation, sendUnaryData } from "@grpc/grpc-js";
import { type GrpcServiceRegistration, type GrpcStatus, grpcError } from "@photoncloud/daemon";

type UnaryHandler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;

/**
 * iam-api's handlers report errors already mapped to a status ({code, details}, via its one mapping
 * `toGrpcError`); the daemon kit treats any error it did not mark as mapped as INTERNAL. This marks
 * them, so clients see the intended status and message.
 */
export function markMappedErrors(services: GrpcServiceRegistration[]): GrpcServiceRegistration[] {
  return services.map(({ definition, implementation, ...rest }) => {
    const wrapped: UntypedServiceImplementation = {};
    for (const [name, handler] of Object.entries(implementation)) {
      const unary = handler as UnaryHandler;
      wrapped[name] = ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) =>
        unary(call, (err, value) => {
          if (err && typeof err.code === "number" && typeof err.details === "string")
            return callback(grpcError(err.code as GrpcStatus, err.details));
          return callback(err, value);
        })) as UnaryHandler;
    }
    return { ...rest, definition, implementation: wrapped };
  });
}
