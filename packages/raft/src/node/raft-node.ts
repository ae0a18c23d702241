// The driver: owns the core, the SQLite log store, the transport and the state machine. Timers tick
// the core; transport messages are stepped in; the Ready loop writes each Ready in ONE SQLite
// transaction, syncs it off the event loop (one fsync on libuv's thread pool per Ready, while the
// loop keeps serving), then sends, applies committed entries in batches, serves ReadIndex results
// and advances. Nothing that depends on a Ready's writes leaves before its fsync has completed.
// It also snapshots every `snapshotEntries` applied entries and compacts the log, keeping a tail.
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { decodeConfChange } from "../core/conf-change-codec.js";
import { ProposalDroppedError } from "../core/errors.js";
import { RaftCore } from "../core/raft-core.js";
import { SeededRandom } from "../core/random.js";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
  type RaftLogger,
  type Ready,
  type Snapshot,
  type SoftState,
  StateRole,
} from "../core/types.js";
import { decodeEnvelope } from "../service/envelope.js";
import {
  decodeLayerSnapshot,
  decodeMembers,
  concatBytes,
  encodeLayerSnapshotHead,
  encodeLayerSnapshotParts,
  encodeMembers,
  type MemberInfo,
  memberChangeFromJson,
  readLayerSnapshotHead,
} from "../service/members.js";
import type { ApplyEntry, SnapshotFileJob, SnapshotJob, StateMachine } from "../service/state-machine.js";
import { SqliteLogStore } from "../storage/sqlite-log-store.js";
import type { GrpcTransport } from "../transport/grpc-transport.js";

/** After this long (ms) in one turn of the Ready loop, the rest waits for the next turn. */
const READY_TURN_MS = 10;
/** A Raft log fsync at least this long is logged (etcd's warnSyncDuration). */
const SLOW_FSYNC_SECONDS = 1;
export interface RaftNodeConfig {
  id: NodeId;
  /** Directory of the member's log database (raft.db). */
  dataDir: string;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Take a snapshot and compact after this many applied entries. */
  snapshotEntries: number;
  /** Entries kept in the log behind a snapshot, for followers that lag a little. */
  snapshotTailEntries: number;
  msgBytesMax: number;
  inflightMsgsMax: number;
  /** Bytes of entry data in flight to one follower (see RaftConfig.inflightBytesMax). */
  inflightBytesMax: number;
  /** Bytes of committed entry data applied per Ready (see RaftConfig.committedBytesPerReadyMax). */
  committedBytesPerReadyMax: number;
  uncommittedBytesMax: number;
  /**
   * The members this one knows at first start. For a brand-new cluster they form the bootstrap
   * configuration; with `join` they only give the peers' URLs (the configuration then comes from
   * the leader's log or snapshot).
   */
  initialMembers: readonly MemberInfo[];
  /** True when this member joins an existing cluster (added by addMember first). */
  join?: boolean;
  /** Checkpoint raft.db's WAL from a worker thread (see WalCheckpointer); daemons turn it on. */
  backgroundCheckpoints?: boolean;
  logger: RaftLogger;
}

export const DEFAULT_NODE_CONFIG = {
  tickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  snapshotEntries: 10_000,
  snapshotTailEntries: 5_000,
  msgBytesMax: 1 << 20,
  inflightMsgsMax: 256,
  // A follower that comes back far behind is fed 4 MB per round trip: reading, encoding and sending
  // more in one turn stalls the leader's clients (256 full messages would be 256 MB).
  inflightBytesMax: 4 << 20,
  // Applied 256 KB at a time (several hundred small puts), a backlog of committed entries lets the
  // member's timers, peers and clients in between (see processReady).
  committedBytesPerReadyMax: 256 << 10,
  uncommittedBytesMax: 64 << 20,
} as const;

/** A snapshot job begun, with the node's state captured as the machine pinned its view. */
interface PinnedSnapshot<J> {
  readonly job: J;
  readonly index: bigint;
  readonly members: readonly MemberInfo[];
  readonly confState: ConfState;
}

