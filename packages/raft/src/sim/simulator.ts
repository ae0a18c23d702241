// The deterministic simulator: several RaftCores in one process on a virtual clock, a seeded
// faulty network, crashes that lose unsynced writes, random proposals, membership changes and
// leadership transfers. Safety invariants are checked after every step; at the end the network
// heals and the cluster must elect a leader and commit a new proposal within a bound.
// Everything random comes from one SeededRandom, so a seed replays exactly.
import { decodeConfChange } from "../core/conf-change-codec.js";
import { ProposalDroppedError } from "../core/errors.js";
import { bytesEqual } from "../core/messages.js";
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
  type Ready,
  type ReadState,
  StateRole,
} from "../core/types.js";
import { applyDigest, Checker, Violation } from "./checker.js";
import { SILENT_LOGGER } from "./harness.js";
import { SimDisk } from "./sim-disk.js";
import { SimNetwork } from "./sim-network.js";

/** Deliberately broken rules, to prove the checker catches what they cause. Test use only. */
export type BrokenRule = "none" | "forget-vote-on-restart" | "ack-before-persist";

export interface SimOptions {
  seed: bigint;
  steps: number;
  trace?: (line: string) => void;
  brokenRule?: BrokenRule;
}

export interface SimResult {
  seed: bigint;
  violation: string | null;
  steps: number;
  commits: bigint;
}

const IDS_MAX = 7;
const VOTERS_MIN = 3;
const VOTERS_MAX = 5;
const TICK_INTERVAL = 10;
const ELECTION_TICKS = 10;
/** After healing, a leader must commit a new proposal within this many ticks per member. */
const LIVENESS_TICKS = 60 * ELECTION_TICKS;

interface SimNode {
  readonly id: NodeId;
  disk: SimDisk;
  core: RaftCore | null;
  outstanding: Ready | null;
  /** The outstanding Ready's messages were already sent (leader exception to the ordering). */
  sentEarly: boolean;
  smIndex: bigint;
  smDigest: number;
  confState: ConfState;
  tickPhase: number;
  lastCommitSeen: bigint;
  /** Stopped because it applied its own removal; restarted only when re-added. */
  removed: boolean;
  /** With a durable state machine: its applied index and state, which survive crashes. */
  durableSm: { index: bigint; digest: number } | null;
}

interface SnapshotImage {
  index: string;
  digest: number;
}

export class Simulator {
  private readonly random: SeededRandom;
  private readonly net: SimNetwork;
  private readonly checker = new Checker();
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly disks = new Map<NodeId, SimDisk>();
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  /**
   * Whether the state machine records its applied index durably (restart re-applies only what
   * follows it, with the configuration the store recorded at apply time), or is rebuilt from the
   * snapshot at restart (everything after the snapshot is re-applied).
   */
  private readonly smDurable: boolean;
  /** Per-seed flow-control bounds: tiny ones force many small messages and back-pressure. */
  private readonly bounds: {
    heartbeatTicks: number;
    msgBytesMax: number;
    inflightMsgsMax: number;
    inflightBytesMax: number;
    committedBytesPerReadyMax: number;
    uncommittedBytesMax: number;
  };
  private now = 0;
  private proposals = 0;
  private readonly brokenRule: BrokenRule;
  private readonly trace: ((line: string) => void) | undefined;
  /** The liveness proposal, and the members that applied it. */
  private marker: Uint8Array | null = null;
  /** Counters printed at the end of a traced run, to see what a seed exercised. */
  readonly stats = new Map<string, number>();
  /** Pending ReadIndex requests: context → highest index known committed when it was asked. */
  private readonly reads = new Map<string, bigint>();
  private readCount = 0;
  /** Set for the liveness phase: no more faults. */
  private healed = false;
  private readonly markerApplied = new Set<NodeId>();

