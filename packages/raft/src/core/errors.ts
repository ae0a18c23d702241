// Typed errors of the consensus core and its storage. Each has a stable `code` so that the service
// layer can map it to a gRPC status without parsing messages.

export abstract class RaftError extends Error {
  abstract readonly code: string;
}

/** The requested index is at or below the last compaction point; the entry is only in a snapshot. */
export class CompactedError extends RaftError {
  readonly code = "RAFT_LOG_COMPACTED";
  constructor(readonly index: bigint) {
    super(`log entry ${index} has been compacted into a snapshot`);
  }
}

/** The requested index is beyond the last entry in the log. */
export class UnavailableError extends RaftError {
  readonly code = "RAFT_LOG_UNAVAILABLE";
  constructor(readonly index: bigint) {
    super(`log entry ${index} is not yet available`);
  }
}

/** The snapshot is being produced; the caller should retry later. */
export class SnapshotTemporarilyUnavailableError extends RaftError {
  readonly code = "RAFT_SNAPSHOT_TEMPORARILY_UNAVAILABLE";
  constructor() {
    super("snapshot is temporarily unavailable");
  }
}

/** A proposal was not accepted (no leader known, leadership transfer in progress, or a bound hit). */
export class ProposalDroppedError extends RaftError {
  readonly code = "RAFT_PROPOSAL_DROPPED";
  constructor(readonly reason: string) {
    super(`proposal dropped: ${reason}`);
  }
}
