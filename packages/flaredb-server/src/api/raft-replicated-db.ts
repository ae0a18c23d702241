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
    return this.quorumContactAgeMs() <= node.config.tickMs * node.config.electionTicks;
  }

  /**
   * On the leader: how long ago it last heard from a quorum (itself included), i.e. how stale its
   * claim to be current may be. On a follower: ms since the last message from its leader; Infinity
   * when it knows no leader or never heard from it.
   */
  lastContactMs(): number {
    const node = this.raft.node;
    if (node.role === StateRole.Leader) return this.quorumContactAgeMs();
    if (node.leader === 0n) return Number.POSITIVE_INFINITY;
    const at = node.lastHeard.get(node.leader);
    return at === undefined ? Number.POSITIVE_INFINITY : Math.max(0, performance.now() - at);
  }

  /** Age of the quorum-th most recent contact among the voters (self counts as now). */
  private quorumContactAgeMs(): number {
    const node = this.raft.node;
    const now = performance.now();
    const voters = node.currentConfState().voters;
    const ages = voters
      .map((v) => (v === node.id ? 0 : now - (node.lastHeard.get(v) ?? Number.NEGATIVE_INFINITY)))
      .sort((a, b) => a - b);
    const quorum = Math.floor(voters.length / 2) + 1;
    return Math.max(0, ages[quorum - 1] ?? Number.POSITIVE_INFINITY);
  }

  /** The leader's first client URL, from the replicated member list. */
  leaderHint(): string | undefined {
    const leader = this.raft.node.leader;
    if (leader === 0n) return undefined;
    return this.raft.node.members.get(leader)?.clientUrls[0];
  }
}
