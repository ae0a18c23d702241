// What the flaredb.v1 handlers need from the Raft layer: the shared `Replicated` facade plus two
// facts about this member's view of leadership, for the consistency levels that do not go through
// ReadIndex.
//
// For the Raft runtime: implement these on the facade (or an adapter around it).
//  - isLeader(): true while this member is leader in its current term AND (with check-quorum) has
//    heard from a quorum within the election timeout. WEAK reads are served only when it is true, so
//    a partitioned old leader must return false once it has stepped down or lost its quorum lease.
//  - lastContactMs(): milliseconds since this member last received a message from the leader of its
//    current term (0 on the leader itself, Infinity when it has never heard from one). NONE reads with
//    a freshness bound are refused when it exceeds the bound.
//  - leaderHint(): the leader's client URL when known, to tell clients where to go.

import type { Replicated } from "@photoncloud/raft";

export interface ReplicatedDb extends Replicated {
  isLeader(): boolean;
  lastContactMs(): number;
  leaderHint?(): string | undefined;
}
