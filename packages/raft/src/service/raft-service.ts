// The replicated-service facade: what chainfire and flaredb code against. Proposals are wrapped in
// an envelope (leader timestamp and seed), forwarded from followers to the leader over the peer
// RPC, and resolve only once applied on the serving member. Reads use batched ReadIndex.
// Membership operations follow the operator contract (add/upsert/promote/replace URLs/remove).
import { randomBytes } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { ProposalDroppedError, RaftError } from "../core/errors.js";
import { makeMessage } from "../core/messages.js";
import {
  type ConfChange,
  ConfChangeType,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
  type SoftState,
  StateRole,
} from "../core/types.js";
import type * as pb from "../gen/raft/v1/raft.js";
import { DEFAULT_NODE_CONFIG, type NodeListener, RaftNode, type RaftNodeConfig } from "../node/raft-node.js";
import { GrpcTransport, type GrpcTransportConfig } from "../transport/grpc-transport.js";
import { encodeEnvelope, restampEnvelope } from "./envelope.js";
import {
  ConfChangePendingError,
  InvalidArgumentError,
  LeaderUnreachableError,
  LearnerNotReadyError,
  MemberNotFoundError,
  LeaderChangedError,
  NoLeaderError,
  NotLeaderError,
  QuorumAtRiskError,
  UnhealthyClusterError,
  StoppedError,
  TimeoutError,
  TooManyRequestsError,
  TransfereeUnreachableError,
} from "./errors.js";
import { type MemberInfo, memberToJson } from "./members.js";
import {
  memberFromRecord,
  membershipError,
  membershipOk,
  membershipRefusal,
  memberToRecord,
} from "./membership-wire.js";
import type { ApplyEntry, ProposeOptions, Replicated, StateMachine } from "./state-machine.js";

export interface RaftServiceConfig
  extends Partial<Omit<RaftNodeConfig, "id" | "dataDir" | "initialMembers" | "logger">> {
  id: NodeId;
  dataDir: string;
  initialMembers: readonly MemberInfo[];
  logger?: RaftNodeConfig["logger"];
  /** Proposals waiting to be applied on this member beyond which new ones are refused. */
  proposalQueueMax?: number;
  /** Deadline of proposals, reads and membership operations. */
  requestTimeoutMs?: number;
  transport?: Partial<GrpcTransportConfig>;
}

export interface MemberSpec {
  name: string;
  peerUrls: readonly string[];
  clientUrls: readonly string[];
  isLearner: boolean;
}

export interface RaftServiceStatus {
  id: NodeId;
  leader: NodeId;
  term: bigint;
  commit: bigint;
  applied: bigint;
  role: "follower" | "candidate" | "leader" | "pre-candidate";
  raftIndex: bigint;
  members: MemberInfo[];
}

/** An upsert's spec with the stored values where the request leaves a field empty. */
function mergeSpec(existing: MemberInfo, spec: MemberSpec): MemberSpec {
  return {
    name: spec.name !== "" ? spec.name : existing.name,
    peerUrls: spec.peerUrls.length > 0 ? spec.peerUrls : existing.peerUrls,
    clientUrls: spec.clientUrls.length > 0 ? spec.clientUrls : existing.clientUrls,
    isLearner: spec.isLearner,
  };
}

/** What a membership operation yields (NO_MEMBER for remove and transfer). */
interface MembershipResult {
  member: MemberInfo;
  updated: boolean;
  /** Log index of the applied change; 0n for a leader transfer. */
  index: bigint;
}

const NO_MEMBER: MemberInfo = { id: 0n, name: "", peerUrls: [], clientUrls: [], isLearner: false };

const ROLE_NAMES = ["follower", "candidate", "leader", "pre-candidate"] as const;
const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: unknown): void;
  /** Fails the wait at its deadline (proposals have `deadline` instead: see sweepProposals). */
  timer?: NodeJS.Timeout;
}

/**
 * A queued linearizable read: called with null to run the read and settle its promise with the
 * result, or with the error to fail it.
 */
type ReadWaiter = (failure: unknown) => void;

/** The linearizable reads of one turn, sharing one ReadIndex request. */
interface ReadBatch {
  readonly ctx: Uint8Array;
  readonly reads: ReadWaiter[];
  /** When the reads fail with TimeoutError (performance.now() clock: wall-clock steps do not move it). */
  readonly deadline: number;
  /** When the ReadIndex request was last issued: re-issued each election timeout until served. */
  issuedAt: number;
  /** The ReadIndex came back: the reads wait for this member to apply up to it. */
  served: boolean;
}

interface ProposalWaiter extends Waiter<{ result: Uint8Array; index: bigint }> {
  /** When the proposal fails with TimeoutError (performance.now() clock: wall-clock steps do not move it). */
  deadline: number;
  /** The leader this member sent the proposal to (unset: stepped into this member's own core). */
  sentTo?: NodeId;
}

export class RaftService implements Replicated, NodeListener {
  readonly node: RaftNode;
  readonly transport: GrpcTransport;
  /** The cluster's ID as known to the daemon (0n when unknown); served to joining members. */
  clusterId = 0n;
  private readonly timeoutMs: number;
  private readonly queueMax: number;
  /**
   * Request numbers start at a random point: after a restart, entries this member proposed before
   * it stopped may still be applied, and must not match a new caller's request.
   */
  private nextRequest = randomBytes(8).readBigUInt64BE(0) >> 2n;
  private propBatch: { requestId: bigint; data: Uint8Array; leaderTerm?: bigint }[] = [];
  /** Pending proposals by request number, in the order made: deadlines ascend (see sweepProposals). */
  private readonly proposals = new Map<bigint, ProposalWaiter>();
  private proposalSweep: NodeJS.Timeout | null = null;
  private readonly appliedWaits: { index: bigint; resolve(): void }[] = [];
  private readonly confWaits = new Map<bigint, Waiter<bigint>>();
  /** Read batches by request context (hex), in the order made (see sweepReads). */
  private readonly readBatches = new Map<string, ReadBatch>();
  private pendingReads: ReadWaiter[] = [];
  private readScheduled = false;
  private readSweep: NodeJS.Timeout | null = null;
  /** Callers of `waitForLeader` between their polls; each removes itself when its poll times out. */
  private readonly leaderWaits = new Set<() => void>();