/** Where a snapshot is taken: the node's applied index, members and ConfState there. */
type SnapshotAt = Omit<PinnedSnapshot<unknown>, "job">;

/** Events the service layer listens to. */
export interface NodeListener {
  onApplied(entry: ApplyEntry, result: Uint8Array, proposer: bigint, requestId: bigint): void;
  onConfApplied(index: bigint, cc: ConfChange): void;
  onReadStates(states: readonly { index: bigint; requestCtx: Uint8Array }[]): void;
  onAppliedIndex(index: bigint): void;
  onSoftState(ss: SoftState): void;
}

export class RaftNode {
  readonly id: NodeId;
  readonly core: RaftCore;
  readonly store: SqliteLogStore;
  private transport: GrpcTransport | null = null;
  private timer: NodeJS.Timeout | null = null;
  private scheduled = false;
  private stopped = false;
  private applied: bigint;
  private lastSnapshot: bigint;
  private confState: ConfState;
  readonly members = new Map<NodeId, MemberInfo>();
  /**
   * When a message from each peer was last received (reachability for quorum checks), in
   * `performance.now()` milliseconds: a monotonic clock, which a step of the wall clock does not move.
   */
  readonly lastHeard = new Map<NodeId, number>();
  /**
   * Heartbeats this leader sent more than two heartbeat intervals after the previous one to the
   * same follower (etcd_server_heartbeat_send_failures_total): the member did not get to them in
   * time, an overloaded process or a slow disk. Followers may then start an election.
   */
  heartbeatSendFailures = 0;
  /**
   * True from a Ready that carries a snapshot from the leader until the snapshot is installed (its
   * write and sync come first): etcd_server_snapshot_apply_in_progress_total.
   */
  snapshotInstalling = false;
  /** When the last heartbeat went to each follower (`performance.now()` ms), this leadership only. */
  readonly heartbeatSentAt = new Map<NodeId, number>();
  leader: NodeId = 0n;
  role: StateRole = StateRole.Follower;
  listener: NodeListener | null = null;

  constructor(
    readonly config: RaftNodeConfig,
    readonly sm: StateMachine,
  ) {
    this.id = config.id;
    const fresh = config.initialMembers;
    const boot = config.join === true ? [] : fresh;
    this.store = new SqliteLogStore({
      path: join(config.dataDir, "raft.db"),
      bootstrapVoters: boot.filter((m) => !m.isLearner).map((m) => m.id),
      bootstrapLearners: boot.filter((m) => m.isLearner).map((m) => m.id),
      backgroundCheckpoints: config.backgroundCheckpoints,
    });
    const saved = this.store.getAppMeta("members");
    if (saved === undefined) this.store.setAppMeta("members", encodeMembers(fresh));
    this.loadMembers();
    this.recoverInterruptedInstall();
    this.store.onSnapshotWanted = () => this.imageWanted();
    // As etcd's WAL: a sync of a second or more is worth an operator's look (a slow or busy disk).
    this.store.onFsync = (seconds) => {
      if (seconds >= SLOW_FSYNC_SECONDS)
        config.logger.warn(
          { took: `${seconds.toFixed(3)}s`, "expected-duration": `${SLOW_FSYNC_SECONDS}s` },
          "slow fdatasync",
        );
    };
    this.applied = sm.appliedIndex();
    if (this.applied < this.store.firstIndex() - 1n) this.applied = this.store.firstIndex() - 1n;
    this.lastSnapshot = this.store.snapshotIndex();
    this.confState = this.store.initialState().confState;
    this.core = new RaftCore({
      id: config.id,
      storage: this.store,
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      applied: this.applied,
      msgBytesMax: config.msgBytesMax,
      inflightMsgsMax: config.inflightMsgsMax,
      inflightBytesMax: config.inflightBytesMax,
      committedBytesPerReadyMax: config.committedBytesPerReadyMax,
      uncommittedBytesMax: config.uncommittedBytesMax,
      preVote: true,
      checkQuorum: true,
      disableProposalForwarding: false,
      random: new SeededRandom(randomBytes(8).readBigUInt64BE()),
      logger: config.logger,
    });
  }

