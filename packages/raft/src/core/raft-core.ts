// The pure Raft state machine (the equivalent of etcd-raft's RawNode + raft). It never touches
// timers, I/O, clocks or global randomness: the driver calls tick() on its timer, step() with
// incoming messages, and drains work through ready()/advance() following the Ready contract in
// types.ts. Role behaviour lives in role-*.ts; this file holds state, transitions and sending.
import { assert, minBigint } from "./assert.js";
import { decodeConfChange, encodeConfChange } from "./conf-change-codec.js";
import { entriesDataBytes } from "./entry-size.js";
import { CompactedError, ProposalDroppedError, SnapshotTemporarilyUnavailableError } from "./errors.js";
import { bytesEqual, CAMPAIGN_TRANSFER, EMPTY_BYTES, type MessageFields, makeMessage } from "./messages.js";
import type { Progress } from "./progress.js";
import { VoteResult } from "./quorum.js";
import { RaftLog } from "./raft-log.js";
import { READ_REQUESTS_PENDING_MAX, ReadOnly } from "./read-only.js";
import { stepCandidate } from "./role-candidate.js";
import { stepFollower } from "./role-follower.js";
import { stepLeader } from "./role-leader.js";
import { ProgressTracker } from "./tracker.js";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type LogStorage,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type RaftLogger,
  type RandomSource,
  type ReadState,
  type Ready,
  type SoftState,
  StateRole,
} from "./types.js";

export interface RaftConfig {
  id: NodeId;
  storage: LogStorage;
  /** Randomized election timeout in [electionTicks, 2*electionTicks). */
  electionTicks: number;
  /** Must be < electionTicks. */
  heartbeatTicks: number;
  /** Last applied index at (re)start; committed entries after it are re-delivered. */
  applied: bigint;
  /** Max bytes of entry data per App message. */
  msgBytesMax: number;
  /** Max unacknowledged App messages per follower in replicate state. */
  inflightMsgsMax: number;
  /**
   * Max bytes of entry data in those messages (0 or absent = no limit; etcd-io/raft's
   * MaxInflightBytes). A message goes out whenever the window holds less, so one entry larger than
   * this still goes.
   */
  inflightBytesMax?: number;
  /**
   * Max bytes of committed entry data one Ready hands out to be applied (default `msgBytesMax`, as
   * etcd-io/raft's MaxCommittedSizePerReady); never fewer than one entry.
   */
  committedBytesPerReadyMax?: number;
  /** Leader drops proposals beyond this much uncommitted data (0 = no limit). */
  uncommittedBytesMax: number;
  preVote: boolean;
  checkQuorum: boolean;
  disableProposalForwarding: boolean;
  random: RandomSource;
  logger: RaftLogger;
}

export interface ProgressStatus {
  match: bigint;
  next: bigint;
  state: "probe" | "replicate" | "snapshot";
  recentActive: boolean;
  isLearner: boolean;
}

export interface RaftStatus {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: bigint;
  leadTransferee: NodeId;
  confState: ConfState;
  /** Empty unless leader. */
  progress: ReadonlyMap<NodeId, ProgressStatus>;
}

const LOCAL_TYPES: ReadonlySet<MessageType> = new Set([
  MessageType.Hup,
  MessageType.Beat,
  MessageType.CheckQuorum,
  MessageType.Unreachable,
  MessageType.SnapStatus,
]);

export class RaftCore {
  readonly id: NodeId;
  readonly config: Readonly<RaftConfig>;
  term = 0n;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: StateRole = StateRole.Follower;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  leadTransferee: NodeId = NONE;
  /** Index of the last conf change appended by this leader; no new one until it is applied. */
  pendingConfIndex = 0n;
  uncommittedBytes = 0;
  readOnly = new ReadOnly(READ_REQUESTS_PENDING_MAX);
  /** ReadIndex requests received before this leader committed an entry of its own term. */
  pendingReadIndexMessages: Message[] = [];
  /** New ReadIndex requests are waiting for one batched heartbeat round (sent at ready()). */
  readHeartbeatPending = false;
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private readyOutstanding = false;

