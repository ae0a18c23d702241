// Tells a daemon when its member has been removed from the cluster, so it can stop (etcd stops a
// removed member) instead of lingering without a cluster.
import type { Logger } from "@photoncloud/daemon";
import { formatId } from "./ids.js";

/** What a peer says of the cluster (the Raft transport's ClusterInfo). */
export interface PeerView {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  /** 0 when it knows none. */
  readonly leaderId: bigint;
  /** The members of its applied configuration. */
  readonly memberIds: readonly bigint[];
  readonly term: bigint;
  /** It leads and has applied every membership change its log held when it was elected. */
  readonly configCurrent: boolean;
}

/** The parts of the Raft node the watcher reads. */
export interface WatchedNode {
  readonly isStopped: boolean;
  readonly leader: bigint;
  readonly core: { readonly term: bigint };
  readonly members: ReadonlyMap<bigint, unknown>;
  /** When a message last came from each peer (ms, the watcher's clock: `performance.now()`). */
  readonly lastHeard: ReadonlyMap<bigint, number>;
  currentConfState(): { readonly voters: readonly bigint[]; readonly learners: readonly bigint[] };
}

/**
 * Calls the `onRemoved` callbacks once this member is no longer in the cluster. Only the leader's
 * word settles it: a peer that says it leads, and whose applied configuration lacks this member.
 * (A follower may not have applied a member add yet; the leader applied it before the add was
 * answered.) Its word counts only once it has applied what its log held when it was elected (a
 * leader just elected may not have applied the last add yet), and only when its term is not older
 * than that of a leader this member has followed (a leader deposed since, cut off from the
 * majority, answers from an old configuration until check-quorum steps it down). The peers are asked
 * - at once when this member's own configuration, not empty, lacks it: it applied its removal, or
 *   it restarted on the data of a member removed meanwhile, or it replays its own earlier removal
 *   while catching up after being added again (the leader then lists it, and it runs on); a member
 *   that joined and has applied nothing yet has an empty configuration and is not asked about at
 *   once;
 * - after `probeMs` without hearing from a leader (a removed follower or learner may never learn
 *   of its removal: the leader stops sending to it, and a learner never campaigns; a joining
 *   member whose add was undone never hears from one).
 * Peers are asked at most once per `probeMs`.
 */
export class RemovalWatcher {
  private timer: NodeJS.Timeout | null = null;
  private troubleSinceMs: number | null = null;
  private lastProbeMs: number | null = null;
  private probing = false;
  private done = false;
  /** The term of the last leader this member heard from (0: none since it started). */
  private leaderTerm = 0n;
  private readonly callbacks: (() => void)[] = [];

  constructor(
    private readonly node: WatchedNode,
    private readonly memberId: bigint,
    /** The cluster ID as this member knows it (0 while a joining member has not learned it). */
    private readonly clusterId: () => bigint,
    private readonly askPeer: (peer: bigint) => Promise<PeerView>,
    /** How often to look, and how long without a leader (or between probes) before asking. */
    private readonly intervalMs: number,
    private readonly probeMs: number,
    private readonly logger: Logger,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** Registers `fn` (called once) and starts watching. */
  onRemoved(fn: () => void): void {
    this.callbacks.push(fn);
    if (this.timer !== null || this.done) return;
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  /** Stops looking; a probe still running then reports nothing (the member is stopping anyway). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.done = true;
  }

  /** One look (the interval's); resolves when a probe it started has finished. */
  check(): Promise<void> {
    if (this.node.isStopped) this.stop();
    const cs = this.node.currentConfState();
    const known = cs.voters.length + cs.learners.length > 0;
    const listed = cs.voters.includes(this.memberId) || cs.learners.includes(this.memberId);
    const now = this.nowMs();
    if (this.node.leader !== 0n && this.node.core.term > this.leaderTerm)
      this.leaderTerm = this.node.core.term;
    if (this.done || (listed && this.followsLeader(now)) || (!known && this.followsLeader(now))) {
      this.troubleSinceMs = null;
      return Promise.resolve();
    }
    this.troubleSinceMs ??= now;
    // Not listed in a configuration it has: ask at once. Listed, or joining with no configuration
    // yet: ask once no leader has been heard from for `probeMs`.
    const due = (known && !listed) || now - this.troubleSinceMs >= this.probeMs;
    const rested = this.lastProbeMs === null || now - this.lastProbeMs >= this.probeMs;
    if (!due || !rested || this.probing) return Promise.resolve();
    this.probing = true;
    this.lastProbeMs = now;
    return this.probePeers().finally(() => {
      this.probing = false;
    });
  }

  /** Whether this member leads, or heard from the leader it knows within `probeMs`. */
  private followsLeader(now: number): boolean {
    const leader = this.node.leader;
    if (leader === 0n) return false;
    if (leader === this.memberId) return true;
    const heard = this.node.lastHeard.get(leader);
    return heard !== undefined && now - heard < this.probeMs;
  }

  private async probePeers(): Promise<void> {
    for (const peer of [...this.node.members.keys()]) {
      if (peer === this.memberId) continue;
      const view = await this.askPeer(peer).catch(() => undefined);
      if (view === undefined || view.memberId !== peer || view.leaderId !== peer) continue;
      if (!view.configCurrent || view.term < this.leaderTerm) continue;
      const ours = this.clusterId();
      // A reused address may answer for another cluster: its word says nothing of this one.
      if (ours !== 0n && view.clusterId !== 0n && view.clusterId !== ours) continue;
      if (view.memberIds.includes(this.memberId)) return;
      return this.removed(`the leader (${formatId(peer)}) does not list this member`);
    }
  }

  private removed(why: string): void {
    if (this.done) return;
    this.stop();
    this.logger.warn({ memberId: formatId(this.memberId), why }, "this member was removed from the cluster");
    for (const fn of this.callbacks) {
      try {
        fn();
      } catch (err) {
        this.logger.error({ err }, "a removal callback failed");
      }
    }
  }
}
