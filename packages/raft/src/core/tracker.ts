// The configuration (voters and learners) and, on the leader, the progress of every member and the
// votes of the current election.
import { assert } from "./assert.js";
import { Progress } from "./progress.js";
import { majorityIndex, VoteResult, voteResult } from "./quorum.js";
import type { ConfState, NodeId } from "./types.js";

function sortedIds(ids: Iterable<NodeId>): NodeId[] {
  return [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export class ProgressTracker {
  readonly voters = new Set<NodeId>();
  readonly learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  /** A voter's acknowledged index, made once: `committed` runs on every acknowledgement. */
  private readonly matchOf = (id: NodeId): bigint => this.progress.get(id)?.match ?? 0n;

  constructor(
    private readonly inflightMsgsMax: number,
    private readonly inflightBytesMax = 0,
  ) {}

  private newProgress(next: bigint, isLearner: boolean): Progress {
    return new Progress(next, this.inflightMsgsMax, isLearner, this.inflightBytesMax);
  }

  confState(): ConfState {
    return { voters: sortedIds(this.voters), learners: sortedIds(this.learners) };
  }

  isMember(id: NodeId): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  /** Replaces the configuration; every member gets fresh progress starting at `next`. */
  setConfig(cs: ConfState, next: bigint): void {
    this.voters.clear();
    this.learners.clear();
    this.progress.clear();
    for (const id of cs.voters) this.voters.add(id);
    for (const id of cs.learners) {
      assert(!this.voters.has(id), `member ${id} is both voter and learner`);
      this.learners.add(id);
    }
    for (const id of this.voters) this.progress.set(id, this.newProgress(next, false));
    for (const id of this.learners) this.progress.set(id, this.newProgress(next, true));
  }

  addVoter(id: NodeId, next: bigint): void {
    assert(!this.isMember(id), `addVoter: ${id} already a member`);
    this.voters.add(id);
    const pr = this.newProgress(next, false);
    // A new member counts as active so that check-quorum does not fail before it is reached.
    pr.recentActive = true;
    this.progress.set(id, pr);
  }

  addLearner(id: NodeId, next: bigint): void {
    assert(!this.isMember(id), `addLearner: ${id} already a member`);
    this.learners.add(id);
    const pr = this.newProgress(next, true);
    pr.recentActive = true;
    this.progress.set(id, pr);
  }

  promote(id: NodeId): void {
    assert(this.learners.has(id), `promote: ${id} is not a learner`);
    this.learners.delete(id);
    this.voters.add(id);
    const pr = this.progress.get(id);
    assert(pr !== undefined, `promote: ${id} has no progress`);
    pr.isLearner = false;
  }

  remove(id: NodeId): void {
    this.voters.delete(id);
    this.learners.delete(id);
    this.progress.delete(id);
    this.votes.delete(id);
  }

  committed(): bigint {
    return majorityIndex(this.voters, this.matchOf);
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  voteResult(): VoteResult {
    return voteResult(this.voters, this.votes);
  }

  /** True when a majority of voters (counting `self`) was heard from recently. */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    for (const id of this.voters)
      active.set(id, id === self || (this.progress.get(id)?.recentActive ?? false));
    return voteResult(this.voters, active) === VoteResult.Won;
  }
}
