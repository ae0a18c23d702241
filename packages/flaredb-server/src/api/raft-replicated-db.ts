// ReplicatedDb on the real Raft layer: the RaftService facade plus this member's view of leadership,
// for the consistency levels that do not go through ReadIndex (WEAK and NONE with a freshness bound).

import type { RaftService } from "@photoncloud/raft";
import { StateRole } from "@photoncloud/raft";
import type { ReplicatedDb } from "./replicated-db.js";

export class RaftReplicatedDb implements ReplicatedDb {
  constructor(private readonly raft: RaftService) {}

  propose(command: Uint8Array): Promise<{ result: Uint8Array; index: bigint }> {
    return this.raft.propose(command);
  }

  linearizableRead<T>(read: () => T): Promise<T> {
    return this.raft.linearizableRead(read);
  }

  serializableRead<T>(read: () => T): T {
    return this.raft.serializableRead(read);
  }

  /**
   * Leader in its term AND heard from a quorum of voters within one election timeout. The second
   * condition is what check-quorum enforces at the end of the timeout; checking it here too closes
   * the window in which a partitioned leader still believes in its role and would serve WEAK reads
   * that a new leader may already have overtaken.
   */
  isLeader(): boolean {
    const node = this.raft.node;
    if (node.isStopped || node.role !== StateRole.Leader) return false;
    const voters = node.currentConfState().voters;
    const horizon = Date.now() - node.config.tickMs * node.config.electionTicks;
    const heard = voters.filter((v) => v === node.id || (node.lastHeard.get(v) ?? 0) >= horizon).length;
    return heard >= Math.floor(voters.length / 2) + 1;
  }

  /** 0 on the leader; ms since the last message from the current leader; Infinity when there is none. */
  lastContactMs(): number {
    const node = this.raft.node;
    if (node.role === StateRole.Leader) return 0;
    if (node.leader === 0n) return Number.POSITIVE_INFINITY;
    const at = node.lastHeard.get(node.leader);
    return at === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Date.now() - at);
  }

  /** The leader's first client URL, from the replicated member list. */
  leaderHint(): string | undefined {
    const leader = this.raft.node.leader;
    if (leader === 0n) return undefined;
    return this.raft.node.members.get(leader)?.clientUrls[0];
  }
}