  constructor(
    config: RaftServiceConfig,
    readonly sm: StateMachine,
  ) {
    this.timeoutMs = config.requestTimeoutMs ?? 10_000;
    this.queueMax = config.proposalQueueMax ?? 8192;
    this.node = new RaftNode(
      { ...DEFAULT_NODE_CONFIG, ...config, logger: config.logger ?? SILENT } as RaftNodeConfig,
      sm,
    );
    this.node.listener = this;
    this.transport = new GrpcTransport(
      config.id,
      {
        onMessage: (m) => this.stepFromPeer(m),
        onUnreachable: (p, messages = 1) => {
          this.stats.peerSendFailures.set(p, (this.stats.peerSendFailures.get(p) ?? 0) + messages);
          this.node.reportUnreachable(p);
        },
        onSnapshotStatus: (p, ok) => this.node.reportSnapshot(p, ok),
        onForwardedPropose: (cmd) => this.servePropose(cmd),
        onForwardedProposeBatch: (cmds) => this.serveProposeBatch(cmds),
        onForwardedMembership: (req) => this.serveMembership(req),
        onClusterInfo: () => {
          const cs = this.node.currentConfState();
          const core = this.node.core;
          return {
            clusterId: this.clusterId,
            memberId: this.node.id,
            leaderId: this.node.leader,
            memberIds: [...cs.voters, ...cs.learners],
            term: core.term,
            // A new leader takes its whole log as possibly holding a membership change
            // (pendingConfIndex); once that is applied, its configuration is the cluster's.
            configCurrent:
              core.role === StateRole.Leader && this.node.appliedIndex() >= core.pendingConfIndex,
          };
        },
      },
      {
        // A snapshot from a leader is received into a file the log store then takes over.
        receiveSnapshotInto: (index) => this.node.store.receivedSnapshotFile(index),
        ...config.transport,
      },
    );
    this.node.attachTransport(this.transport);
  }

  /** Registers the peer-transport service on the daemon's gRPC server. */
  register(server: grpc.Server): void {
    this.transport.register(server);
  }

  start(): void {
    this.node.start();
  }

  stop(): void {
    if (this.sentCheck !== null) clearTimeout(this.sentCheck);
    if (this.proposalSweep !== null) clearTimeout(this.proposalSweep);
    if (this.readSweep !== null) clearTimeout(this.readSweep);
    this.transport.stop();
    this.node.stop();
    const err = new StoppedError();
    for (const w of this.proposals.values()) this.fail(w, err);
    for (const w of this.confWaits.values()) this.fail(w, err);
    this.failReads(err);
    this.proposals.clear();
    this.confWaits.clear();
    this.sm.close();
  }

  private failReads(err: Error): void {
    const batches = [...this.readBatches.values()];
    this.readBatches.clear();
    for (const b of batches) for (const r of b.reads) r(err);
    for (const r of this.pendingReads.splice(0)) r(err);
  }

  private fail<T>(w: Waiter<T>, err: unknown): void {
    if (w.timer !== undefined) clearTimeout(w.timer);
    w.reject(err);
  }

  // ---- Proposals --------------------------------------------------------------------------

  /**
   * Every member proposes the same way: the command is wrapped in an envelope naming this member
   * and a request number, and the caller resolves once the entry is applied HERE. A follower sends
   * its proposals to the leader as one Raft Prop message per event-loop turn on the peer stream
   * (etcd's forwarding), so a forwarded write costs one stream message instead of a ProposeBatch
   * call and its answer. A proposal the leader drops is never applied: after a leader change its
   * caller gets LeaderChangedError (see scheduleSentCheck), otherwise (a transfer in progress, too
   * much uncommitted data) the TimeoutError at the deadline, as etcd's callers do.
   */
  propose(command: Uint8Array, options: ProposeOptions = {}): Promise<{ result: Uint8Array; index: bigint }> {
    if (this.node.isStopped) return Promise.reject(new StoppedError());
    // With a leader known (the usual case) no promise turn is spent waiting for one.
    if (this.node.leader !== 0n || options.leaderTerm !== undefined)
      return this.proposeLocal(command, options);
    return this.waitForLeader().then(() => this.proposeLocal(command, options));
  }

