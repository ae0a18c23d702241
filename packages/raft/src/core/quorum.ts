// Majority arithmetic over a set of voters: the committed index and the outcome of a vote.
import type { NodeId } from "./types.js";

export const VoteResult = { Pending: 0, Lost: 1, Won: 2 } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

/**
 * Scratch space for `majorityIndex`, reused: the leader computes the index on every acknowledgement,
 * and a fresh array plus `Array.prototype.sort` per call made this one of the leader's larger
 * allocation sites per write (etcd-io/raft sorts on a stack array for the same reason).
 */
const scratch: bigint[] = [];

/**
 * The largest index that a majority of `voters` has acknowledged. An empty configuration commits
 * nothing (returns 0), so a member outside every configuration never advances the commit index.
 */
export function majorityIndex(voters: ReadonlySet<NodeId>, matchOf: (id: NodeId) => bigint): bigint {
  const n = voters.size;
  if (n === 0) return 0n;
  // Insertion sort, descending: a configuration has a handful of voters.
  let k = 0;
  for (const id of voters) {
    const match = matchOf(id);
    let j = k++;
    while (j > 0 && scratch[j - 1]! < match) {
      scratch[j] = scratch[j - 1]!;
      j--;
    }
    scratch[j] = match;
  }
  // Sorted descending, the (n/2)-th element is acknowledged by floor(n/2)+1 voters.
  return scratch[n >> 1]!;
}

/** Outcome of a vote among `voters`, given the answers received so far (absent = not yet answered). */
export function voteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const quorum = Math.floor(voters.size / 2) + 1;
  if (granted >= quorum) return VoteResult.Won;
  if (granted + missing >= quorum) return VoteResult.Pending;
  return VoteResult.Lost;
}