  constructor(private readonly options: SimOptions) {
    this.random = new SeededRandom(options.seed);
    this.brokenRule = options.brokenRule ?? "none";
    this.trace = options.trace;
    this.preVote = this.random.chance(0.7);
    this.checkQuorum = this.random.chance(0.7);
    this.smDurable = this.random.chance(0.5);
    this.bounds = {
      heartbeatTicks: 1 + this.random.intBelow(3),
      msgBytesMax: 8 + this.random.intBelow(256),
      inflightMsgsMax: 1 + this.random.intBelow(8),
      uncommittedBytesMax: this.random.chance(0.5) ? 0 : 64 + this.random.intBelow(4096),
      inflightBytesMax: this.random.chance(0.5) ? 0 : 1 + this.random.intBelow(1024),
      committedBytesPerReadyMax: 1 + this.random.intBelow(512),
    };
    // Each seed draws its own fault profile, from a clean LAN to a very lossy, slow network.
    this.net = new SimNetwork(
      this.random,
      {
        dropProbability: this.random.intBelow(20) / 100,
        duplicateProbability: this.random.intBelow(10) / 100,
        delayMax: 1 + this.random.intBelow(50),
      },
      (m) => this.onDropped(m),
    );
    const voterCount = this.random.chance(0.5) ? 3 : 5;
    const voters: NodeId[] = [];
    for (let i = 1; i <= voterCount; i++) voters.push(BigInt(i));
    for (const id of voters) this.startNode(id, new SimDisk({ voters, learners: [] }));
    const f = this.net.faults;
    this.log(
      `start voters=${voters.join(",")} preVote=${this.preVote} checkQuorum=${this.checkQuorum} smDurable=${this.smDurable} bounds=${JSON.stringify(this.bounds)} drop=${f.dropProbability} duplicate=${f.duplicateProbability} delayMax=${f.delayMax}`,
    );
  }

  private log(line: string): void {
    this.trace?.(`t=${this.now} ${line}`);
  }

  run(): SimResult {
    let step = 0;
    try {
      for (; step < this.options.steps; step++) {
        this.stepOnce(true);
        this.checkAll();
      }
      this.checkLiveness();
      this.log(`stats ${[...this.stats].map(([k, v]) => `${k}=${v}`).join(", ")}`);
      return { seed: this.options.seed, violation: null, steps: step, commits: this.checker.maxCommitted };
    } catch (e) {
      // One line per failing seed; the stack goes to the trace of a replay.
      const message = e instanceof Violation ? e.message : `exception: ${(e as Error).message ?? e}`;
      if (!(e instanceof Violation)) this.log(`stack ${(e as Error).stack ?? e}`);
      this.log(`VIOLATION ${message}`);
      return { seed: this.options.seed, violation: message, steps: step, commits: this.checker.maxCommitted };
    }
  }

  // ---- Members ----------------------------------------------------------------------------

  private startNode(id: NodeId, disk: SimDisk): SimNode {
    const snap = disk.live.snapshot();
    const image = decodeImage(snap.data);
    const node: SimNode = {
      id,
      disk,
      core: null,
      outstanding: null,
      sentEarly: false,
      smIndex: snap.metadata.index,
      smDigest: image?.digest ?? 0,
      confState: disk.live.initialState().confState,
      tickPhase: this.random.intBelow(TICK_INTERVAL),
      lastCommitSeen: disk.live.initialState().hardState.commit,
      removed: false,
      durableSm: null,
    };
    node.core = this.makeCore(node);
    this.nodes.set(id, node);
    this.disks.set(id, disk);
    return node;
  }

  private makeCore(node: SimNode): RaftCore {
    return new RaftCore({
      id: node.id,
      storage: node.disk.live,
      electionTicks: ELECTION_TICKS,
      heartbeatTicks: this.bounds.heartbeatTicks,
      applied: node.smIndex,
      msgBytesMax: this.bounds.msgBytesMax,
      inflightMsgsMax: this.bounds.inflightMsgsMax,
      inflightBytesMax: this.bounds.inflightBytesMax,
      committedBytesPerReadyMax: this.bounds.committedBytesPerReadyMax,
      uncommittedBytesMax: this.bounds.uncommittedBytesMax,
      preVote: this.preVote,
      checkQuorum: this.checkQuorum,
      disableProposalForwarding: false,
      random: new SeededRandom(this.random.nextUint64()),
      logger: SILENT_LOGGER,
    });
  }

