// The leader's side of lease expiry. Apply never consults a clock to expire a lease; instead the
// leader's driver looks at its lessor on an interval and proposes LeaseExpire (and LeaseCheckpoint,
// so remaining TTLs survive a leader change) through the log like any other write.
import { type command, etcd } from "@photoncloud/chainfire-api";
import type { Replicated } from "@photoncloud/raft";
import { encodeCommand } from "./messages.js";
import type { MvccStore } from "./store.js";

export interface LeaseDriverOptions {
  /** How often the leader looks for expired leases and due checkpoints. */
  intervalMs: number;
  /** Most leases expired (or checkpointed) by one proposal. */
  leasesPerProposalMax: number;
}

export class LeaseDriver {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly replicated: Replicated,
    private readonly store: MvccStore,
    private readonly options: LeaseDriverOptions = { intervalMs: 500, leasesPerProposalMax: 1000 },
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.tick().catch(() => {}), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * One round; does nothing on a follower (its lessor is not primary). A failed proposal (leadership
   * lost) is retried by the next leader's driver, which restarts the countdown from the checkpoints.
   * Expiries and checkpoints come from this leader's clock: they are proposed for the term it leads
   * in, so one that has lost the leadership without its lessor knowing yet cannot have the next
   * leader commit them (an expiry would revoke a lease the new leader has just renewed, a
   * checkpoint would shorten one).
   */
  async tick(): Promise<void> {
    if (this.running || !this.store.lessor.isPrimary) return;
    this.running = true;
    try {
      const now = this.store.lessor.nowMs();
      const max = this.options.leasesPerProposalMax;
      // Under the CORRUPT alarm an expiry would be refused at apply, as etcd refuses the revoke:
      // the leases stay until the alarm is disarmed, and nothing is proposed meanwhile.
      const frozen = this.store.alarms(etcd.AlarmType.CORRUPT).length > 0;
      const expired = frozen ? [] : this.store.lessor.expiredLeases(now, max);
      if (expired.length > 0) await this.propose({ leaseExpire: { ids: expired } });
      if (!this.store.lessor.isPrimary) return;
      const checkpoints = this.store.lessor.checkpointsDue(this.store.lessor.nowMs(), max);
      if (checkpoints.length > 0) await this.propose({ leaseCheckpoint: { checkpoints } });
    } finally {
      this.running = false;
    }
  }

  private async propose(cmd: command.MvccCommand): Promise<void> {
    const term = this.store.lessor.term;
    await this.replicated.propose(encodeCommand(cmd), term === 0n ? {} : { leaderTerm: term });
  }
}
