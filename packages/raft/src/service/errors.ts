// Typed errors of the replicated-service layer, each with a stable `code`, and their one mapping
// to gRPC status codes (used by every server that exposes the layer).
import { status } from "@grpc/grpc-js";
import { ProposalDroppedError, RaftError } from "../core/errors.js";
import type { NodeId } from "../core/types.js";

/** This member is not the leader; `leader` is the current leader's ID when known (0n otherwise). */
export class NotLeaderError extends RaftError {
  readonly code = "RAFT_NOT_LEADER";
  constructor(readonly leader: NodeId) {
    super(`this member is not the leader${leader !== 0n ? `; the leader is ${leader.toString(16)}` : ""}`);
  }
}

export class NoLeaderError extends RaftError {
  readonly code = "RAFT_NO_LEADER";
  constructor() {
    super("no leader is currently elected; retry shortly");
  }
}

export class MemberNotFoundError extends RaftError {
  readonly code = "RAFT_MEMBER_NOT_FOUND";
  constructor(
    readonly id: NodeId,
    message?: string,
  ) {
    super(
      message ?? `member ${id.toString(16)} is not in the cluster; list the members to see the current ones`,
    );
  }
}

/** A membership change that would leave the cluster without a reachable quorum. */
export class QuorumAtRiskError extends RaftError {
  readonly code: string = "RAFT_QUORUM_AT_RISK";
}

/**
 * The kind of QuorumAtRiskError where the members needed are there but not reachable now (etcd's
 * "unhealthy cluster", which its clients may retry), as against a change that could never keep a
 * quorum (removing the last voter).
 */
export class UnhealthyClusterError extends QuorumAtRiskError {
  override readonly code = "RAFT_UNHEALTHY_CLUSTER";
}

export class TimeoutError extends RaftError {
  readonly code = "RAFT_TIMEOUT";
}

/** Too many proposals in flight on this member; the caller should back off and retry. */
export class TooManyRequestsError extends RaftError {
  readonly code = "RAFT_TOO_MANY_REQUESTS";
  constructor(limit: number) {
    super(`more than ${limit} proposals in flight (proposalQueueMax); retry later`);
  }
}

export class InvalidArgumentError extends RaftError {
  readonly code = "RAFT_INVALID_ARGUMENT";
}

export class StoppedError extends RaftError {
  readonly code = "RAFT_STOPPED";
  constructor() {
    super("the Raft member is stopped");
  }
}

/**
 * A learner was not promoted: it does not hold enough of the leader's log to vote yet (or is not
 * running). As etcd, promotion needs at least 90% of the leader's entries.
 */
export class LearnerNotReadyError extends RaftError {
  readonly code = "RAFT_LEARNER_NOT_READY";
}

/**
 * A leadership transfer was refused (or given up) because the leader has not heard from the
 * target lately: a transfer to it could not finish, and the leader takes no writes while one is open.
 */
export class TransfereeUnreachableError extends RaftError {
  readonly code = "RAFT_TRANSFEREE_UNREACHABLE";
  constructor(target: NodeId, withinMs: number, message?: string) {
    super(
      message ??
        `member ${target.toString(16)} has not been heard from within ${withinMs} ms, so it cannot take ` +
          "over leadership; make sure it is running and reachable, then transfer again",
    );
  }
}

/** The membership change was refused because another one is still pending. */
export class ConfChangePendingError extends RaftError {
  readonly code = "RAFT_CONF_CHANGE_PENDING";
  constructor() {
    super("another membership change is still being applied; retry when it completes");
  }
}

/** This member is not the leader and could not reach the leader to forward the request. */
export class LeaderUnreachableError extends RaftError {
  readonly code = "RAFT_LEADER_UNREACHABLE";
  constructor(
    readonly leader: NodeId,
    detail: string,
  ) {
    super(
      `the leader ${leader.toString(16)} could not be reached from this member (${detail}); retry, ` +
        "or send the request to the leader",
    );
  }
}