  constructor(config: RaftConfig) {
    assert(config.id !== NONE, "id must not be 0");
    assert(config.heartbeatTicks > 0, "heartbeatTicks must be positive");
    assert(config.electionTicks > config.heartbeatTicks, "electionTicks must exceed heartbeatTicks");
    assert(config.inflightMsgsMax > 0 && config.msgBytesMax > 0, "message bounds must be positive");
    this.id = config.id;
    this.config = config;
    const { hardState, confState } = config.storage.initialState();
    this.log = new RaftLog(config.storage, hardState.commit, config.applied);
    assert((config.inflightBytesMax ?? 0) >= 0, "inflightBytesMax must not be negative");
    assert((config.committedBytesPerReadyMax ?? 1) > 0, "committedBytesPerReadyMax must be positive");
    this.tracker = new ProgressTracker(config.inflightMsgsMax, config.inflightBytesMax ?? 0);
    this.tracker.setConfig(confState, this.log.lastIndex() + 1n);
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.becomeFollower(hardState.term, NONE);
    this.prevHardState = hardState;
    this.prevSoftState = { lead: NONE, role: StateRole.Follower };
  }

  // ---- Public API -------------------------------------------------------------------------

  tick(): void {
    if (this.role === StateRole.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  /**
   * Steps a message received from a peer. Local-only types (Hup, Beat, CheckQuorum, Unreachable,
   * SnapStatus) are refused here: a peer must not be able to trigger them; use campaign(),
   * reportUnreachable() and reportSnapshot().
   */
  step(m: Message): void {
    if (LOCAL_TYPES.has(m.type)) {
      this.config.logger.warn(
        { id: this.id, from: m.from, type: m.type },
        "ignoring a local-only message type from a peer",
      );
      return;
    }
    this.stepMessage(m);
  }

  propose(data: Uint8Array): void {
    const entry: Entry = { term: 0n, index: 0n, type: EntryType.Normal, data };
    this.stepMessage(makeMessage({ type: MessageType.Prop, from: this.id, entries: [entry] }));
  }

  proposeConfChange(cc: ConfChange): void {
    const entry: Entry = { term: 0n, index: 0n, type: EntryType.ConfChange, data: encodeConfChange(cc) };
    this.stepMessage(makeMessage({ type: MessageType.Prop, from: this.id, entries: [entry] }));
  }

  campaign(): void {
    this.stepMessage(makeMessage({ type: MessageType.Hup, from: this.id }));
  }

  transferLeader(to: NodeId): void {
    this.stepMessage(makeMessage({ type: MessageType.TransferLeader, from: to, to: this.id }));
  }

  /**
   * Asks for a linearizable read point; the answer arrives as a ReadState carrying `ctx` in a
   * later Ready. Contexts must be unique among pending reads (a duplicate is ignored). Throws
   * ProposalDroppedError when no leader is known. A read pending on a leader that loses its
   * leadership is dropped silently: the caller needs a timeout.
   */
  readIndex(ctx: Uint8Array): void {
    this.stepMessage(makeMessage({ type: MessageType.ReadIndex, from: this.id, context: ctx }));
  }

  reportUnreachable(id: NodeId): void {
    this.stepMessage(makeMessage({ type: MessageType.Unreachable, from: id, to: this.id }));
  }

  /**
   * The transport MUST report the outcome of every Snap message it was given (delivered or not):
   * until then the leader keeps that follower in snapshot state and sends it nothing else.
   */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.stepMessage(makeMessage({ type: MessageType.SnapStatus, from: id, to: this.id, reject: !ok }));
  }

  hasReady(): boolean {
    if (this.readyOutstanding) return false;
    const u = this.log.unstable;
    return (
      this.readHeartbeatPending ||
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      u.entries.length > 0 ||
      u.snapshot !== null ||
      this.log.hasNextCommittedEntries() ||
      !softStateEqual(this.softState(), this.prevSoftState) ||
      !hardStateEqual(this.hardState(), this.prevHardState)
    );
  }

  /**
   * Hands out the next batch of work (see `Ready` in types.ts for the order in which the driver
   * must handle it). The driver may keep stepping messages, ticking and proposing while a Ready is
   * outstanding (e.g. during its fsync); `hasReady()` stays false until `advance(rd)`.
   */
  ready(): Ready {
    assert(!this.readyOutstanding, "ready() called before advance() of the previous Ready");
    assert(this.hasReady(), "ready() called without hasReady()");
    this.flushReadHeartbeat();
    const soft = this.softState();
    const hard = this.hardState();
    const entries = [...this.log.unstable.entries];
    const snapshot = this.log.unstable.snapshot;
    const hardChanged = !hardStateEqual(hard, this.prevHardState);
    const rd: Ready = {
      softState: softStateEqual(soft, this.prevSoftState) ? null : soft,
      hardState: hardChanged ? hard : null,
      readStates: this.readStates,
      entries,
      snapshot,
      committedEntries: this.log.nextCommittedEntries(
        this.config.committedBytesPerReadyMax ?? this.config.msgBytesMax,
      ),
      messages: this.msgs,
      mustSync:
        entries.length > 0 ||
        snapshot !== null ||
        hard.term !== this.prevHardState.term ||
        hard.vote !== this.prevHardState.vote,
    };
    this.readStates = [];
    this.msgs = [];
    this.prevSoftState = soft;
    this.prevHardState = hard;
    this.readyOutstanding = true;
    return rd;
  }

  advance(rd: Ready): void {
    assert(this.readyOutstanding, "advance() without an outstanding Ready");
    this.readyOutstanding = false;
    if (rd.snapshot !== null) {
      const index = rd.snapshot.metadata.index;
      this.log.unstable.stableSnapTo(index);
      if (index > this.log.applied) this.log.applied = index;
    }
    const lastEntry = rd.entries[rd.entries.length - 1];
    if (lastEntry !== undefined) this.log.unstable.stableTo(lastEntry.index, lastEntry.term);
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied !== undefined) {
      this.log.appliedTo(lastApplied.index);
      if (this.role === StateRole.Leader) this.reduceUncommittedBytes(rd.committedEntries);
    }
    // The leader counts its own log toward the commit only once it is on stable storage.
    if (this.role === StateRole.Leader) {
      const self = this.tracker.progress.get(this.id);
      if (self?.maybeUpdate(this.log.persistedIndex()) && this.maybeCommit()) this.bcastAppend();
    }
  }

