// Majority arithmetic over a set of voters: the committed index and the outcome of a vote.
import type { NodeId } from "./types.js";

export const VoteResult = { Pending: 0, Lost: 1, Won: 2 } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

/**
 * The largest index that a majority of `voters` has acknowledged. An empty configuration commits
 * nothing (returns 0), so a member outside every configuration never advances the commit index.
 */
export function majorityIndex(voters: ReadonlySet<NodeId>, matchOf: (id: NodeId) => bigint): bigint {
  if (voters.size === 0) return 0n;
  const matches: bigint[] = [];
  for (const id of voters) matches.push(matchOf(id));
  matches.sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
  // Sorted descending, the (n/2)-th element is acknowledged by floor(n/2)+1 voters.
  return matches[Math.floor(voters.size / 2)] ?? 0n;
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
