// The data model of the consensus core: entries, persistent state, snapshots, membership, messages
// and the Ready batch. Every 64-bit quantity of the protocol (member IDs, terms, indexes) is a
// bigint, exactly as it travels on the wire; nothing is squeezed into a JS number.
//
// This file is the contract between the pure core (core/), the driver (node/), the durable store
// (storage/) and the transport (transport/). Changes must stay additive.

/** A member ID: an unsigned 64-bit integer. `NONE` (0) means "no member". */
export type NodeId = bigint;
export const NONE: NodeId = 0n;

export const EntryType = {
  /** An application command (or an empty entry appended by a new leader). */
  Normal: 0,
  /** A membership change; `data` is an encoded `ConfChange`. */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly term: bigint;
  readonly index: bigint;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** The state that must be on stable storage before any message that depends on it is sent. */
export interface HardState {
  readonly term: bigint;
  readonly vote: NodeId;
  readonly commit: bigint;
}

export const EMPTY_HARD_STATE: HardState = { term: 0n, vote: NONE, commit: 0n };

/** The voting and non-voting members of a configuration. IDs are sorted ascending. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMetadata {
  readonly index: bigint;
  readonly term: bigint;
  readonly confState: ConfState;
}

/**
 * A point-in-time image of the replicated state up to and including `metadata.index`.
 * `data` is opaque to the core (the service layer's snapshot: membership metadata plus the state
 * machine's image). The transport splits it into chunks on the wire (chunked InstallSnapshot); the
 * core always sees it whole.
 */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The data, when it is held in memory; empty when `file` holds it. */
  readonly data: Uint8Array;
  /**
   * The file holding the data, when it is too large to hold in memory: the storage's file of a
   * stored snapshot, or the one the transport received into. The core passes it on untouched.
   */
  readonly file?: SnapshotDataFile;
}

export interface SnapshotDataFile {
  readonly path: string;
  readonly bytes: number;
}

export const ConfChangeType = {
  /** Adds a voter, or promotes an existing learner to voter. */
  AddNode: 0,
  /** Adds a learner (non-voting member that receives the log). Demoting a voter is refused. */
  AddLearnerNode: 1,
  /** Removes any member, including the leader (which steps down once the change is applied). */
  RemoveNode: 2,
  /** Changes nothing in the core; carries new member metadata (URLs) in `context`. */
  UpdateNode: 3,
} as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

/**
 * One single-member membership change. At most one is pending (proposed but not applied) at a time.
 * `context` is opaque to the core: the service layer puts the member's name and URLs there.
 */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
  readonly context: Uint8Array;
}

export const MessageType = {
  /** Local: start an election (campaign). */
  Hup: 0,
  /** Local: the leader should broadcast heartbeats. */
  Beat: 1,
  /** A proposal; followers forward it to the leader unless forwarding is disabled. */
  Prop: 2,
  App: 3,
  AppResp: 4,
  Vote: 5,
  VoteResp: 6,
  Snap: 7,
  Heartbeat: 8,
  HeartbeatResp: 9,
  /** Local: the transport could not reach `from`. */
  Unreachable: 10,
  /** Local: the outcome of sending a snapshot to `from` (`reject` = failed). */
  SnapStatus: 11,
  /** Local: the leader checks that a quorum is still active. */
  CheckQuorum: 12,
  TransferLeader: 13,
  TimeoutNow: 14,
  ReadIndex: 15,
  ReadIndexResp: 16,
  PreVote: 17,
  PreVoteResp: 18,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** A message between cores, or a local message stepped into a core. */
export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  readonly term: bigint;
  /** Term of the entry at `index` (App: the entry before `entries`; Vote: the candidate's last). */
  readonly logTerm: bigint;
  readonly index: bigint;
  readonly entries: readonly Entry[];
  readonly commit: bigint;
  readonly snapshot: Snapshot | null;
  readonly reject: boolean;
  /** On rejected App: the follower's hint for fast conflict backtracking. */
  readonly rejectHint: bigint;
  /** ReadIndex request context; echoed in ReadIndexResp and Heartbeat. */
  readonly context: Uint8Array;
}

export const StateRole = {
  Follower: 0,
  Candidate: 1,
  Leader: 2,
  PreCandidate: 3,
} as const;
export type StateRole = (typeof StateRole)[keyof typeof StateRole];

/** Volatile state, reported when it changes; never persisted. */
export interface SoftState {
  readonly lead: NodeId;
  readonly role: StateRole;
}

/** A linearizable read may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly index: bigint;
  readonly requestCtx: Uint8Array;
}

/**
 * One batch of work the core hands to its driver. The driver must handle a Ready in this order
 * and then call `advance(ready)`:
 *
 * 1. `snapshot` (if any) and `entries` and `hardState` (if any) are written to stable storage
 *    atomically, and synced when `mustSync` is true, BEFORE any of `messages` is sent: a vote
 *    or an append acknowledgement promises that the state behind it survives a crash.
 *    (Exception, as in etcd: a leader may send App messages before its own entries are synced,
 *    because the leader counts itself toward the commit only after `advance`.)
 * 2. `messages` are sent (after step 1). Order per destination must be kept by the transport.
 * 3. `snapshot` (if any) is installed into the state machine, then `committedEntries` are applied
 *    in order. Conf change entries must be passed to `RaftCore.applyConfChange` when applied.
 * 4. `readStates` are served once the applied index reaches each one's `index`.
 * 5. `softState` is informational (leader and role changed).
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly readStates: readonly ReadState[];
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  /** True when `hardState` or `entries` changed in a way that requires fsync before sending. */
  readonly mustSync: boolean;
}

/**
 * Read-only log access for the core. Implemented in memory for tests and simulation, and by
 * the durable SQLite store for the driver. All methods are synchronous.
 */
export interface LogStorage {
  /** The persisted hard state and configuration at start-up. */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries in [lo, hi), truncated to at most `maxBytes` of data (but always at least one entry when
   * any exists). Throws CompactedError if lo <= compacted index, UnavailableError if hi > last+1.
   */
  entries(lo: bigint, hi: bigint, maxBytes: number): Entry[];
  /** The term of entry `index`; valid for [firstIndex()-1, lastIndex()]. Throws as `entries`. */
  term(index: bigint): bigint;
  /** Index of the first entry still in the log (snapshot index + 1). */
  firstIndex(): bigint;
  lastIndex(): bigint;
  /** The most recent snapshot. Throws SnapshotTemporarilyUnavailableError when it is being made. */
  snapshot(): Snapshot;
}

/** Minimal structured logger, compatible with pino's `(fields, message)` call shape. */
export interface RaftLogger {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** Injected randomness: the core never calls Math.random. */
export interface RandomSource {
  /** A uniformly distributed integer in [0, bound). */
  intBelow(bound: number): number;
}
