// Tells a daemon when its member has been removed from the cluster, so it can stop (etcd stops a
// removed member) instead of lingering without a cluster.
import type { Logger } from "@photoncloud/daemon";
import { formatId } from "./ids.js";

/** What a peer says of the cluster: its leader (0 when none) and the members in its configuration. */
export interface PeerView {
  readonly leaderId: bigint;
  readonly memberIds: readonly bigint[];
}

/** The parts of the Raft node the watcher reads. */
export interface WatchedNode {
  readonly isStopped: boolean;
  readonly leader: bigint;
  readonly members: ReadonlyMap<bigint, unknown>;
  currentConfState(): { readonly voters: readonly bigint[]; readonly learners: readonly bigint[] };
}

/**
 * Calls the `onRemoved` callbacks once this member is no longer in the cluster. The other members
 * decide: one that follows a leader and does not list this member settles it. They are asked at
 * once when this member's own configuration lacks it (it applied its removal, or it restarted on
 * the data of a member removed meanwhile), and after `probeMs` without a leader (a removed follower
 * may never learn of its removal). A member whose own configuration lacks it only for a while (a
 * re-added ID replaying its earlier removal while it catches up) is still listed by the others, so
 * it keeps running. Peers are asked at most once per `probeMs`.
 */
export class RemovalWatcher {
  private timer: NodeJS.Timeout | null = null;
  private troubleSinceMs: number | null = null;
  private lastProbeMs: number | null = null;
  private probing = false;
  private done = false;
  private readonly callbacks: (() => void)[] = [];

  constructor(
    private readonly node: WatchedNode,
    private readonly memberId: bigint,
    private readonly askPeer: (peer: bigint) => Promise<PeerView>,
    /** How often to look, and how long without a leader (or between probes) before asking. */
    private readonly intervalMs: number,
    private readonly probeMs: number,
    private readonly logger: Logger,
    private readonly nowMs: () => number = Date.now,
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
    const listed = cs.voters.includes(this.memberId) || cs.learners.includes(this.memberId);
    if (this.done || (listed && this.node.leader !== 0n)) {
      this.troubleSinceMs = null;
      return Promise.resolve();
    }
    const now = this.nowMs();
    this.troubleSinceMs ??= now;
    const due = !listed || now - this.troubleSinceMs >= this.probeMs;
    const rested = this.lastProbeMs === null || now - this.lastProbeMs >= this.probeMs;
    if (!due || !rested || this.probing) return Promise.resolve();
    this.probing = true;
    this.lastProbeMs = now;
    return this.probePeers().finally(() => {
      this.probing = false;
    });
  }

  private async probePeers(): Promise<void> {
    for (const peer of [...this.node.members.keys()]) {
      if (peer === this.memberId) continue;
      const view = await this.askPeer(peer).catch(() => undefined);
      if (view === undefined || view.leaderId === 0n || view.memberIds.includes(this.memberId)) continue;
      return this.removed(`member ${formatId(peer)} follows a leader and does not list this member`);
    }
  }

  private removed(why: string): void {
    if (this.done) return;
    this.stop();
    this.logger.warn({ memberId: formatId(this.memberId), why }, "this member was removed from the cluster");
    for (const fn of this.callbacks) fn();
  }
}