  private crash(node: SimNode): void {
    this.log(`crash ${node.id}`);
    node.core = null;
    node.outstanding = null;
    node.disk.crash();
    this.net.dropFor(node.id);
  }

  private restart(node: SimNode): void {
    if (this.brokenRule === "forget-vote-on-restart") {
      const hs = node.disk.durable.hardStateNow();
      node.disk.write((s) => s.setHardState({ ...hs, vote: 0n }), true);
    }
    const snap = node.disk.live.snapshot();
    const durable = node.durableSm;
    if (this.smDurable && durable !== null && durable.index >= snap.metadata.index) {
      node.smIndex = durable.index;
      node.smDigest = durable.digest;
    } else {
      node.smIndex = snap.metadata.index;
      node.smDigest = decodeImage(snap.data)?.digest ?? 0;
    }
    node.confState = node.disk.live.initialState().confState;
    node.lastCommitSeen = node.disk.live.initialState().hardState.commit;
    node.core = this.makeCore(node);
    this.log(`restart ${node.id} applied=${node.smIndex}`);
  }

  // ---- One step of the world --------------------------------------------------------------

  private stepOnce(chaos: boolean): void {
    this.now++;
    for (const node of this.nodes.values()) {
      if (node.core !== null && (this.now + node.tickPhase) % TICK_INTERVAL === 0) node.core.tick();
    }
    this.deliverDue();
    this.checkCommits();
    if (chaos) this.chaos();
    this.checkCommits();
    this.handleReadies();
  }

  private deliverDue(): void {
    const { deliver, dropped } = this.net.due(this.now);
    for (const m of dropped) this.onDropped(m);
    for (const m of deliver) {
      this.count(`msg ${MESSAGE_NAMES[m.type]}`);
      const target = this.nodes.get(m.to);
      if (target?.core == null) {
        this.onDropped(m);
        continue;
      }
      this.stepInto(target.core, m);
      if (m.type === MessageType.Snap) this.nodes.get(m.from)?.core?.reportSnapshot(m.to, true);
    }
  }

  private count(key: string): void {
    this.stats.set(key, (this.stats.get(key) ?? 0) + 1);
  }

  private onDropped(m: Message): void {
    const sender = this.nodes.get(m.from)?.core;
    if (sender == null) return;
    if (m.type === MessageType.Snap) sender.reportSnapshot(m.to, false);
    else if (this.random.chance(0.3)) sender.reportUnreachable(m.to);
  }