  private proposeLocal(
    command: Uint8Array,
    { leaderTerm }: ProposeOptions,
  ): Promise<{ result: Uint8Array; index: bigint }> {
    if (this.proposals.size >= this.queueMax) return Promise.reject(new TooManyRequestsError(this.queueMax));
    const requestId = this.nextRequest++;
    const data = encodeEnvelope({
      proposer: this.node.id,
      requestId,
      timestampMs: Date.now(),
      seed: this.nextSeed(),
      command,
    });
    return new Promise((resolve, reject) => {
      this.proposals.set(requestId, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      this.proposalSweep ??= setTimeout(() => this.sweepProposals(), this.timeoutMs);
      this.propBatch.push(leaderTerm === undefined ? { requestId, data } : { requestId, data, leaderTerm });
      if (this.propBatch.length === 1) setImmediate(() => this.flushProposals());
    });
  }

  /**
   * Proposals of one event-loop turn go out as ONE Prop message: into the core on the leader (one
   * broadcast), straight to the leader's peer stream on a follower (not through this member's
   * Ready loop, which may be waiting for an fsync).
   */
  private flushProposals(): void {
    let batch = this.propBatch;
    this.propBatch = [];
    // The core's own view: the node's `leader` follows it only at the next Ready.
    const core = this.node.core;
    const leading = core.role === StateRole.Leader ? core.term : -1n;
    // Proposals for one leader's term only: checked in the same turn as they enter the core.
    if (batch.some((b) => b.leaderTerm !== undefined)) {
      batch = batch.filter((b) => {
        if (b.leaderTerm === undefined || b.leaderTerm === leading) return true;
        const w = this.proposals.get(b.requestId);
        this.proposals.delete(b.requestId);
        if (w !== undefined) {
          this.stats.proposalsFailed++;
          this.fail(w, new NotLeaderError(this.node.leader === this.node.id ? 0n : this.node.leader));
        }
        return false;
      });
    }
    if (batch.length === 0) return;
    const entries = batch.map((b) => ({ term: 0n, index: 0n, type: EntryType.Normal, data: b.data }));
    const leader = this.node.leader;
    // A core that leads takes them itself (so a fenced proposal is never forwarded).
    if (leading < 0n && leader !== this.node.id && leader !== 0n && !this.node.isStopped) {
      for (const b of batch) {
        const w = this.proposals.get(b.requestId);
        if (w !== undefined) w.sentTo = leader;
      }
      this.transport.send([makeMessage({ type: MessageType.Prop, from: this.node.id, to: leader, entries })]);
      // To the socket now, not on the next turn: the leader can take them into the Ready it is
      // about to write.
      this.transport.flush();
      return;
    }
    try {
      this.node.withCore((c) => c.step(makeMessage({ type: MessageType.Prop, from: this.node.id, entries })));
    } catch (err) {
      for (const b of batch) {
        const w = this.proposals.get(b.requestId);
        this.proposals.delete(b.requestId);
        if (w === undefined) continue;
        this.stats.proposalsFailed++;
        this.fail(w, err);
      }
    }
  }

  /**
   * A Prop a follower sent: the leader's clock and a fresh seed replace the proposer's (the
   * envelope's time is the leader's, as when the leader itself proposes). Rewritten in place: the
   * bytes were just decoded from the peer stream and belong to this message alone.
   */
  private stepFromPeer(m: Message): void {
    // Addressed to another member: its sender dials a peer URL that is now this member's (etcd's
    // peer handler refuses such a message too). Taking it would answer for that member.
    const received = m.snapshot?.file;
    if (received !== undefined) {
      // A snapshot received into a file that the core does not take (stale, or from an old term)
      // is removed once the Ready that would have stored it has run: a snapshot can be large.
      setImmediate(() => this.node.releaseReceivedSnapshot(received.path));
    }
    if (m.to !== this.node.id) return;
    if (m.type === MessageType.Prop && this.node.role === StateRole.Leader) {
      const now = Date.now();
      for (const e of m.entries) {
        if (e.type === EntryType.Normal) restampEnvelope(e.data, now, this.nextSeed());
      }
    }
    this.node.step(m);
  }

  private seedPool = Buffer.alloc(0);
  private seedPos = 0;

  /** Seeds come from a pooled CSPRNG buffer (one syscall per 1024 proposals). */
  private nextSeed(): bigint {
    if (this.seedPos + 8 > this.seedPool.length) {
      this.seedPool = randomBytes(8192);
      this.seedPos = 0;
    }
    const v = this.seedPool.readBigUInt64BE(this.seedPos);
    this.seedPos += 8;
    return v;
  }

  /**
   * The leader side of ProposeBatch, which members of earlier versions use to forward (this version
   * sends Prop messages): one result per command, in order.
   */
  private serveProposeBatch(commands: readonly Uint8Array[]): Promise<pb.ProposeResponse[]> {
    return Promise.all(commands.map((c) => this.servePropose(c)));
  }

  /** The leader side of Propose (earlier versions): the result travels back with a stable error code. */
  private async servePropose(command: Uint8Array): Promise<pb.ProposeResponse> {
    const empty = Buffer.alloc(0);
    if (this.node.role !== StateRole.Leader) {
      const e = new NotLeaderError(this.node.leader);
      return {
        result: empty,
        index: 0n,
        errorCode: e.code,
        errorMessage: e.message,
        leaderHint: this.node.leader,
      };
    }
    try {
      const r = await this.proposeLocal(command, {});
      return {
        result: Buffer.from(r.result),
        index: r.index,
        errorCode: "",
        errorMessage: "",
        leaderHint: 0n,
      };
    } catch (err) {
      const code = err instanceof RaftError ? err.code : "RAFT_INTERNAL";
      return {
        result: empty,
        index: 0n,
        errorCode: code,
        errorMessage: String((err as Error).message),
        leaderHint: this.node.leader,
      };
    }
  }

  /**
   * Fails the proposals whose deadline has passed. One timer serves them all, instead of one per
   * proposal (a timer object and two timer-list operations per write): every proposal gets the same
   * timeout, so the map's order is the deadlines' order and the sweep stops at the first one to come.
   */
  private sweepProposals(): void {
    this.proposalSweep = null;
    const now = performance.now();
    for (const [id, w] of this.proposals) {
      if (w.deadline > now) {
        this.proposalSweep = setTimeout(() => this.sweepProposals(), w.deadline - now);
        return;
      }
      this.proposals.delete(id);
      this.stats.proposalsFailed++;
      w.reject(new TimeoutError(`proposal not applied within ${this.timeoutMs} ms`));
    }
  }

  // ---- NodeListener -----------------------------------------------------------------------

  onApplied(entry: ApplyEntry, result: Uint8Array, proposer: bigint, requestId: bigint): void {
    if (proposer !== this.node.id) return;
    const w = this.proposals.get(requestId);
    if (w === undefined) return;
    this.proposals.delete(requestId);
    w.resolve({ result, index: entry.index });
  }

  onConfApplied(index: bigint, cc: ConfChange): void {
    if (cc.context.length < 8) return;
    const tag = new DataView(cc.context.buffer, cc.context.byteOffset).getBigUint64(0);
    const w = this.confWaits.get(tag);
    if (w === undefined) return;
    this.confWaits.delete(tag);
    clearTimeout(w.timer);
    w.resolve(index);
  }

  onReadStates(states: readonly { index: bigint; requestCtx: Uint8Array }[]): void {
    for (const rs of states) {
      const key = Buffer.from(rs.requestCtx).toString("hex");
      const batch = this.readBatches.get(key);
      if (batch === undefined || batch.served) continue;
      batch.served = true;
      this.waitApplied(rs.index).then(() => {
        // Failed at its deadline meanwhile, or the member stopped: nothing is left to run.
        if (this.readBatches.get(key) !== batch) return;
        this.readBatches.delete(key);
        for (const r of batch.reads) r(null);
      });
    }
  }

  onAppliedIndex(index: bigint): void {
    if (this.appliedWaits.length === 0) return;
    const still = this.appliedWaits.filter((w) => w.index > index);
    const done = this.appliedWaits.filter((w) => w.index <= index);
    this.appliedWaits.length = 0;
    this.appliedWaits.push(...still);
    for (const w of done) w.resolve();
  }

  onSoftState(ss: SoftState): void {
    if (ss.lead !== this.lastLeader && ss.lead !== 0n) this.stats.leaderChanges++;
    if (ss.lead !== this.lastLeader) {
      this.lastLeader = ss.lead;
      this.leaderChangedAt = performance.now();
      this.scheduleSentCheck();
    }
    if (ss.lead === 0n) return;
    const ws = [...this.leaderWaits];
    this.leaderWaits.clear();
    for (const f of ws) f();
  }

  private lastLeader: NodeId = 0n;
  private sentCheck: NodeJS.Timeout | null = null;

  /**
   * Counts for metrics, read when scraped: leaders seen (a known leader other than the last one
   * seen, as etcd counts them), proposals of this member that failed (timed out, dropped by a
   * deposed leader, refused), and messages to each peer that could not be delivered (those dropped,
   * and one for each stream to it that broke).
   */
  readonly stats = {
    leaderChanges: 0,
    proposalsFailed: 0,
    peerSendFailures: new Map<NodeId, number>(),
    /** ReadIndex requests refused here for want of a leader (etcd_server_read_indexes_failed_total). */
    readIndexesFailed: 0,
    /**
     * ReadIndex requests not answered within an election timeout, asked again, or whose reads ran
     * out of time (etcd_server_slow_read_indexes_total).
     */
    slowReadIndexes: 0,
    /** Learners this member promoted as leader (etcd_server_learner_promote_successes). */
    learnerPromotes: 0,
  };

  /** This member's proposals not yet applied here (nor failed). */
  get pendingProposals(): number {
    return this.proposals.size;
  }

  /**
   * The leader changed: proposals sent to an earlier leader may have been dropped (it lost
   * leadership first, or died). One election timeout later, those not applied here fail with
   * LeaderChangedError instead of holding their callers until the request deadline. An entry the
   * earlier leader did replicate is usually applied within that time and resolves normally; one
   * applied later still is applied: the error says the outcome is unknown, so that no client takes
   * it for "not proposed" (as NotLeaderError means) and repeats the write blindly.
   */
  private scheduleSentCheck(delayMs = this.electionTimeoutMs()): void {
    if (this.sentCheck !== null || this.node.isStopped) return;
    this.sentCheck = setTimeout(() => {
      this.sentCheck = null;
      // Every change gets its own election timeout: proposals sent to a leader that itself was
      // replaced a moment ago get the same grace as those sent to the one before.
      const wait = this.leaderChangedAt + this.electionTimeoutMs() - performance.now();
      if (wait > 1) {
        this.scheduleSentCheck(wait);
        return;
      }
      const lead = this.node.leader;
      for (const [id, w] of this.proposals) {
        if (w.sentTo === undefined || w.sentTo === lead) continue;
        this.proposals.delete(id);
        this.stats.proposalsFailed++;
        this.fail(w, new LeaderChangedError(lead));
      }
    }, delayMs);
  }

  /** When the leader last changed (`performance.now()`), for the leader change check. */
  private leaderChangedAt = 0;

  // ---- Helpers ----------------------------------------------------------------------------

  /** How long a follower waits for its leader before campaigning: the retry period of waits here. */
  private electionTimeoutMs(): number {
    return this.node.config.tickMs * this.node.config.electionTicks;
  }

  private waitApplied(index: bigint): Promise<void> {
    if (this.node.appliedIndex() >= index) return Promise.resolve();
    return new Promise((resolve) => this.appliedWaits.push({ index, resolve }));
  }

  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new TimeoutError(`${what} did not complete within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }

  private async waitForLeader(): Promise<NodeId> {
    const deadline = performance.now() + this.timeoutMs;
    while (this.node.leader === 0n) {
      if (performance.now() > deadline || this.node.isStopped) throw new NoLeaderError();
      // Woken by the leader's arrival or a tick later, whichever is first; either way it leaves
      // the set (callers waiting through a long election would otherwise pile up one per tick).
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.leaderWaits.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, this.node.config.tickMs);
        this.leaderWaits.add(wake);
      });
    }
    return this.node.leader;
  }

  // ---- Reads ------------------------------------------------------------------------------

  linearizableRead<T>(read: () => T): Promise<T> {
    if (this.node.isStopped) return Promise.reject(new StoppedError());
    const p = new Promise<T>((resolve, reject) => {
      this.pendingReads.push((failure) => {
        if (failure !== null) {
          reject(failure);
          return;
        }
        try {
          resolve(read());
        } catch (err) {
          reject(err);
        }
      });
    });
    if (!this.readScheduled) {
      this.readScheduled = true;
      setImmediate(() => this.flushReads());
    }
    return p;
  }

  /** All reads queued in this turn share one ReadIndex request (the core batches further). */
  private flushReads(): void {
    this.readScheduled = false;
    const reads = this.pendingReads;
    this.pendingReads = [];
    if (reads.length === 0) return;
    if (this.node.isStopped) {
      for (const r of reads) r(new StoppedError());
      return;
    }
    const ctx = randomBytes(8);
    const now = performance.now();
    const batch: ReadBatch = { ctx, reads, deadline: now + this.timeoutMs, issuedAt: now, served: false };
    this.readBatches.set(ctx.toString("hex"), batch);
    this.requestReadIndex(ctx);
    this.readSweep ??= setTimeout(() => this.sweepReads(), this.electionTimeoutMs());
  }

  /**
   * One timer for every read batch, instead of a retry interval and a deadline timer per batch (and
   * one per read): re-issues the ReadIndex requests not served within an election timeout (lost to
   * a leader change, or refused while none was known) and fails the batches past their deadline.
   */
  private sweepReads(): void {
    this.readSweep = null;
    if (this.node.isStopped) {
      // The node stopped itself (a failed sync) without `stop()`: nothing will serve these reads,
      // and a read waiting for the applied index would otherwise wait for ever.
      this.failReads(new StoppedError());
      return;
    }
    const now = performance.now();
    const retryMs = this.electionTimeoutMs();
    let next = retryMs;
    for (const [key, b] of this.readBatches) {
      if (b.deadline <= now) {
        this.readBatches.delete(key);
        if (!b.served) this.stats.slowReadIndexes++;
        for (const r of b.reads)
          r(new TimeoutError(`linearizable read did not complete within ${this.timeoutMs} ms`));
        continue;
      }
      if (!b.served && now - b.issuedAt >= retryMs) {
        b.issuedAt = now;
        this.stats.slowReadIndexes++;
        this.requestReadIndex(b.ctx);
      }
      next = Math.min(next, b.deadline - now, b.served ? retryMs : b.issuedAt + retryMs - now);
    }
    if (this.readBatches.size > 0) this.readSweep = setTimeout(() => this.sweepReads(), Math.max(1, next));
  }

  /**
   * A member that knows no leader (an election, a partition) refuses the request; the reads stay
   * queued, the retry timer re-issues them once a leader is known, and the deadline bounds the wait.
   */
  private requestReadIndex(ctx: Uint8Array): void {
    try {
      this.node.withCore((c) => c.readIndex(ctx));
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      this.stats.readIndexesFailed++;
    }
  }

  serializableRead<T>(read: () => T): T {
    return read();
  }

  // ---- Membership -------------------------------------------------------------------------

  /**
   * The members, by ID. The learner flag comes from the Raft configuration when it names the
   * member: a joining member's metadata starts as its --initial-cluster guess (all voters).
   */
  memberList(): MemberInfo[] {
    const cs = this.node.currentConfState();
    return [...this.node.members.values()]
      .map((m) =>
        cs.voters.includes(m.id)
          ? { ...m, isLearner: false }
          : cs.learners.includes(m.id)
            ? { ...m, isLearner: true }
            : m,
      )
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  private requireLeader(): void {
    if (this.node.role !== StateRole.Leader) {
      if (this.node.leader === 0n) throw new NoLeaderError();
      throw new NotLeaderError(this.node.leader);
    }
  }

  /**
   * Voters heard from within two election timeouts, and not cut off since (self always counts): a
   * peer whose stream failed after it was last heard from is out of reach now, as etcd's transport
   * sees a broken connection at once, not two election timeouts later.
   */
  private activeVoters(voters: readonly NodeId[]): NodeId[] {
    const horizon = performance.now() - 2 * this.electionTimeoutMs();
    return voters.filter((v) => {
      if (v === this.node.id) return true;
      const heard = this.node.lastHeard.get(v) ?? Number.NEGATIVE_INFINITY;
      const failed = this.transport.peerStats(v)?.lastFailureMs ?? null;
      return heard >= horizon && (failed === null || failed < heard);
    });
  }

  private checkQuorum(nextVoters: readonly NodeId[], what: string): void {
    if (nextVoters.length === 0) throw new QuorumAtRiskError(`${what} would leave no voters`);
    const active = this.activeVoters(nextVoters);
    const quorum = Math.floor(nextVoters.length / 2) + 1;
    if (active.length < quorum) {
      throw new UnhealthyClusterError(
        `${what} would leave ${nextVoters.length} voters needing a quorum of ${quorum}, but only ` +
          `${active.length} of them are reachable (${active.map((v) => v.toString(16)).join(", ")}); ` +
          "bring members back first",
      );
    }
  }

  /**
   * Adds a member (new ID), promotes a learner (existing learner, isLearner=false), or replaces an
   * existing member's URLs in place. A removed ID may be added again. Accepted on any member.
   */
  async addMember(id: NodeId, spec: MemberSpec): Promise<MemberInfo> {
    return (await this.upsertMember(id, spec)).member;
  }

  /**
   * `addMember` that also says whether the ID already existed (`updated`). For an existing ID an
   * empty name, peerUrls or clientUrls keeps the stored value (so promotion needs only the ID).
   * On a non-leader member the operation is forwarded to the leader; it resolves once the change is
   * applied on THIS member (a member list read here afterwards shows it).
   */
  async upsertMember(id: NodeId, spec: MemberSpec): Promise<{ member: MemberInfo; updated: boolean }> {
    if (id === 0n) throw new InvalidArgumentError("member id must not be 0");
    for (const u of [...spec.peerUrls, ...spec.clientUrls]) {
      if (!/^(https?|grpcs?):\/\/[^/\s]+:\d+\/?$/.test(u)) {
        throw new InvalidArgumentError(`URL "${u}" is malformed; expected scheme://host:port`);
      }
    }
    const request = { add: { member: memberToRecord({ id, ...spec }) } };
    return this.routeMembership(request, () => this.upsertLocal(id, spec));
  }

  /** Removes any member, including the current leader (the remaining voters elect a new one). */
  async removeMember(id: NodeId): Promise<void> {
    await this.routeMembership({ remove: { id } }, () => this.removeLocal(id));
  }

  /** Hands leadership to voter `target`; resolves once this member sees `target` lead. */
  async transferLeader(target: NodeId): Promise<void> {
    await this.routeMembership({ transfer: { target } }, () => this.transferLocal(target));
    await this.waitLeaderIs(target, `seeing ${target.toString(16)} lead`);
  }

  /** A member publishes its own name and client URLs (role and peer URLs unchanged). */
  async publishAttributes(id: NodeId, name: string, clientUrls: readonly string[]): Promise<MemberInfo> {
    const request = { publish: { id, name, clientUrls: [...clientUrls] } };
    return (await this.routeMembership(request, () => this.publishLocal(id, name, clientUrls))).member;
  }

  /**
   * Runs `local` when this member leads, otherwise forwards `request` to the leader (retrying a
   * bounded number of times while leadership moves) and waits until the change is applied here.
   */
  private async routeMembership(
    request: pb.MembershipRequest,
    local: () => Promise<MembershipResult>,
  ): Promise<MembershipResult> {
    try {
      return await this.routeMembershipOnce(request, local);
    } catch (err) {
      // The refusal's reason, on the member asked, as etcd logs it (its etcd API answer is etcd's
      // bare text, which clients match on).
      // (A member publishing itself retries on its own.)
      const what = request.add ? "add" : request.remove ? "remove" : request.transfer ? "transfer" : null;
      if (
        what !== null &&
        (err instanceof QuorumAtRiskError ||
          err instanceof ConfChangePendingError ||
          err instanceof TransfereeUnreachableError ||
          err instanceof LearnerNotReadyError)
      ) {
        this.node.config.logger.warn({ request: what, reason: err.message }, "membership change refused");
      }
      throw err;
    }
  }

  private async routeMembershipOnce(
    request: pb.MembershipRequest,
    local: () => Promise<MembershipResult>,
  ): Promise<MembershipResult> {
    if (this.node.isStopped) throw new StoppedError();
    if (this.node.leader === 0n) this.refuseWithoutLeader(request);
    for (let attempt = 1; ; attempt++) {
      const leader = await this.waitForLeader();
      if (leader === this.node.id) return local();
      const res = await this.transport
        .forwardMembership(leader, request, this.timeoutMs + 1000)
        .catch((err: unknown) => {
          throw new LeaderUnreachableError(leader, (err as { details?: string }).details ?? String(err));
        });
      if (res.errorCode === "RAFT_NOT_LEADER" && attempt < 3) {
        await new Promise((r) => setTimeout(r, this.node.config.tickMs));
        continue;
      }
      if (res.errorCode !== "") throw membershipError(res, request);
      // A member removed by this request may never learn the commit of its own removal: no wait.
      if (request.remove?.id !== this.node.id) {
        await this.withTimeout(this.waitApplied(res.index), `applying membership change ${res.index} here`);
      }
      const member = res.member === undefined ? NO_MEMBER : memberFromRecord(res.member);
      return { member: this.node.members.get(member.id) ?? member, updated: res.updated, index: res.index };
    }
  }

  /**
   * With no leader known, a change that needs voters this member cannot reach is refused at once,
   * as etcd checks it on the member asked, instead of waiting out the request for a leader: a new
   * member needs every voter reachable, and removing a reachable voter needs a quorum of the rest.
   * Reachable here means the transport's last attempt to reach the voter worked.
   */
  private refuseWithoutLeader(request: pb.MembershipRequest): void {
    const voters = this.node.currentConfState().voters;
    const reachable = voters.filter(
      (v) => v === this.node.id || this.transport.peerStats(v)?.active === true,
    );
    const silent = voters.filter((v) => !reachable.includes(v));
    if (silent.length === 0) return;
    const list = (ids: readonly NodeId[]) => ids.map((v) => v.toString(16)).join(", ");
    const added = request.add?.member?.id;
    if (added !== undefined && !this.node.members.has(added)) {
      throw new UnhealthyClusterError(
        `no leader is known, and adding member ${added.toString(16)} needs every voter reachable; ` +
          `${list(silent)} ${silent.length === 1 ? "is" : "are"} not reachable from this member`,
      );
    }
    const removed = request.remove?.id;
    // The quorum of the voters left after the removal, as etcd's check and the leader's count it.
    const quorum = Math.floor((voters.length - 1) / 2) + 1;
    if (removed !== undefined && reachable.includes(removed) && reachable.length - 1 < quorum) {
      throw new UnhealthyClusterError(
        `no leader is known, and removing voter ${removed.toString(16)} would leave ${reachable.length - 1} ` +
          `reachable voters (${list(reachable.filter((v) => v !== removed))}) of the quorum of ${quorum}; ` +
          "bring members back first",
      );
    }
  }

  /** The leader side of forwarding: runs the operation here; refusals travel back as codes. */
  private async serveMembership(req: pb.MembershipRequest): Promise<pb.MembershipResponse> {
    try {
      this.requireLeader();
      let r: MembershipResult | undefined;
      if (req.add?.member !== undefined) {
        const m = memberFromRecord(req.add.member);
        r = await this.upsertLocal(m.id, m);
      } else if (req.remove !== undefined) r = await this.removeLocal(req.remove.id);
      else if (req.transfer !== undefined) r = await this.transferLocal(req.transfer.target);
      else if (req.publish !== undefined) {
        r = await this.publishLocal(req.publish.id, req.publish.name, req.publish.clientUrls);
      } else throw new InvalidArgumentError("membership request names no operation");
      return membershipOk({
        member: r.member.id === 0n ? undefined : memberToRecord(r.member),
        updated: r.updated,
        index: r.index,
      });
    } catch (err) {
      return membershipRefusal(err, this.node.leader);
    }
  }

  private async upsertLocal(id: NodeId, asked: MemberSpec): Promise<MembershipResult> {
    this.requireLeader();
    let spec = asked;
    const existing = this.node.members.get(id);
    if (existing !== undefined) spec = mergeSpec(existing, spec);
    if (spec.peerUrls.length === 0) {
      throw new InvalidArgumentError(
        `new member ${id.toString(16)}: peerUrls must list at least one URL (e.g. http://10.0.0.4:2380)`,
      );
    }
    // Two members at one peer URL would have one of them take the other's messages as its own.
    const same = (u: string) => u.replace(/\/$/, "");
    for (const other of this.node.members.values()) {
      const theirs = other.peerUrls.map(same);
      const shared = other.id !== id ? spec.peerUrls.find((u) => theirs.includes(same(u))) : undefined;
      if (shared !== undefined) {
        throw new InvalidArgumentError(
          `peer URL ${shared} is already member ${other.id.toString(16)}'s; give member ${id.toString(16)} its own`,
        );
      }
    }
    if (existing?.isLearner && !spec.isLearner) {
      await this.awaitLearnerInSync(id);
      // The learner may have published its name and client URLs meanwhile: keep what it published.
      const now = this.node.members.get(id);
      if (now !== undefined) spec = mergeSpec(now, asked);
    }
    const type = this.upsertType(id, existing, spec);
    const info: MemberInfo = {
      id,
      name: spec.name,
      peerUrls: [...spec.peerUrls],
      clientUrls: [...spec.clientUrls],
      isLearner:
        type === ConfChangeType.AddLearnerNode ||
        (type === ConfChangeType.UpdateNode && (existing?.isLearner ?? false)),
    };
    const index = await this.proposeConf(type, id, info);
    if (type === ConfChangeType.AddNode && existing?.isLearner === true) this.stats.learnerPromotes++;
    return { member: this.node.members.get(id) ?? info, updated: existing !== undefined, index };
  }

  /**
   * A learner is promoted once it holds at least 90% of the leader's log, as etcd requires: a voter
   * that cannot vote yet, or is not running at all, would only make the quorum harder to reach. A
   * learner still catching up is waited for, up to two election timeouts (at least 2 s); then the
   * promotion is refused and can be asked again.
   */
  private async awaitLearnerInSync(id: NodeId): Promise<void> {
    const deadline = performance.now() + Math.max(2000, 2 * this.electionTimeoutMs());
    for (;;) {
      this.requireLeader();
      const progress = this.node.core.status().progress;
      const leader = progress.get(this.node.id)?.match ?? 0n;
      const learner = progress.get(id)?.match ?? 0n;
      if (learner * 10n >= leader * 9n) return;
      if (performance.now() >= deadline) {
        throw new LearnerNotReadyError(
          `learner ${id.toString(16)} is not in sync with the leader: it holds the log up to index ` +
            `${learner} of ${leader}, and promotion needs 90%; make sure it is running and reachable, ` +
            "let it catch up, then promote it again",
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The ConfChange an upsert needs, after the quorum guard for changes that add voters. */
  private upsertType(id: NodeId, existing: MemberInfo | undefined, spec: MemberSpec): ConfChangeType {
    const voters = this.node.currentConfState().voters;
    if (existing === undefined) {
      // As etcd, a lone voter may take a second one, which then must start for writes to go on:
      // that is how a one-member cluster grows without a learner.
      const growingFromOne = voters.length === 1 && voters[0] === this.node.id;
      const what = `adding ${spec.isLearner ? "learner" : "voter"} ${id.toString(16)}`;
      // A learner too, as etcd: it is fed from the leader while voters are missing.
      this.checkEveryVoterReachable(voters, what);
      if (!spec.isLearner && !growingFromOne) this.checkQuorum([...voters, id], what);
      return spec.isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode;
    }
    if (existing.isLearner && !spec.isLearner) {
      // The promoted learner counts in the new quorum, so it must be reachable too.
      this.checkQuorum([...voters, id], `promoting learner ${id.toString(16)}`);
      return ConfChangeType.AddNode;
    }
    if (!existing.isLearner && spec.isLearner) {
      throw new InvalidArgumentError(
        `member ${id.toString(16)} is a voter; demoting to learner is not supported (remove it and add it again)`,
      );
    }
    const moved = spec.peerUrls.some((u) => !existing.peerUrls.includes(u));
    if (moved && voters.includes(id)) this.checkQuorumWithout(voters, id);
    return ConfChangeType.UpdateNode;
  }

  /**
   * A new voter raises the quorum before it has even started, and a new learner takes the leader's
   * bandwidth while it catches up: as etcd's strict reconfiguration check, every current voter
   * must be reachable.
   */
  private checkEveryVoterReachable(voters: readonly NodeId[], what: string): void {
    const active = new Set(this.activeVoters(voters));
    const silent = voters.filter((v) => !active.has(v));
    if (silent.length === 0) return;
    const one = silent.length === 1;
    throw new UnhealthyClusterError(
      `${what} needs every voter reachable, and ${silent.map((v) => v.toString(16)).join(", ")} ` +
        `${one ? "is" : "are"} not; bring ${one ? "it" : "them"} back or remove ${one ? "it" : "them"} first`,
    );
  }

  /**
   * A voter given new peer URLs is cut off until it listens there (usually it restarts): the other
   * voters must still make a quorum on their own.
   */
  private checkQuorumWithout(voters: readonly NodeId[], id: NodeId): void {
    const active = this.activeVoters(voters.filter((v) => v !== id));
    const quorum = Math.floor(voters.length / 2) + 1;
    if (active.length < quorum) {
      throw new UnhealthyClusterError(
        `moving voter ${id.toString(16)} to new peer URLs cuts it off until it listens there, and the ` +
          `other ${voters.length - 1} voters have only ${active.length} reachable ` +
          `(${active.map((v) => v.toString(16)).join(", ")}) of the quorum of ${quorum}; bring members back first`,
      );
    }
  }

  private async removeLocal(id: NodeId): Promise<MembershipResult> {
    this.requireLeader();
    const m = this.node.members.get(id);
    const cs = this.node.currentConfState();
    if (m === undefined && !cs.voters.includes(id) && !cs.learners.includes(id))
      throw new MemberNotFoundError(id);
    if (cs.voters.includes(id))
      this.checkQuorum(
        cs.voters.filter((v) => v !== id),
        `removing voter ${id.toString(16)}`,
      );
    const index = await this.proposeConf(ConfChangeType.RemoveNode, id, m);
    return { member: NO_MEMBER, updated: true, index };
  }

  private async publishLocal(
    id: NodeId,
    name: string,
    clientUrls: readonly string[],
  ): Promise<MembershipResult> {
    this.requireLeader();
    const existing = this.node.members.get(id);
    if (existing === undefined) throw new MemberNotFoundError(id);
    const info: MemberInfo = { ...existing, name, clientUrls: [...clientUrls] };
    const index = await this.proposeConf(ConfChangeType.UpdateNode, id, info, { publish: true });
    return { member: this.node.members.get(id) ?? info, updated: true, index };
  }

  private async transferLocal(target: NodeId): Promise<MembershipResult> {
    this.requireLeader();
    const cs = this.node.currentConfState();
    if (cs.learners.includes(target)) {
      throw new InvalidArgumentError(
        `member ${target.toString(16)} is a learner and cannot lead; promote it first (add it again with isLearner=false)`,
      );
    }
    if (!cs.voters.includes(target)) throw new MemberNotFoundError(target);
    if (target !== this.node.id) {
      // While a transfer is open the leader takes no proposals: a target that is down would hold
      // every write until the request's deadline.
      const reachable = () => this.activeVoters([target]).length === 1;
      if (!reachable()) throw new TransfereeUnreachableError(target, 2 * this.electionTimeoutMs());
      this.node.withCore((c) => c.transferLeader(target));
      await this.waitLeaderIs(target, `moving leadership to ${target.toString(16)}`, () => {
        // The core gives a transfer up after an election timeout, e.g. when the target refused to
        // campaign because it had a committed membership change still to apply: ask again (as long
        // as this member leads and hears from the target) until the target leads or the request's
        // deadline passes.
        if (this.node.leader !== this.node.id || this.node.withCore((c) => c.leadTransferee) !== 0n) return;
        if (!reachable()) throw new TransfereeUnreachableError(target, 2 * this.electionTimeoutMs());
        this.node.withCore((c) => c.transferLeader(target));
      });
    }
    return { member: NO_MEMBER, updated: false, index: 0n };
  }

  /** Resolves once this member sees `target` as leader (polled each tick, up to the request timeout). */
  private async waitLeaderIs(target: NodeId, what: string, eachTick?: () => void): Promise<void> {
    const deadline = performance.now() + this.timeoutMs;
    while (this.node.leader !== target) {
      if (this.node.isStopped) throw new StoppedError();
      if (performance.now() > deadline)
        throw new TimeoutError(`${what} did not complete within ${this.timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, this.node.config.tickMs));
      eachTick?.();
    }
  }

  /** Resolves with the log index of the change once it is applied on this member. */
  private proposeConf(
    type: ConfChangeType,
    id: NodeId,
    info: MemberInfo | undefined,
    extra: { publish?: true } = {},
  ): Promise<bigint> {
    const tag = randomBytes(8);
    const json =
      info === undefined
        ? new Uint8Array()
        : new TextEncoder().encode(JSON.stringify({ ...memberToJson(info), ...extra }));
    // context = [8-byte tag][member JSON]; the node reads the JSON part.
    const context = new Uint8Array(8 + json.length);
    context.set(tag, 0);
    context.set(json, 8);
    const key = tag.readBigUInt64BE();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.confWaits.delete(key);
        reject(new TimeoutError(`membership change not applied within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.confWaits.set(key, { resolve, reject, timer });
      try {
        this.node.withCore((c) => c.proposeConfChange({ type, nodeId: id, context }));
      } catch (err) {
        clearTimeout(timer);
        this.confWaits.delete(key);
        reject(
          err instanceof ProposalDroppedError && /pending/.test(err.message)
            ? new ConfChangePendingError()
            : err,
        );
      }
    });
  }

  status(): RaftServiceStatus {
    const s = this.node.core.status();
    return {
      id: this.node.id,
      leader: this.node.leader,
      term: s.hardState.term,
      commit: s.hardState.commit,
      applied: this.node.appliedIndex(),
      role: ROLE_NAMES[this.node.role] ?? "follower",
      raftIndex: this.node.store.lastIndex(),
      members: this.memberList(),
    };
  }
}
