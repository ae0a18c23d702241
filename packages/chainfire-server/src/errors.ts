// chainfire's domain errors. Messages are etcd's exact texts (etcdctl and client libraries match on
// them); codes are stable identifiers carried in replicated results; `grpcStatus` follows etcd's
// api/v3rpc/rpctypes mapping.
import { status } from "@grpc/grpc-js";

export class ChainfireError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly grpcStatus: status,
  ) {
    super(message);
    this.name = "ChainfireError";
  }
}

interface ErrorSpec {
  readonly message: string;
  readonly grpcStatus: status;
}

/** Every error the MVCC store and the etcd API handlers answer with, by stable code. */
export const errorSpecs = {
  EMPTY_KEY: { message: "etcdserver: key is not provided", grpcStatus: status.INVALID_ARGUMENT },
  KEY_NOT_FOUND: { message: "etcdserver: key not found", grpcStatus: status.INVALID_ARGUMENT },
  VALUE_PROVIDED: { message: "etcdserver: value is provided", grpcStatus: status.INVALID_ARGUMENT },
  LEASE_PROVIDED: { message: "etcdserver: lease is provided", grpcStatus: status.INVALID_ARGUMENT },
  TOO_MANY_OPS: {
    message: "etcdserver: too many operations in txn request",
    grpcStatus: status.INVALID_ARGUMENT,
  },
  DUPLICATE_KEY: {
    message: "etcdserver: duplicate key given in txn request",
    grpcStatus: status.INVALID_ARGUMENT,
  },
  COMPACTED: {
    message: "etcdserver: mvcc: required revision has been compacted",
    grpcStatus: status.OUT_OF_RANGE,
  },
  FUTURE_REV: {
    message: "etcdserver: mvcc: required revision is a future revision",
    grpcStatus: status.OUT_OF_RANGE,
  },
  NO_SPACE: { message: "etcdserver: mvcc: database space exceeded", grpcStatus: status.RESOURCE_EXHAUSTED },
  LEASE_NOT_FOUND: { message: "etcdserver: requested lease not found", grpcStatus: status.NOT_FOUND },
  LEASE_EXIST: { message: "etcdserver: lease already exists", grpcStatus: status.FAILED_PRECONDITION },
  LEASE_TTL_TOO_LARGE: { message: "etcdserver: too large lease TTL", grpcStatus: status.OUT_OF_RANGE },
  REQUEST_TOO_LARGE: { message: "etcdserver: request is too large", grpcStatus: status.INVALID_ARGUMENT },
  MEMBER_NOT_FOUND: { message: "etcdserver: member not found", grpcStatus: status.NOT_FOUND },
  NOT_CAPABLE: { message: "etcdserver: not capable", grpcStatus: status.UNAVAILABLE },
  NO_LEADER: { message: "etcdserver: no leader", grpcStatus: status.UNAVAILABLE },
  INVALID_REQUEST: { message: "etcdserver: invalid request", grpcStatus: status.INVALID_ARGUMENT },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorSpecs;

export function chainfireError(code: ErrorCode): ChainfireError {
  const spec = errorSpecs[code];
  return new ChainfireError(code, spec.message, spec.grpcStatus);
}

/** Rebuilds an error carried in a replicated result; unknown codes stay visible rather than UNKNOWN. */
export function errorFromResult(code: string, message: string): ChainfireError {
  const spec = (errorSpecs as Record<string, ErrorSpec>)[code];
  return new ChainfireError(code, message, spec?.grpcStatus ?? status.INTERNAL);
}

/** The one mapping to a gRPC status for the etcd API handlers. */
export function toGrpcError(err: unknown): { code: status; details: string } {
  if (err instanceof ChainfireError) return { code: err.grpcStatus, details: err.message };
  const code = (err as { code?: unknown })?.code;
  if (code === "RAFT_PROPOSAL_DROPPED") return { code: status.UNAVAILABLE, details: "etcdserver: no leader" };
  const message = err instanceof Error ? err.message : String(err);
  return { code: status.INTERNAL, details: `etcdserver: ${message}` };
}
