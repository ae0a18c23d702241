// The interface a replicated service (chainfire's MVCC store, flaredb's SQLite database) implements
// to run on the shared Raft layer. The layer owns consensus, membership, transport, forwarding and
// snapshots of its own metadata; the state machine owns only its data.

/** One committed command, as handed to the state machine. */
export interface ApplyEntry {
  /** Raft log index of the entry; strictly increasing across calls. */
  readonly index: bigint;
  readonly term: bigint;
  /**
   * Wall-clock time (ms since the Unix epoch) stamped into the entry by the leader when it accepted
   * the proposal. Identical on every member: use it instead of the local clock.
   */
  readonly timestampMs: number;
  /** A 64-bit seed stamped by the leader; identical on every member: use it instead of local randomness. */
  readonly seed: bigint;
  /** The command, as given to `propose`. */
  readonly command: Uint8Array;
  /**
   * False when no caller on this member can be waiting for the result (another member proposed the
   * entry): the machine may return an empty result instead of encoding one. Absent means wanted.
   */
  readonly resultWanted?: boolean;
}

/** A snapshot being produced off the event loop (see `StateMachine.beginSnapshot`). */
/** A `beginSnapshotFile` job: `written` settles once the image is whole in its file (or has failed). */
export interface SnapshotFileJob {
  readonly index: bigint;
  readonly written: Promise<void>;
}

export interface SnapshotJob {
  /**
   * The index the image is pinned at: `appliedIndex()` when the job began. (The layer stores the
   * snapshot at its own applied index, which may be higher: entries the machine never sees, such
   * as membership changes, do not change its state.)
   */
  readonly index: bigint;
  readonly image: Promise<Uint8Array>;
}

/**
 * A deterministic state machine. Given the same sequence of entries from the same snapshot, every
 * member must reach byte-identical state and return identical results.
 */
export interface StateMachine {
  /**
   * Applies a batch of consecutive committed entries and records the last applied index in the same
   * transaction as their changes, so a crash never applies an entry twice or skips one. That
   * transaction may commit later (chainfire batches commits as etcd does): every entry is durable in
   * the log before it is applied, and after a crash the layer re-applies the entries past the index
   * the machine reopens at. Returns one encoded result per entry (an application-level error is a
   * result, not a throw; a throw is fatal); for an entry whose `resultWanted` is false the result
   * may be empty.
   */
  applyBatch(entries: readonly ApplyEntry[]): Uint8Array[];
  /** The last index applied (0n for an empty machine); at open, the last one stored. */
  appliedIndex(): bigint;
  /**
   * A consistent image of the state as of `appliedIndex()`. Everything applied so far must be stored
   * when it returns: the layer compacts the log behind the snapshot.
   */
  snapshot(): Uint8Array;
  /**
   * Optional: a snapshot produced without blocking the event loop. Called right after the entry at
   * `appliedIndex()` was applied and before any later one is; the machine must pin a read view at
   * exactly that index before returning (e.g. a SQLite read transaction on a second connection),
   * then produce the same image `snapshot()` would have, while later entries are applied. The
   * promise rejects when the view cannot be kept; the layer then tries again at the next interval.
   */
  beginSnapshot?(): SnapshotJob;
  /**
   * Optional, like `beginSnapshot`: the image is written to the new file `file` instead of being
   * handed over in memory, so an image of any size costs disk, not memory. Undefined when it
   * cannot be done off the loop right now (the layer uses `beginSnapshot` or `snapshot` then).
   */
  beginSnapshotFile?(file: string): SnapshotFileJob | undefined;
  /**
   * Optional, for a machine that keeps its state in files of its own: commits everything applied so
   * far and resolves once those files are durable at `appliedIndex()` (synced to disk); returns null
   * when the machine keeps no files (in memory). With it, the layer's snapshot every interval is a
   * record that the machine's files hold the state at that index, and the log is compacted behind
   * it, as etcd does with its backend, instead of an image of the whole state being made and
   * written each time. An image (`beginSnapshot`, else `snapshot`) is made only when a follower
   * needs one. Called between entries, never during `applyBatch`.
   */
  persist?(): Promise<void> | null;
  /** Replaces the whole state with `image`, taken at `index`; records `index` as applied. */
  restore(image: Uint8Array, index: bigint): void;
  /**
   * Optional: `restore` with the image read from the file `source`, from byte `offset` to its end
   * (a snapshot too large to hold in memory; the file stays the layer's). Without it, the layer
   * reads the image into memory and calls `restore`.
   */
  restoreFromFile?(source: string, offset: number, index: bigint): void;
  /** Releases resources (closes databases). */
  close(): void;
}

/**
 * What a replicated service's API handlers need from the Raft layer. Implemented by the layer's
 * facade; test doubles may apply commands directly for handler unit tests.
 */
export interface ProposeOptions {
  /**
   * Appended only by this member while it leads in this term, or not at all (NotLeaderError): never
   * forwarded. For decisions only the leader of that term may take (e.g. from its own clock), so a
   * member that has lost the leadership without noticing yet cannot have one committed by the next.
   */
  readonly leaderTerm?: bigint;
}

export interface Replicated {
  /**
   * Replicates `command` through the log (forwarded to the leader when this member is a follower)
   * and resolves with the state machine's result once the entry is applied on THIS member, so a
   * read served here afterwards sees the write.
   */
  propose(command: Uint8Array, options?: ProposeOptions): Promise<{ result: Uint8Array; index: bigint }>;
  /** Runs `read` against local state once it reflects every write committed before the call (ReadIndex). */
  linearizableRead<T>(read: () => T): Promise<T>;
  /** Runs `read` against local state immediately (may be stale). */
  serializableRead<T>(read: () => T): T;
}