  applyConfChange(cc: ConfChange): ConfState {
    this.applyToTracker(cc);
    if (this.role === StateRole.Leader) this.afterConfChangeAsLeader();
    return this.tracker.confState();
  }

  status(): RaftStatus {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === StateRole.Leader) {
      for (const [id, pr] of this.tracker.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          isLearner: pr.isLearner,
        });
      }
    }
    return {
      id: this.id,
      hardState: this.hardState(),
      softState: this.softState(),
      applied: this.log.applied,
      leadTransferee: this.leadTransferee,
      confState: this.tracker.confState(),
      progress,
    };
  }

  // ---- State ------------------------------------------------------------------------------

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  promotable(): boolean {
    return this.tracker.voters.has(this.id);
  }

  // ---- Ticks ------------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.stepMessage(makeMessage({ type: MessageType.Hup, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum)
        this.stepMessage(makeMessage({ type: MessageType.CheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === StateRole.Leader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.role !== StateRole.Leader) return;
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.stepMessage(makeMessage({ type: MessageType.Beat, from: this.id }));
    }
  }

  // ---- Step: term handling common to all roles --------------------------------------------

  private stepMessage(m: Message): void {
    if (m.term !== 0n && !LOCAL_TYPES.has(m.type)) {
      if (m.term > this.term && !this.stepHigherTerm(m)) return;
      if (m.term < this.term) {
        this.stepLowerTerm(m);
        return;
      }
    }
    switch (m.type) {
      case MessageType.Hup:
        this.hup(false);
        return;
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        this.stepRole(m);
    }
  }

  private stepRole(m: Message): void {
    if (this.role === StateRole.Leader) stepLeader(this, m);
    else if (this.role === StateRole.Follower) stepFollower(this, m);
    else stepCandidate(this, m);
  }

  /** A message from a higher term. Returns false when the message must be ignored. */
  private stepHigherTerm(m: Message): boolean {
    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      const force = bytesEqual(m.context, CAMPAIGN_TRANSFER);
      const inLease =
        this.config.checkQuorum && this.lead !== NONE && this.electionElapsed < this.config.electionTicks;
      // A member that heard from a leader within the election timeout does not help depose it.
      if (!force && inLease) return false;
    }
    if (m.type === MessageType.PreVote) return true;
    if (m.type === MessageType.PreVoteResp && !m.reject) return true;
    const fromLeader =
      m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap;
    this.becomeFollower(m.term, fromLeader ? m.from : NONE);
    return true;
  }

  private stepLowerTerm(m: Message): void {
    if (
      (this.config.checkQuorum || this.config.preVote) &&
      (m.type === MessageType.Heartbeat || m.type === MessageType.App)
    ) {
      // A stale leader (e.g. after a partition) learns of the new term and steps down; without this
      // a member that rejected its pre-votes could never make progress.
      this.send({ type: MessageType.AppResp, to: m.from });
    } else if (m.type === MessageType.PreVote) {
      this.send({ type: MessageType.PreVoteResp, to: m.from, term: this.term, reject: true });
    }
  }

  private handleVoteRequest(m: Message): void {
    const respType = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.send({ type: respType, to: m.from, term: m.term });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  // ---- Elections --------------------------------------------------------------------------

  hup(transfer: boolean): void {
    if (this.role === StateRole.Leader) return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) {
      this.config.logger.warn(
        { id: this.id },
        "not campaigning: a committed membership change is not applied yet",
      );
      return;
    }
    this.campaign_(this.config.preVote && !transfer, transfer);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = this.log.applied + 1n < this.log.firstIndex() ? this.log.firstIndex() : this.log.applied + 1n;
    let next = lo;
    // Bounded: the scan covers at most committed - applied entries, in byte-limited pages.
    while (next <= this.log.committed) {
      const page = this.log.slice(next, this.log.committed + 1n, this.config.msgBytesMax);
      if (page.some((e) => e.type === EntryType.ConfChange)) return true;
      next += BigInt(page.length);
    }
    return false;
  }

  private campaign_(pre: boolean, transfer: boolean): void {
    let voteTerm: bigint;
    if (pre) {
      this.becomePreCandidate();
      voteTerm = this.term + 1n;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
    }
    this.tracker.recordVote(this.id, true);
    if (this.tracker.voteResult() === VoteResult.Won) {
      // A single-voter configuration wins at once.
      if (pre) this.campaign_(false, transfer);
      else this.becomeLeader();
      return;
    }
    const type = pre ? MessageType.PreVote : MessageType.Vote;
    for (const id of this.tracker.confState().voters) {
      if (id === this.id) continue;
      this.send({
        type,
        to: id,
        term: voteTerm,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        context: transfer ? CAMPAIGN_TRANSFER : EMPTY_BYTES,
      });
    }
  }

  /** Records a vote; acts on the outcome. Called by the candidate role. */
  pollAndAct(from: NodeId, granted: boolean): void {
    this.tracker.recordVote(from, granted);
    const result = this.tracker.voteResult();
    if (result === VoteResult.Won) {
      if (this.role === StateRole.PreCandidate) {
        this.campaign_(false, false);
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (result === VoteResult.Lost) {
      this.becomeFollower(this.term, NONE);
    }
  }

  // ---- Role transitions -------------------------------------------------------------------

  private reset(term: bigint): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout =
      this.config.electionTicks + this.config.random.intBelow(this.config.electionTicks);
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const cs = this.tracker.confState();
    this.tracker.setConfig(cs, this.log.lastIndex() + 1n);
    const self = this.tracker.progress.get(this.id);
    if (self !== undefined) self.match = this.log.persistedIndex();
    this.pendingConfIndex = 0n;
    this.uncommittedBytes = 0;
    this.readOnly = new ReadOnly(READ_REQUESTS_PENDING_MAX);
    this.pendingReadIndexMessages = [];
    this.readHeartbeatPending = false;
  }

  becomeFollower(term: bigint, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = StateRole.Follower;
  }

  private becomeCandidate(): void {
    assert(this.role !== StateRole.Leader, "leader cannot become candidate");
    this.reset(this.term + 1n);
    this.vote = this.id;
    this.role = StateRole.Candidate;
  }

  private becomePreCandidate(): void {
    assert(this.role !== StateRole.Leader, "leader cannot become pre-candidate");
    // Pre-vote changes neither term nor vote: a failed pre-election disturbs nobody.
    this.tracker.resetVotes();
    this.lead = NONE;
    this.role = StateRole.PreCandidate;
  }

  private becomeLeader(): void {
    assert(this.role !== StateRole.Follower, "follower cannot become leader directly");
    this.reset(this.term);
    this.lead = this.id;
    this.role = StateRole.Leader;
    const self = this.tracker.progress.get(this.id);
    assert(self !== undefined, "leader must be in its configuration");
    self.becomeReplicate();
    self.match = this.log.persistedIndex();
    self.next = this.log.lastIndex() + 1n;
    self.recentActive = true;
    // Conservatively assume an unapplied conf change may be in the log until this term's entry applies.
    this.pendingConfIndex = this.log.lastIndex();
    this.appendEntries(this.firstEntriesOfTerm());
    this.config.logger.info({ id: this.id, term: this.term }, "became leader");
  }

  /**
   * The first leader of a brand-new cluster (empty log) writes the bootstrap configuration into the
   * log as conf change entries, so that a member joining later and replaying the log from index 1
   * learns the initial voters (the bootstrap ConfState lives only in the initial members' stores).
   * Applying them on the initial members is a no-op. Any later leader appends one empty entry.
   */
  private firstEntriesOfTerm(): Entry[] {
    if (this.log.lastIndex() !== 0n)
      return [{ term: 0n, index: 0n, type: EntryType.Normal, data: EMPTY_BYTES }];
    const cs = this.tracker.confState();
    const encode = (type: ConfChangeType, nodeId: NodeId): Entry => ({
      term: 0n,
      index: 0n,
      type: EntryType.ConfChange,
      data: encodeConfChange({ type, nodeId, context: EMPTY_BYTES }),
    });
    return [
      ...cs.voters.map((id) => encode(ConfChangeType.AddNode, id)),
      ...cs.learners.map((id) => encode(ConfChangeType.AddLearnerNode, id)),
    ];
  }

  // ---- Leader helpers ---------------------------------------------------------------------

  /** Appends entries in the current term. Returns false when the uncommitted-bytes bound is hit. */
  appendEntries(ents: readonly Entry[]): boolean {
    const bytes = entriesDataBytes(ents);
    const max = this.config.uncommittedBytesMax;
    if (max > 0 && bytes > 0 && this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > max)
      return false;
    this.uncommittedBytes += bytes;
    let index = this.log.lastIndex();
    const stamped = ents.map((e) => ({ ...e, term: this.term, index: ++index }));
    this.log.append(stamped);
    return true;
  }

  private reduceUncommittedBytes(ents: readonly Entry[]): void {
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entriesDataBytes(ents));
  }

  /** Advances the commit index from the voters' matches; releases reads waiting for it. */
  maybeCommit(): boolean {
    if (!this.log.maybeCommit(this.tracker.committed(), this.term)) return false;
    this.releasePendingReadIndexMessages();
    return true;
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) stepLeader(this, m);
  }

  private flushReadHeartbeat(): void {
    if (!this.readHeartbeatPending) return;
    this.readHeartbeatPending = false;
    if (this.role === StateRole.Leader) this.bcastHeartbeat();
  }

  send(fields: MessageFields): void {
    const m = makeMessage({ from: this.id, ...fields });
    const carriesOwnTerm =
      m.type === MessageType.Vote ||
      m.type === MessageType.VoteResp ||
      m.type === MessageType.PreVote ||
      m.type === MessageType.PreVoteResp;
    if (carriesOwnTerm) {
      assert(m.term !== 0n, `${m.type} must carry a term`);
      this.msgs.push(m);
    } else if (m.type === MessageType.Prop || m.type === MessageType.ReadIndex) {
      // Forwarded requests keep term 0: the leader treats them as local.
      this.msgs.push(m);
    } else {
      this.msgs.push({ ...m, term: this.term });
    }
  }

  bcastAppend(): void {
    for (const id of this.tracker.progress.keys()) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  bcastHeartbeat(): void {
    const ctx = this.readOnly.lastPendingCtx() ?? EMPTY_BYTES;
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id) continue;
      this.send({
        type: MessageType.Heartbeat,
        to: id,
        commit: minBigint(pr.match, this.log.committed),
        context: ctx,
      });
    }
  }

  /** Sends the next App (or a snapshot) to `to` if its progress allows. Returns true if sent. */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (pr === undefined || to === this.id || pr.isPaused()) return false;
    let prevTerm: bigint;
    let ents: Entry[];
    try {
      prevTerm = this.log.term(pr.next - 1n);
      ents = this.log.slice(pr.next, this.log.lastIndex() + 1n, this.config.msgBytesMax);
    } catch (e) {
      if (!(e instanceof CompactedError)) throw e;
      return this.sendSnapshot(to, pr);
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: MessageType.App,
      to,
      index: pr.next - 1n,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    });
    pr.sentEntries(pr.next - 1n + BigInt(ents.length), ents.length, entriesDataBytes(ents));
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    // An unresponsive member would not take the snapshot; wait until it is heard from.
    if (!pr.recentActive) return false;
    let snap: ReturnType<RaftLog["snapshot"]>;
    try {
      snap = this.log.snapshot();
    } catch (e) {
      if (e instanceof SnapshotTemporarilyUnavailableError) return false;
      throw e;
    }
    assert(snap.metadata.index > 0n, "compacted log without a snapshot");
    this.send({ type: MessageType.Snap, to, snapshot: snap });
    pr.becomeSnapshot(snap.metadata.index);
    return true;
  }

  sendTimeoutNow(to: NodeId): void {
    this.send({ type: MessageType.TimeoutNow, to });
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  /** Answers a confirmed read: locally as a ReadState, or to the follower that forwarded it. */
  respondToRead(from: NodeId, ctx: Uint8Array, index: bigint): void {
    if (from === NONE || from === this.id) this.readStates.push({ index, requestCtx: ctx });
    else this.send({ type: MessageType.ReadIndexResp, to: from, index, context: ctx });
  }

  drop(reason: string): never {
    throw new ProposalDroppedError(reason);
  }

  // ---- Membership -------------------------------------------------------------------------

  private applyToTracker(cc: ConfChange): void {
    const t = this.tracker;
    const next = this.log.lastIndex() + 1n;
    switch (cc.type) {
      case ConfChangeType.AddNode:
        if (t.learners.has(cc.nodeId)) t.promote(cc.nodeId);
        else if (!t.voters.has(cc.nodeId)) t.addVoter(cc.nodeId, next);
        return;
      case ConfChangeType.AddLearnerNode:
        if (t.voters.has(cc.nodeId)) {
          // Refused at proposal time; a committed one (from an older leader) changes nothing.
          this.config.logger.warn(
            { id: this.id, node: cc.nodeId },
            "ignoring demotion of a voter to learner",
          );
        } else if (!t.learners.has(cc.nodeId)) {
          t.addLearner(cc.nodeId, next);
        }
        return;
      case ConfChangeType.RemoveNode:
        t.remove(cc.nodeId);
        return;
      case ConfChangeType.UpdateNode:
        return;
    }
  }

  private afterConfChangeAsLeader(): void {
    if (!this.tracker.voters.has(this.id)) {
      this.stepDownAfterRemoval();
      return;
    }
    if (this.leadTransferee !== NONE && !this.tracker.voters.has(this.leadTransferee))
      this.abortLeaderTransfer();
    // A smaller quorum may commit more; new members need their first App.
    if (this.maybeCommit()) this.bcastAppend();
    else for (const id of this.tracker.progress.keys()) if (id !== this.id) this.maybeSendAppend(id, false);
  }

  /**
   * The leader applied its own removal: it steps down. To shorten the gap, it asks the most
   * up-to-date remaining voter to campaign at once (TimeoutNow) when one has its whole log.
   */
  private stepDownAfterRemoval(): void {
    let best: NodeId = NONE;
    for (const id of this.tracker.confState().voters) {
      const pr = this.tracker.progress.get(id);
      if (pr !== undefined && pr.match === this.log.lastIndex() && best === NONE) best = id;
    }
    if (best !== NONE) this.sendTimeoutNow(best);
    this.config.logger.info(
      { id: this.id, term: this.term },
      "removed from the configuration: stepping down",
    );
    this.becomeFollower(this.term, NONE);
  }

  /** Decodes a conf change for validation at proposal time. */
  decodeProposedConfChange(e: Entry): ConfChange {
    return decodeConfChange(e.data);
  }
}

function softStateEqual(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
