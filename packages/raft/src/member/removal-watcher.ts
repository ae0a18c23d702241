// Tells a daemon when its member has been removed from the cluster, so it can stop (etcd stops a
// removed member). Two signals: the member applied a configuration without itself, or, since a
// removed member may never learn the commit of its own removal, it has had no leader for a while
// and a peer that knows a leader does not list it.
import type { Logger } from "@photoncloud/daemon";
import type { RaftService } from "../service/raft-service.js";
import { formatId } from "./ids.js";

export class RemovalWatcher {
  private timer: NodeJS.Timeout | null = null;
  private seen = false;
  private leaderlessSinceMs: number | null = null;
  private probing = false;
  private readonly callbacks: (() => void)[] = [];

  constructor(
    private readonly raft: RaftService,
    private readonly memberId: bigint,
    /** How often to look, and how long without a leader before asking the peers. */
    private readonly intervalMs: number,
    private readonly leaderlessProbeMs: number,
    private readonly logger: Logger,
  ) {}

  /** Registers `fn` (called once) and starts watching. */
  onRemoved(fn: () => void): void {
    this.callbacks.push(fn);
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
    // Look now: a member removed before the first interval ends must already count as having been
    // in the configuration (it learns its removal as soon as the leader's next message arrives).
    this.check();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private inConfig(): boolean {
    const cs = this.raft.node.currentConfState();
    return cs.voters.includes(this.memberId) || cs.learners.includes(this.memberId);
  }

  private check(): void {
    if (this.raft.node.isStopped) {
      this.stop();
      return;
    }
    if (!this.inConfig()) {
      // A joining member is not in its configuration until it catches up: only a member that
      // has been in it can have been removed.
      if (this.seen) this.removed("this member applied its own removal");
      return;
    }
    this.seen = true;
    if (this.raft.node.leader !== 0n) {
      this.leaderlessSinceMs = null;
      return;
    }
    this.leaderlessSinceMs ??= Date.now();
    if (Date.now() - this.leaderlessSinceMs < this.leaderlessProbeMs || this.probing) return;
    this.probing = true;
    void this.probePeers().finally(() => {
      this.probing = false;
      this.leaderlessSinceMs = Date.now();
    });
  }

  private async probePeers(): Promise<void> {
    for (const peer of this.raft.node.members.keys()) {
      if (peer === this.memberId || this.timer === null) continue;
      const info = await this.raft.transport.clusterInfo(peer, this.intervalMs * 4).catch(() => undefined);
      if (info === undefined || info.leaderId === 0n) continue;
      if (!info.memberIds.includes(this.memberId)) {
        this.removed(`member ${formatId(peer)} follows a leader and does not list this member`);
        return;
      }
    }
  }

  private removed(why: string): void {
    if (this.timer === null) return;
    this.stop();
    this.logger.warn({ memberId: formatId(this.memberId), why }, "this member was removed from the cluster");
    for (const fn of this.callbacks) fn();
  }
}