  /**
   * The machine is behind the stored snapshot: a crash came between storing a received snapshot
   * and restoring the machine from it, or a power loss took back the machine's last unsynced
   * writes after this member made a snapshot past them. Restored from the snapshot now.
   */
  private recoverInterruptedInstall(): void {
    const snapIndex = this.store.snapshotIndex();
    if (snapIndex === 0n || this.sm.appliedIndex() >= snapIndex) return;
    if (this.store.snapshotInMachine()) {
      // The log was compacted behind files that were synced at snapIndex: they were replaced since.
      throw new Error(
        `the state machine's files are at index ${this.sm.appliedIndex()}, behind the snapshot at ` +
          `${snapIndex} they were recorded to hold (the log before it is compacted): restore this ` +
          "member's data directory from a backup, or remove the member and add it again",
      );
    }
    this.installSnapshot(this.store.snapshot(), snapIndex);
  }

  attachTransport(t: GrpcTransport): void {
    this.transport = t;
    for (const m of this.members.values()) {
      const url = m.peerUrls[0];
      if (url !== undefined) t.setPeer(m.id, url);
    }
  }

  start(): void {
    this.timer = setInterval(() => {
      this.core.tick();
      this.schedule();
    }, this.config.tickMs);
    this.schedule();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.store.close();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  appliedIndex(): bigint {
    return this.applied;
  }

  currentConfState(): ConfState {
    return this.confState;
  }

  // ---- Inputs -----------------------------------------------------------------------------

  step(m: Message): void {
    if (this.stopped) return;
    this.lastHeard.set(m.from, performance.now());
    try {
      this.core.step(m);
    } catch (err) {
      // A proposal a peer forwarded while this member knows no leader is dropped, as etcd drops it:
      // the proposer's deadline answers its caller. Nothing a peer sends may stop this member.
      if (!(err instanceof ProposalDroppedError)) throw err;
    }
    this.schedule();
  }

  reportUnreachable(peer: NodeId): void {
    if (this.stopped) return;
    this.core.reportUnreachable(peer);
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    if (this.stopped) return;
    this.core.reportSnapshot(peer, ok);
    this.schedule();
  }

  /** Calls `fn` against the core (propose, readIndex, ...) and runs the Ready loop soon after. */
  withCore<T>(fn: (core: RaftCore) => T): T {
    const r = fn(this.core);
    this.schedule();
    return r;
  }

  schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.processReady();
    });
  }

  // ---- The Ready loop ---------------------------------------------------------------------

  /** True from a Ready whose writes are being synced until it is finished and advanced. */
  private readySyncing = false;

  private processReady(): void {
    // A bounded number of rounds per turn, and a bounded time, keep timers and I/O callbacks
    // responsive (a backlog of committed entries comes one bounded Ready at a time).
    const turnEnd = performance.now() + READY_TURN_MS;
    for (let i = 0; i < 8 && !this.stopped && !this.readySyncing && this.core.hasReady(); i++) {
      if (i > 0 && performance.now() >= turnEnd) break;
      const rd = this.core.ready();
      if (this.writeReady(rd)) {
        // The fsync runs off the event loop; meanwhile the loop keeps stepping messages and taking
        // proposals (the core holds them for the next Ready), which is what batches the next one.
        this.readySyncing = true;
        this.applyDurableEarly(rd);
        this.store.sync().then(
          () => {
            this.readySyncing = false;
            if (this.stopped) return;
            this.finishReady(rd);
            this.schedule();
          },
          (err: unknown) => this.failStorage(err),
        );
        return;
      }
      this.finishReady(rd);
    }
    if (!this.stopped && !this.readySyncing && this.core.hasReady()) this.schedule();
  }

  /**
   * An fsync failed: what was written may not be on disk, so nothing that depends on it may be
   * sent, applied or acknowledged. The member stops (as etcd does) and `onFatal` is told.
   */
  private failStorage(err: unknown, what = "raft log fsync failed"): void {
    this.config.logger.error({ err: String(err) }, `${what}; stopping this member`);
    this.stop();
    this.onFatal?.(new Error(`${what}: ${String(err)}`));
  }

  /** Told when the node stopped itself because its storage failed (the daemon exits, as etcd does). */
  onFatal: ((err: Error) => void) | null = null;

  /**
   * The first half of a Ready: soft state, the leader's early sends, and the writes. Returns true
   * when the writes must be synced before the rest (`finishReady`) may run.
   */
  private writeReady(rd: Ready): boolean {
    if (rd.softState !== null) {
      this.leader = rd.softState.lead;
      this.role = rd.softState.role;
      this.heartbeatSentAt.clear();
      this.listener?.onSoftState(rd.softState);
    }
    // A leader may send before its own fsync (its term and vote were synced before it won, and it
    // counts its own log toward the commit only after advance), overlapping both fsyncs.
    const sendFirst = this.role === StateRole.Leader && rd.softState === null;
    if (sendFirst && rd.messages.length > 0) {
      // Written now, not at the end of the turn: the followers start on them while this Ready is
      // written and synced here.
      this.sendMessages(rd.messages);
      this.transport?.flush();
    }
    this.readyMessagesSent = sendFirst;
    if (rd.snapshot !== null) this.snapshotInstalling = true;
    if (rd.snapshot !== null || rd.entries.length > 0 || rd.hardState !== null) {
      this.store.persist({
        hardState: rd.hardState,
        entries: rd.entries,
        snapshot: rd.snapshot,
        // The snapshot's members go with its configuration: a crash after the machine restored the
        // image but before the members were set (installSnapshot) cannot leave the old table with
        // the new configuration (the conf changes between them are compacted away).
        ...(rd.snapshot === null
          ? {}
          : { snapshotAppMeta: { key: "members", value: encodeMembers(snapshotMembers(rd.snapshot)) } }),
      });
    }
    // Every write so far (also conf state and snapshots stored between Readys) is covered.
    return this.store.hasUnsynced();
  }

  private sendMessages(messages: readonly Message[]): void {
    this.transport?.send(messages);
    if (this.role === StateRole.Leader) this.observeHeartbeats(messages);
  }

  /** etcd's check that a leader sends its heartbeats on time (see heartbeatSendFailures). */
  private observeHeartbeats(messages: readonly Message[]): void {
    const intervalMs = this.config.tickMs * this.config.heartbeatTicks;
    let now: number | undefined;
    for (const m of messages) {
      if (m.type !== MessageType.Heartbeat) continue;
      now ??= performance.now();
      const last = this.heartbeatSentAt.get(m.to);
      this.heartbeatSentAt.set(m.to, now);
      if (last === undefined || now - last <= 2 * intervalMs) continue;
      this.heartbeatSendFailures++;
      this.config.logger.warn(
        {
          to: m.to.toString(16),
          heartbeatIntervalMs: intervalMs,
          expectedMaxMs: 2 * intervalMs,
          exceededMs: Math.round(now - last - 2 * intervalMs),
        },
        "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk",
      );
    }
  }

  /** Whether `writeReady` already sent the Ready's messages. */
  private readyMessagesSent = false;
  /** Whether `applyDurableEarly` already applied the Ready's committed entries. */
  private readyApplied = false;

  /**
   * Committed entries that are already durable HERE (covered by an earlier sync, not rewritten
   * since) are applied while this Ready's sync runs, instead of after it: the cluster committed
   * them and a crash cannot leave the state machine ahead of this member's log. Membership
   * entries and snapshots keep the strict order (send, then install/apply).
   */
  private applyDurableEarly(rd: Ready): void {
    this.readyApplied = false;
    const last = rd.committedEntries[rd.committedEntries.length - 1];
    if (last === undefined || rd.snapshot !== null || last.index > this.store.durableLastIndex()) return;
    if (rd.committedEntries.some((e) => e.type === EntryType.ConfChange)) return;
    this.applyCommitted(rd.committedEntries);
    this.readyApplied = true;
    this.listener?.onAppliedIndex(this.applied);
  }

  /** The second half, once the Ready's writes are durable: send, install, apply, advance. */
  private finishReady(rd: Ready): void {
    if (!this.readyMessagesSent && rd.messages.length > 0) {
      // Acknowledgements go out before the entries below are applied: the leader commits sooner.
      this.sendMessages(rd.messages);
      this.transport?.flush();
    }
    if (rd.snapshot !== null) {
      // The stored snapshot, which `persist` has moved a received file into.
      const stored = rd.snapshot.file === undefined ? rd.snapshot : this.store.snapshot();
      this.installSnapshot(stored, rd.snapshot.metadata.index);
      this.confState = rd.snapshot.metadata.confState;
      this.applied = rd.snapshot.metadata.index;
      this.lastSnapshot = rd.snapshot.metadata.index;
      this.snapshotInstalling = false;
    }
    if (rd.committedEntries.length > 0 && !this.readyApplied) this.applyCommitted(rd.committedEntries);
    this.readyApplied = false;
    this.core.advance(rd);
    if (rd.readStates.length > 0) this.listener?.onReadStates(rd.readStates);
    this.listener?.onAppliedIndex(this.applied);
    this.maybeSnapshot();
  }

  /**
   * Removes the file a snapshot was received into unless the core still holds that snapshot to
   * store (once stored, the log store has moved the file: nothing is left at `path`).
   */
  releaseReceivedSnapshot(path: string): void {
    if (this.stopped || this.core.log.unstable.snapshot?.file?.path === path) return;
    try {
      rmSync(path, { force: true });
    } catch (err) {
      this.config.logger.warn(
        { path, err: String(err) },
        "could not remove a snapshot file received in vain",
      );
    }
  }

  /**
   * Restores the machine from a stored snapshot's image, and the members from the table in
   * raft.db. That table, not the snapshot's, is the one to follow: it was written in the
   * transaction that recorded the snapshot (see writeReady), and by every conf change applied
   * since, which a machine restored at start (recoverInterruptedInstall) does not apply again.
   */
  private installSnapshot(snapshot: Snapshot, index: bigint): void {
    const file = snapshot.file;
    if (file === undefined) {
      this.sm.restore(decodeLayerSnapshot(snapshot.data).image, index);
    } else {
      // In a file: the image after its head, read by the machine itself when it can, so an image
      // of any size never has to fit in memory.
      const { imageOffset } = readLayerSnapshotHead(file.path);
      if (this.sm.restoreFromFile !== undefined) this.sm.restoreFromFile(file.path, imageOffset, index);
      else this.sm.restore(readFileSync(file.path).subarray(imageOffset), index);
    }
    this.loadMembers();
  }

  /** The members, and the transport's peers, as the table in raft.db has them. */
  private loadMembers(): void {
    const members = decodeMembers(this.store.getAppMeta("members") ?? new Uint8Array());
    for (const id of this.members.keys()) {
      if (!members.some((m) => m.id === id)) this.transport?.removePeer(id);
    }
    this.members.clear();
    for (const m of members) {
      this.members.set(m.id, m);
      const url = m.peerUrls[0];
      if (url !== undefined) this.transport?.setPeer(m.id, url);
    }
  }

  private applyCommitted(ents: readonly Entry[]): void {
    let batch: { e: ApplyEntry; proposer: bigint; requestId: bigint }[] = [];
    const flush = () => {
      if (batch.length === 0) return;
      const results = this.sm.applyBatch(batch.map((b) => b.e));
      batch.forEach((b, i) => {
        this.listener?.onApplied(b.e, results[i] ?? new Uint8Array(), b.proposer, b.requestId);
      });
      batch = [];
    };
    for (const e of ents) {
      if (e.index <= this.applied) continue;
      if (e.type === EntryType.ConfChange) {
        flush();
        this.applyConfEntry(e);
      } else if (e.data.length > 0) {
        const env = decodeEnvelope(e.data);
        batch.push({
          e: {
            index: e.index,
            term: e.term,
            timestampMs: env.timestampMs,
            seed: env.seed,
            command: env.command,
            // Only the proposer answers a caller; the others need not encode a result.
            resultWanted: env.proposer === this.id,
          },
          proposer: env.proposer,
          requestId: env.requestId,
        });
      }
      this.applied = e.index;
    }
    flush();
  }

  private applyConfEntry(e: Entry): void {
    const cc = decodeConfChange(e.data);
    // At restart the stored configuration already includes changes up to confIndex.
    if (e.index > this.store.confIndex()) {
      this.confState = this.core.applyConfChange(cc);
      const next = new Map(this.members);
      if (cc.type === ConfChangeType.RemoveNode) {
        next.delete(cc.nodeId);
        this.transport?.removePeer(cc.nodeId);
        // Added again later, it gets no heartbeat counted late for the time it was out.
        this.heartbeatSentAt.delete(cc.nodeId);
      } else if (cc.type === ConfChangeType.UpdateNode && !this.inConfig(cc.nodeId)) {
        // A metadata update that raced with the member's removal: it must not bring it back.
      } else if (cc.context.length > 8) {
        // context = [8-byte request tag][member JSON] (see RaftService.proposeConf).
        const change = memberChangeFromJson(new TextDecoder().decode(cc.context.subarray(8)));
        const info = change.info;
        const prev = next.get(cc.nodeId);
        const isLearner =
          cc.type === ConfChangeType.AddLearnerNode ||
          (cc.type === ConfChangeType.UpdateNode && (prev?.isLearner ?? false));
        if (change.publish && prev !== undefined) {
          // A member's publish changes its name and client URLs only (its peer URLs are the operator's).
          next.set(cc.nodeId, { ...prev, name: info.name, clientUrls: info.clientUrls, isLearner });
        } else {
          next.set(cc.nodeId, { ...info, id: cc.nodeId, isLearner });
          const url = info.peerUrls[0];
          if (url !== undefined) this.transport?.setPeer(cc.nodeId, url);
        }
      }
      this.members.clear();
      for (const [id, m] of next) this.members.set(id, m);
      this.store.setConfState(this.confState, e.index, {
        key: "app:members",
        value: encodeMembers(next.values()),
      });
    }
    this.listener?.onConfApplied(e.index, cc);
  }

  private inConfig(id: NodeId): boolean {
    return this.confState.voters.includes(id) || this.confState.learners.includes(id);
  }

  /** This member's next snapshot interval: jittered so members do not all stall at one index. */
  private snapshotEvery = 0n;

  private maybeSnapshot(): void {
    if (this.snapshotEvery === 0n) {
      const base = this.config.snapshotEntries;
      this.snapshotEvery = BigInt(base + Math.floor(Math.random() * (base / 2)));
    }
    if (this.snapshotJob !== null || this.applied - this.lastSnapshot < this.snapshotEvery) return;
    // After a restart the configuration loaded is the latest recorded, possibly from an entry past
    // the machine's index that is being applied again: a snapshot waits until the node is there.
    if (this.applied < this.store.confIndex()) return;
    if (this.machineFiles !== false && this.sm.persist !== undefined) {
      // An image made for a follower is not replaced before it is sent, for one more interval.
      const unsent = this.store.imageUnsent();
      if (unsent && this.applied - this.lastSnapshot < 2n * this.snapshotEvery) return;
      if (this.recordMachineSnapshot()) return;
    }
    this.snapshotEvery = 0n;
    this.takeImage();
  }

  /** Makes an image of the state at the applied index and stores it (off the loop when the machine can). */
  private takeImage(): void {
    if (this.beginSnapshotFileJob()) return;
    if (this.sm.beginSnapshot !== undefined) {
      this.beginSnapshotJob(this.sm.beginSnapshot.bind(this.sm));
      return;
    }
    // The image is taken here, on the loop; storing it (tens of megabytes) is not.
    const at: SnapshotAt = {
      index: this.applied,
      members: [...this.members.values()],
      confState: this.confState,
    };
    this.trackSnapshotJob(at.index, this.finishSnapshot(at, this.sm.snapshot()));
  }

  /** Whether the machine keeps files that `persist` makes durable (known once it is first asked). */
  private machineFiles: boolean | undefined;

  /**
   * The machine's own files as the snapshot (see StateMachine.persist): once they are durable at
   * the applied index, the log store records a snapshot held by them and compacts the log behind
   * it. Returns false when the machine keeps no files (an image is taken instead). While the
   * machine's index trails the node's (the last entry applied was one it never sees, such as a
   * membership change) it waits for the next entry: the ConfState recorded must be the one at the
   * index the machine's files are at. A failed sync stops the member, as a failed sync of the
   * log does: the file may have lost writes the log no longer holds once compacted.
   */
  private recordMachineSnapshot(): boolean {
    // Until the first `persist` the node does not know whether the machine keeps files: it waits
    // too, rather than take a whole image that a marker would replace an interval later.
    if (this.sm.appliedIndex() !== this.applied) return this.machineFiles !== false;
    const durable = this.sm.persist?.() ?? null;
    this.machineFiles = durable !== null;
    if (durable === null) return false;
    this.snapshotEvery = 0n;
    const index = this.applied;
    const confState = this.confState;
    const tail = BigInt(this.config.snapshotTailEntries);
    this.trackSnapshotJob(
      index,
      durable.then(
        () => {
          if (this.snapshotStillWanted(index)) this.store.createSnapshotMarker(index, confState, tail);
        },
        (err: unknown) => {
          if (!this.stopped)
            this.failStorage(err, "state machine could not make its files durable (persist failed)");
        },
      ),
    );
    return true;
  }

  /** Whether an image for a follower is already due to be begun (see `imageWanted`). */
  private imageDue = false;

  /**
   * A follower needs the snapshot's data while the machine's files hold it: an image is made and
   * stored, and the core sends it when it asks again (at the follower's next heartbeat response).
   * Not begun here: the core asks from within a step or a membership change, possibly while a batch
   * is being applied. It is begun between event-loop turns, where the applied index, the machine
   * and the ConfState agree. While a snapshot job runs the request is dropped; the next ask renews it.
   */
  private imageWanted(): void {
    if (this.imageDue) return;
    this.imageDue = true;
    setImmediate(() => {
      this.imageDue = false;
      if (this.stopped || this.snapshotJob !== null || !this.store.snapshotInMachine()) return;
      // Not while the node re-applies entries behind its loaded configuration (see maybeSnapshot).
      if (this.applied < this.store.confIndex()) return;
      this.takeImage();
    });
  }

  /** The snapshot being produced off the event loop, if any (one at a time). */
  private snapshotJob: Promise<void> | null = null;

  /**
   * Starts an off-loop snapshot at the current applied index. Members and ConfState are captured
   * now, in the same call stack as the machine pins its view, so the stored snapshot is exactly
   * the state at that index (see README, "Snapshots off the event loop").
   */
  private beginSnapshotJob(begin: () => SnapshotJob): void {
    const pinned = this.pinSnapshot(begin)!;
    this.trackSnapshotJob(
      pinned.index,
      pinned.job.image.then((image) => this.finishSnapshot(pinned, image)),
    );
  }

  /**
   * `beginSnapshotJob` for a machine that writes its image to a file (StateMachine
   * `beginSnapshotFile`): the stored snapshot file is then made from that file, a piece at a time,
   * so no image is held in memory. Returns false when the machine cannot (the caller takes the
   * image in memory). A machine that cannot yet (its worker is starting) makes none now: the
   * next interval, or the follower's next ask, tries again.
   */
  private beginSnapshotFileJob(): boolean {
    const beginFile = this.sm.beginSnapshotFile?.bind(this.sm);
    if (beginFile === undefined) return false;
    const scratch = this.store.scratchSnapshotFile(this.applied);
    if (scratch === null) return false;
    let pinned: PinnedSnapshot<SnapshotFileJob> | undefined;
    try {
      pinned = this.pinSnapshot(() => beginFile(scratch));
    } catch (err) {
      rmSync(scratch, { force: true });
      throw err;
    }
    if (pinned === undefined) return true;
    const { index, members } = pinned;
    const work = pinned.job.written
      .then(async () => {
        if (!this.snapshotStillWanted(index)) return;
        const head = encodeLayerSnapshotHead(members);
        this.recordSnapshotFile(pinned, await this.store.writeSnapshotFileFrom(index, head, scratch));
      })
      .finally(() => rmSync(scratch, { force: true }));
    this.trackSnapshotJob(index, work);
    return true;
  }

  /**
   * Begins a job with `begin` while capturing the node's applied index, members and ConfState in
   * the same call stack as the machine pins its view, so the stored snapshot is exactly the state
   * at that index (see README, "Snapshots off the event loop"). Undefined when `begin` began none.
   */
  private pinSnapshot<J extends { readonly index: bigint }>(
    begin: () => J | undefined,
  ): PinnedSnapshot<J> | undefined {
    // The machine's own index may trail ours: entries it never sees (ConfChange, a new leader's
    // empty entry) advance only the node's. Its state at its index is the state at ours.
    const index = this.applied;
    const members = [...this.members.values()];
    const confState = this.confState;
    const smIndex = this.sm.appliedIndex();
    const job = begin();
    if (job === undefined) return undefined;
    if (job.index !== smIndex) {
      throw new Error(
        `state machine pinned its snapshot at ${job.index}, not at its applied index ${smIndex} (a bug)`,
      );
    }
    return { job, index, members, confState };
  }

  /**
   * The next interval counts from when the job ends, not from when it began: an image a follower
   * waits for then stays stored for a whole interval (see maybeSnapshot), however long it took.
   */
  private trackSnapshotJob(index: bigint, work: Promise<void>): void {
    this.snapshotJob = work
      .catch((err: unknown) => {
        if (this.stopped) return;
        this.config.logger.warn(
          { index, err: String(err) },
          "snapshot failed; retrying at the next interval",
        );
      })
      .finally(() => {
        this.snapshotJob = null;
        if (index > this.lastSnapshot) this.lastSnapshot = this.applied;
      });
  }

  /** Stores a snapshot image taken at `index`: written to its own file off the loop, then recorded. */
  private async finishSnapshot(at: SnapshotAt, image: Uint8Array): Promise<void> {
    if (!this.snapshotStillWanted(at.index)) return;
    const parts = encodeLayerSnapshotParts(at.members, image);
    const file = await this.store.writeSnapshotFile(at.index, parts);
    if (file === null) {
      const tail = BigInt(this.config.snapshotTailEntries);
      this.store.createSnapshot(at.index, at.confState, concatBytes(parts), tail);
    } else {
      this.recordSnapshotFile(at, file);
    }
  }

  /** Records the snapshot file `file` made for `at`, unless a newer snapshot came meanwhile. */
  private recordSnapshotFile(at: SnapshotAt, file: string): void {
    if (this.snapshotStillWanted(at.index)) {
      const tail = BigInt(this.config.snapshotTailEntries);
      this.store.createSnapshotFromFile(at.index, at.confState, file, tail);
    } else if (!this.stopped) {
      this.store.discardSnapshotFile(file);
    }
  }

  /**
   * A newer snapshot (installed from the leader) supersedes one at `index`; a stopped store is
   * closed. An image replaces a snapshot the machine's files hold at the same index.
   */
  private snapshotStillWanted(index: bigint): boolean {
    if (this.stopped || index < this.store.firstIndex() - 1n) return false;
    const stored = this.store.snapshotIndex();
    return stored < index || (stored === index && this.store.snapshotInMachine());
  }
}

/** The members a layered snapshot carries (from its head when it is in a file). */
function snapshotMembers(snapshot: Snapshot): readonly MemberInfo[] {
  const file = snapshot.file;
  return file === undefined
    ? decodeLayerSnapshot(snapshot.data).members
    : readLayerSnapshotHead(file.path).members;
}