  private stepInto(core: RaftCore, m: Message): void {
    try {
      core.step(m);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
    // Checked after every message, so that a leadership lasting less than one step is seen too.
    if (core.role === StateRole.Leader) this.checker.checkLeader(core.id, core);
  }

  private handleReadies(): void {
    for (const node of this.nodes.values()) {
      if (node.core === null) continue;
      if (node.outstanding !== null) {
        // The driver may step messages between ready() and advance(); finish half the time.
        if (this.random.chance(0.5)) this.finishReady(node);
        continue;
      }
      if (!node.core.hasReady()) continue;
      this.startReady(node);
      if (node.core !== null && this.random.chance(0.5)) this.finishReady(node);
    }
  }

  /** Ready step 1: persist (synced when mustSync). A leader may send first (the etcd exception). */
  private startReady(node: SimNode): void {
    const core = node.core as RaftCore;
    const rd = core.ready();
    node.outstanding = rd;
    if (rd.softState !== null && this.trace !== undefined) this.log(`role ${this.describeNode(node)}`);
    node.sentEarly = false;
    const durableHs = node.disk.durable.hardStateNow();
    const leaderMaySendFirst =
      core.role === StateRole.Leader &&
      (rd.hardState === null ||
        (rd.hardState.term === durableHs.term && rd.hardState.vote === durableHs.vote));
    if ((leaderMaySendFirst && this.random.chance(0.3)) || this.brokenRule === "ack-before-persist") {
      this.sendAll(rd.messages);
      node.sentEarly = true;
      // A crash between sending and persisting loses the leader's new entries but nothing it promised.
      if (!this.healed && this.random.chance(0.05)) {
        this.crash(node);
        return;
      }
    }
    this.persist(node, rd);
  }

  private persist(node: SimNode, rd: Ready): void {
    const disk = node.disk;
    const core = node.core as RaftCore;
    const snap = rd.snapshot;
    if (snap !== null) disk.write((s) => s.applySnapshot(snap), false);
    if (rd.entries.length > 0) {
      disk.write((s) => s.append(rd.entries), false);
      this.checker.checkAppended(node.id, rd.entries, (i) => termOrZero(disk.live, i));
    }
    const hs = rd.hardState;
    if (hs !== null) disk.write((s) => s.setHardState(hs), false);
    if (rd.mustSync) disk.sync();
    if (hs !== null && hs.commit > node.lastCommitSeen) {
      this.checker.recordCommitted(node.id, node.lastCommitSeen, hs.commit, (i) => core.log.termOrZero(i));
      node.lastCommitSeen = hs.commit;
    }
  }

  /** Ready steps 2-4: send, apply, advance. */
  private finishReady(node: SimNode): void {
    const rd = node.outstanding as Ready;
    const core = node.core as RaftCore;
    node.outstanding = null;
    if (!node.sentEarly) this.sendAll(rd.messages);
    for (const rs of rd.readStates) this.checkRead(node, rs);
    if (rd.snapshot !== null) this.installSnapshot(node, rd);
    for (const e of rd.committedEntries) this.apply(node, core, e);
    core.advance(rd);
    this.checkCommit(node);
    this.maybeCompact(node);
  }

  private sendAll(messages: readonly Message[]): void {
    for (const m of messages) this.net.send(m, this.now);
  }

  private installSnapshot(node: SimNode, rd: Ready): void {
    const snap = rd.snapshot;
    if (snap === null) return;
    const image = decodeImage(snap.data);
    if (image === null) throw new Violation("snapshot", `member ${node.id} got a snapshot without an image`);
    node.smIndex = snap.metadata.index;
    node.smDigest = image.digest;
    node.confState = snap.metadata.confState;
    if (this.smDurable) node.durableSm = { index: node.smIndex, digest: node.smDigest };
    this.checker.checkApplied(node.id, node.smIndex, node.smDigest);
    this.count("snapshots installed");
  }

  private apply(node: SimNode, core: RaftCore, e: Entry): void {
    if (e.index !== node.smIndex + 1n) {
      throw new Violation(
        "state machine safety",
        `member ${node.id} applies ${e.index} after ${node.smIndex}`,
      );
    }
    node.smIndex = e.index;
    node.smDigest = applyDigest(node.smDigest, e);
    this.checker.checkApplied(node.id, e.index, node.smDigest);
    if (this.smDurable) node.durableSm = { index: node.smIndex, digest: node.smDigest };
    if (this.marker !== null && bytesEqual(e.data, this.marker)) this.markerApplied.add(node.id);
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      // Commits made under the old configuration are checked against it, before it changes.
      this.checkCommit(node);
      const confState = core.applyConfChange(cc);
      node.confState = confState;
      // The store records the configuration in the same transaction as the applied index.
      if (this.smDurable) node.disk.write((st) => st.setConfState(confState), true);
      this.checkCommit(node);
      if (e.index > 7n) this.count(`applied ${describeChange(cc).split(" ")[0]}`);
      this.log(
        `member ${node.id} applied ${describeChange(cc)} at ${e.index} -> ${describeConf(node.confState)}`,
      );
    }
  }

  /** Snapshots the state machine every few entries and compacts the log behind it. */
  private maybeCompact(node: SimNode): void {
    const disk = node.disk;
    const snapIndex = disk.live.snapshot().metadata.index;
    if (node.smIndex - snapIndex < 8n || !this.random.chance(0.2)) return;
    const index = node.smIndex;
    const confState = node.confState;
    const data = encodeImage({ index: index.toString(), digest: node.smDigest });
    disk.write((s) => {
      s.createSnapshot(index, confState, data);
      s.compact(index > 2n ? index - 2n : index);
    }, true);
  }

