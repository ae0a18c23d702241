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
  CORRUPT: { message: "etcdserver: corrupt cluster", grpcStatus: status.DATA_LOSS },
  LEASE_NOT_FOUND: { message: "etcdserver: requested lease not found", grpcStatus: status.NOT_FOUND },
  LEASE_EXIST: { message: "etcdserver: lease already exists", grpcStatus: status.FAILED_PRECONDITION },
  LEASE_TTL_TOO_LARGE: { message: "etcdserver: too large lease TTL", grpcStatus: status.OUT_OF_RANGE },
  REQUEST_TOO_LARGE: { message: "etcdserver: request is too large", grpcStatus: status.INVALID_ARGUMENT },
  MEMBER_NOT_FOUND: { message: "etcdserver: member not found", grpcStatus: status.NOT_FOUND },
  NOT_CAPABLE: { message: "etcdserver: not capable", grpcStatus: status.UNAVAILABLE },
  AUTH_NOT_ENABLED: {
    message: "etcdserver: authentication is not enabled",
    grpcStatus: status.FAILED_PRECONDITION,
  },
  NO_LEADER: { message: "etcdserver: no leader", grpcStatus: status.UNAVAILABLE },
  INVALID_REQUEST: { message: "etcdserver: invalid request", grpcStatus: status.INVALID_ARGUMENT },
  NOT_SUPPORTED_FOR_LEARNER: {
    message: "etcdserver: rpc not supported for learner",
    grpcStatus: status.UNAVAILABLE,
  },
  TIMEOUT: { message: "etcdserver: request timed out", grpcStatus: status.UNAVAILABLE },
  // etcd's words for a request whose leader failed before it was applied: its outcome is unknown
  // ("no leader" says it was never proposed).
  TIMEOUT_DUE_TO_LEADER_FAIL: {
    message: "etcdserver: request timed out, possibly due to previous leader failure",
    grpcStatus: status.UNAVAILABLE,
  },
  TOO_MANY_REQUESTS: { message: "etcdserver: too many requests", grpcStatus: status.RESOURCE_EXHAUSTED },
  STOPPED: { message: "etcdserver: server stopped", grpcStatus: status.UNAVAILABLE },
  MEMBER_EXIST: { message: "etcdserver: member ID already exist", grpcStatus: status.FAILED_PRECONDITION },
  PEER_URL_EXIST: { message: "etcdserver: Peer URLs already exists", grpcStatus: status.FAILED_PRECONDITION },
  MEMBER_BAD_URLS: {
    message: "etcdserver: given member URLs are invalid",
    grpcStatus: status.INVALID_ARGUMENT,
  },
  TOO_MANY_LEARNERS: {
    message: "etcdserver: too many learner members in cluster",
    grpcStatus: status.FAILED_PRECONDITION,
  },
  MEMBER_NOT_LEARNER: {
    message: "etcdserver: can only promote a learner member",
    grpcStatus: status.FAILED_PRECONDITION,
  },
  LEARNER_NOT_READY: {
    message: "etcdserver: can only promote a learner member which is in sync with leader",
    grpcStatus: status.FAILED_PRECONDITION,
  },
  BAD_LEADER_TRANSFEREE: {
    message: "etcdserver: bad leader transferee",
    grpcStatus: status.FAILED_PRECONDITION,
  },
  NOT_ENOUGH_STARTED: {
    message: "etcdserver: re-configuration failed due to not enough started members",
    grpcStatus: status.FAILED_PRECONDITION,
  },
  UNHEALTHY: {
    message: "etcdserver: unhealthy cluster",
    grpcStatus: status.UNAVAILABLE,
  },
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

/**
 * The Raft layer's stable error codes, as etcd words the same conditions (etcd clients retry on
 * these texts). Codes travel with forwarded proposals, so matching the code (not the class) also
 * covers errors rebuilt from the wire.
 */
const raftCodes: Record<string, ErrorCode> = {
  RAFT_NOT_LEADER: "NO_LEADER",
  RAFT_NO_LEADER: "NO_LEADER",
  RAFT_PROPOSAL_DROPPED: "NO_LEADER",
  RAFT_LEADER_CHANGED: "TIMEOUT_DUE_TO_LEADER_FAIL",
  RAFT_TIMEOUT: "TIMEOUT",
  RAFT_TOO_MANY_REQUESTS: "TOO_MANY_REQUESTS",
  RAFT_STOPPED: "STOPPED",
  RAFT_MEMBER_NOT_FOUND: "MEMBER_NOT_FOUND",
  RAFT_LEARNER_NOT_READY: "LEARNER_NOT_READY",
};

/** The one mapping to a gRPC status for the etcd API handlers. */
export function toGrpcError(err: unknown): { code: status; details: string } {
  if (err instanceof ChainfireError) return { code: err.grpcStatus, details: err.message };
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  // etcd's bare texts: etcd's Go client turns a status into its typed error (rpctypes.ErrUnhealthy,
  // ErrTimeoutLeaderTransfer, ...) only when the text matches exactly. Why it was refused is in the
  // member's log (see RaftService.routeMembership) and in the operator API's answer.
  if (code === "RAFT_UNHEALTHY_CLUSTER") {
    // etcd's answer when members it needs are not connected (clients may retry).
    return { code: status.UNAVAILABLE, details: errorSpecs.UNHEALTHY.message };
  }
  if (code === "RAFT_QUORUM_AT_RISK" || code === "RAFT_CONF_CHANGE_PENDING") {
    return { code: status.FAILED_PRECONDITION, details: errorSpecs.NOT_ENOUGH_STARTED.message };
  }
  if (code === "RAFT_TRANSFEREE_UNREACHABLE") {
    // What etcd answers once a transfer to such a member has run out of time; chainfire knows sooner.
    return {
      code: status.UNAVAILABLE,
      details: "etcdserver: request timed out, leader transfer took too long",
    };
  }
  if (code === "RAFT_INVALID_ARGUMENT")
    return { code: status.INVALID_ARGUMENT, details: `etcdserver: ${message}` };
  const mapped = typeof code === "string" ? raftCodes[code] : undefined;
  if (mapped !== undefined)
    return { code: errorSpecs[mapped].grpcStatus, details: errorSpecs[mapped].message };
  return { code: status.INTERNAL, details: `etcdserver: ${message}` };
}