/**
 * A proposal sent to a leader that then lost leadership (or died) was not applied here within an
 * election timeout of the change. Unlike NotLeaderError, its outcome is unknown: the earlier leader
 * may have replicated the entry, which the new leader then commits. A caller must check before
 * repeating a write that is not idempotent (etcd: "request timed out, possibly due to previous
 * leader failure").
 */
export class LeaderChangedError extends RaftError {
  readonly code = "RAFT_LEADER_CHANGED";
  constructor(readonly leader: NodeId) {
    super(
      `the leader changed${leader !== 0n ? ` (it is now ${leader.toString(16)})` : ""} before this ` +
        "proposal was applied; it may still be applied, so check before repeating a write that is not idempotent",
    );
  }
}

/** Maps a layer error to a gRPC status code and message (unknown errors → INTERNAL). */
export function raftErrorToGrpcStatus(err: unknown): { code: status; details: string } {
  const details = err instanceof Error ? err.message : String(err);
  if (err instanceof NotLeaderError || err instanceof NoLeaderError || err instanceof LeaderUnreachableError)
    return { code: status.UNAVAILABLE, details };
  if (err instanceof ProposalDroppedError || err instanceof LeaderChangedError)
    return { code: status.UNAVAILABLE, details };
  if (err instanceof MemberNotFoundError) return { code: status.NOT_FOUND, details };
  if (err instanceof QuorumAtRiskError) return { code: status.FAILED_PRECONDITION, details };
  if (err instanceof ConfChangePendingError) return { code: status.FAILED_PRECONDITION, details };
  if (err instanceof LearnerNotReadyError) return { code: status.FAILED_PRECONDITION, details };
  if (err instanceof TransfereeUnreachableError) return { code: status.FAILED_PRECONDITION, details };
  if (err instanceof TimeoutError) return { code: status.DEADLINE_EXCEEDED, details };
  if (err instanceof TooManyRequestsError) return { code: status.RESOURCE_EXHAUSTED, details };
  if (err instanceof InvalidArgumentError) return { code: status.INVALID_ARGUMENT, details };
  if (err instanceof StoppedError) return { code: status.UNAVAILABLE, details };
  return { code: status.INTERNAL, details };
}

/** Rebuilds a typed error from a stable code carried over the wire (forwarded proposals). */
export function errorFromCode(code: string, message: string, leader: NodeId): Error {
  switch (code) {
    case "RAFT_NOT_LEADER":
      return new NotLeaderError(leader);
    case "RAFT_NO_LEADER":
      return new NoLeaderError();
    case "RAFT_TIMEOUT":
      return new TimeoutError(message);
    case "RAFT_TOO_MANY_REQUESTS":
      return Object.assign(new TooManyRequestsError(0), { message });
    case "RAFT_PROPOSAL_DROPPED":
      return new ProposalDroppedError(message);
    case "RAFT_MEMBER_NOT_FOUND":
      return new MemberNotFoundError(0n, message);
    case "RAFT_QUORUM_AT_RISK":
      return new QuorumAtRiskError(message);
    case "RAFT_UNHEALTHY_CLUSTER":
      return new UnhealthyClusterError(message);
    case "RAFT_CONF_CHANGE_PENDING":
      return new ConfChangePendingError();
    case "RAFT_LEARNER_NOT_READY":
      return new LearnerNotReadyError(message);
    case "RAFT_TRANSFEREE_UNREACHABLE":
      return new TransfereeUnreachableError(0n, 0, message);
    case "RAFT_INVALID_ARGUMENT":
      return new InvalidArgumentError(message);
    case "RAFT_STOPPED":
      return new StoppedError();
    case "RAFT_LEADER_CHANGED":
      return new LeaderChangedError(leader);
    case "RAFT_LEADER_UNREACHABLE":
      return Object.assign(new LeaderUnreachableError(leader, ""), { message });
    default:
      return new Error(message);
  }
}