  // ---- Chaos ------------------------------------------------------------------------------

  private chaos(): void {
    const r = this.random.intBelow(1000);
    if (r < 80) this.propose();
    else if (r < 86) this.crashRandom();
    else if (r < 96) this.restartRandom();
    else if (r < 99) this.partitionRandom();
    else if (r < 102) this.net.partition.clear();
    else if (r < 104) this.swizzleClog();
    else if (r < 108) this.unclogRandom();
    else if (r < 112) this.changeMembership();
    else if (r < 115) this.transferRandom();
    else if (r < 118) this.startAddedMembers();
    else if (r < 120) this.campaignRandom();
    else if (r < 150) this.readRandom();
  }

  /** A member campaigns out of turn (as after a local timer glitch): elections collide more often. */
  private campaignRandom(): void {
    const node = this.pick(this.liveNodes());
    node?.core?.campaign();
  }

  private liveNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.core !== null);
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.random.intBelow(items.length)];
  }

  private propose(): void {
    const node = this.pick(this.liveNodes());
    if (node?.core == null) return;
    const data = new TextEncoder().encode(`p${this.options.seed}-${++this.proposals}`);
    try {
      node.core.propose(data);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  }

  /** Asks a random member for a linearizable read point. */
  private readRandom(): void {
    const node = this.pick(this.liveNodes());
    if (node?.core == null) return;
    const ctx = `r${++this.readCount}`;
    try {
      node.core.readIndex(new TextEncoder().encode(ctx));
      this.reads.set(ctx, this.checker.maxCommitted);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  }

  /**
   * Linearizable reads: the read index must cover every entry known committed before the read was
   * asked, or a read could miss a write that completed before it started.
   */
  private checkRead(node: SimNode, rs: ReadState): void {
    const ctx = new TextDecoder().decode(rs.requestCtx);
    const floor = this.reads.get(ctx);
    if (floor === undefined) return;
    this.count("reads confirmed");
    if (rs.index < floor) {
      throw new Violation(
        "linearizable read",
        `member ${node.id} read ${ctx} at ${rs.index} < committed ${floor}`,
      );
    }
  }

  private crashRandom(): void {
    const node = this.pick(this.liveNodes());
    if (node !== undefined) this.crash(node);
  }

  private restartRandom(): void {
    const down = [...this.nodes.values()].filter((n) => n.core === null && this.isMember(n.id));
    const node = this.pick(down);
    if (node !== undefined) this.restart(node);
  }

  private partitionRandom(): void {
    this.net.partition.clear();
    for (const id of this.nodes.keys()) this.net.partition.set(id, this.random.intBelow(2));
    this.log(`partition ${[...this.net.partition].map(([id, g]) => `${id}:${g}`).join(" ")}`);
  }

  /**
   * Swizzle-clog: a random subset of members is clogged at once (their traffic waits, nothing is
   * lost); unclogRandom later releases them one at a time in random order.
   */
  private swizzleClog(): void {
    for (const id of this.nodes.keys()) if (this.random.chance(0.4)) this.net.clogged.add(id);
    this.log(`clog ${[...this.net.clogged].join(",")}`);
  }

  private unclogRandom(): void {
    const node = this.pick([...this.net.clogged]);
    if (node !== undefined) this.net.clogged.delete(node);
  }

  /** The configuration applied by the most advanced member: the best view of the current one. */
  private latestConf(): ConfState {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) if (best === undefined || n.smIndex > best.smIndex) best = n;
    return best?.confState ?? { voters: [], learners: [] };
  }

  private isMember(id: NodeId): boolean {
    const cs = this.latestConf();
    return cs.voters.includes(id) || cs.learners.includes(id);
  }

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.liveNodes()) {
      const core = n.core as RaftCore;
      if (core.role === StateRole.Leader && (best === undefined || core.term > (best.core as RaftCore).term))
        best = n;
    }
    return best;
  }

  private changeMembership(): void {
    const leader = this.leader();
    if (leader?.core == null) return;
    const cs = this.latestConf();
    const cc = this.chooseChange(cs);
    if (cc === undefined) return;
    try {
      leader.core.proposeConfChange(cc);
      this.log(`propose ${describeChange(cc)} via ${leader.id}`);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  }

  private chooseChange(cs: ConfState): ConfChange | undefined {
    const context = new Uint8Array();
    const r = this.random.intBelow(4);
    const outsiders: NodeId[] = [];
    for (let i = 1; i <= IDS_MAX; i++) {
      const id = BigInt(i);
      if (!cs.voters.includes(id) && !cs.learners.includes(id)) outsiders.push(id);
    }
    if (r === 0) {
      const id = this.pick(outsiders);
      return id === undefined ? undefined : { type: ConfChangeType.AddLearnerNode, nodeId: id, context };
    }
    if (r === 3) {
      // Metadata only; exempt from the one-pending rule, so it may overlap any other change.
      const id = this.pick([...cs.voters, ...cs.learners]);
      return id === undefined ? undefined : { type: ConfChangeType.UpdateNode, nodeId: id, context };
    }
    if (r === 1 && cs.voters.length < VOTERS_MAX) {
      const id = this.pick(cs.learners);
      return id === undefined ? undefined : { type: ConfChangeType.AddNode, nodeId: id, context };
    }
    const removable = cs.voters.length > VOTERS_MIN ? [...cs.voters, ...cs.learners] : [...cs.learners];
    const id = this.pick(removable);
    return id === undefined ? undefined : { type: ConfChangeType.RemoveNode, nodeId: id, context };
  }

  /**
   * Starts members the configuration names but that do not run, and stops members it no longer
   * names. A re-added ID comes back either with its old disk or with a fresh one.
   */
  private startAddedMembers(): void {
    const cs = this.latestConf();
    for (const id of [...cs.voters, ...cs.learners]) {
      const node = this.nodes.get(id);
      if (node === undefined) {
        this.log(`start new member ${id}`);
        this.startNode(id, new SimDisk());
      } else if (node.core === null && node.removed) {
        node.removed = false;
        // A fresh disk is only legitimate once no leader still counts the old incarnation's log
        // (the operator waits for the removal to be applied): a member that loses its durable state
        // while a leader relies on it breaks Raft's basic assumption.
        if (this.random.chance(0.5) && !this.leaderTracks(id)) {
          node.disk = new SimDisk();
          node.durableSm = null;
          // Late messages of the old incarnation would speak for a log this one does not have.
          this.net.dropFrom(id);
          this.disks.set(id, node.disk);
        }
        this.log(`start re-added member ${id}`);
        this.restart(node);
      }
    }
    for (const node of this.nodes.values()) {
      if (
        node.core !== null &&
        !cs.voters.includes(node.id) &&
        !cs.learners.includes(node.id) &&
        node.smIndex > 0n
      ) {
        if (node.confState.voters.includes(node.id) || node.confState.learners.includes(node.id)) continue;
        this.log(`stop removed member ${node.id}`);
        this.crash(node);
        node.removed = true;
      }
    }
  }

  private describeNode(n: SimNode): string {
    if (n.core === null) return `${n.id} down removed=${n.removed}`;
    const st = n.core.status();
    const roles = ["follower", "candidate", "leader", "pre-candidate"];
    const hs = st.hardState;
    return `${n.id} ${roles[st.softState.role]} term=${hs.term} vote=${hs.vote} lead=${st.softState.lead} commit=${hs.commit} applied=${st.applied} last=${n.core.log.lastIndex()}/${n.core.log.lastTerm()} conf=${describeConf(st.confState)} transferee=${st.leadTransferee}${[...st.progress].map(([id, pr]) => ` ${id}:${pr.state}/${pr.match}/${pr.next}`).join("")}`;
  }

  private leaderTracks(id: NodeId): boolean {
    for (const n of this.liveNodes()) {
      const core = n.core as RaftCore;
      if (core.role === StateRole.Leader && (core.tracker.progress.get(id)?.match ?? 0n) > 0n) return true;
    }
    return false;
  }

  private transferRandom(): void {
    const leader = this.leader();
    const to = this.pick(this.latestConf().voters);
    if (leader?.core == null || to === undefined) return;
    this.log(`transfer leadership ${leader.id} -> ${to}`);
    leader.core.transferLeader(to);
  }

  // ---- Checks -----------------------------------------------------------------------------

  private checkAll(): void {
    for (const n of this.nodes.values()) if (n.core !== null) this.checker.checkLeader(n.id, n.core);
    this.checkCommits();
  }

  private checkCommits(): void {
    for (const n of this.nodes.values()) this.checkCommit(n);
  }

  /** A leader's commit must be durable on a majority of the configuration it was made under. */
  private checkCommit(node: SimNode): void {
    if (node.core === null || node.core.role !== StateRole.Leader) return;
    this.checker.checkDurableQuorum(node.id, node.core, this.disks);
  }

  /** After healing everything, a leader must be elected and commit a new proposal in bounded time. */
  private checkLiveness(): void {
    this.healed = true;
    this.net.heal();
    this.net.faults = { dropProbability: 0, duplicateProbability: 0, delayMax: 5 };
    for (const n of this.nodes.values())
      if (n.core === null && this.isMember(n.id) && !n.removed) this.restart(n);
    this.startAddedMembers();
    const deadline = this.now + LIVENESS_TICKS * TICK_INTERVAL;
    const marker = new TextEncoder().encode(`liveness-${this.options.seed}`);
    this.marker = marker;
    let proposedAt = -1;
    while (this.now < deadline) {
      this.stepOnce(false);
      this.checkAll();
      if (this.now % 50 === 0) this.startAddedMembers();
      const leader = this.leader();
      if (leader?.core == null) continue;
      if (this.markerApplied.has(leader.id)) {
        this.log(`liveness ok: leader ${leader.id} applied the marker`);
        return;
      }
      if (proposedAt < 0 || this.now - proposedAt > 20 * TICK_INTERVAL) {
        proposedAt = this.now;
        this.stepInto(leader.core, proposalMessage(leader.id, marker));
      }
    }
    for (const n of this.nodes.values()) this.log(`final ${this.describeNode(n)}`);
    throw new Violation(
      "liveness",
      `no leader committed a new proposal within ${LIVENESS_TICKS} ticks after healing`,
    );
  }
}

const MESSAGE_NAMES = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

function proposalMessage(id: NodeId, data: Uint8Array): Message {
  return {
    type: MessageType.Prop,
    to: id,
    from: id,
    term: 0n,
    logTerm: 0n,
    index: 0n,
    entries: [{ term: 0n, index: 0n, type: EntryType.Normal, data }],
    commit: 0n,
    snapshot: null,
    reject: false,
    rejectHint: 0n,
    context: new Uint8Array(),
  };
}

function termOrZero(s: { term(i: bigint): bigint }, index: bigint): bigint {
  try {
    return s.term(index);
  } catch {
    return 0n;
  }
}

function encodeImage(image: SnapshotImage): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(image));
}

function decodeImage(data: Uint8Array): SnapshotImage | null {
  if (data.length === 0) return null;
  return JSON.parse(new TextDecoder().decode(data)) as SnapshotImage;
}

function describeChange(cc: ConfChange): string {
  const names = ["add-voter", "add-learner", "remove", "update"];
  return `${names[cc.type]} ${cc.nodeId}`;
}

function describeConf(cs: ConfState): string {
  return `voters=(${cs.voters.join(",")}) learners=(${cs.learners.join(",")})`;
}

export function runSeed(seed: bigint, steps: number, brokenRule: BrokenRule = "none"): SimResult {
  return new Simulator({ seed, steps, brokenRule }).run();
}
