// etcd's "require leader" contract (clientv3.WithRequireLeader sends `hasleader: true`): a member
// that knows no leader refuses such calls with "no leader", and ends such streams once it has gone
// three leader checks in a row (one per election timeout) without one, so the client moves on to
// another member instead of waiting on a cut-off one.
import type { Metadata } from "@grpc/grpc-js";
import type { EtcdApiContext } from "./context.js";

/** Checks in a row without a leader that end a stream requiring one (etcd's maxNoLeaderCnt). */
const NO_LEADER_CHECKS_MAX = 3;

export function requiresLeader(call: { metadata: Metadata }): boolean {
  return call.metadata.get("hasleader").some((v) => v.toString() === "true");
}

/** Calls `onLost` once the member has had no leader for three checks in a row; returns a stop. */
export function watchForLeaderLoss(ctx: EtcdApiContext, onLost: () => void): () => void {
  let withoutLeader = 0;
  const timer = setInterval(() => {
    withoutLeader = ctx.member.leaderId() === 0n ? withoutLeader + 1 : 0;
    if (withoutLeader >= NO_LEADER_CHECKS_MAX) {
      clearInterval(timer);
      onLost();
    }
  }, ctx.leaderCheckMs ?? 1000);
  timer.unref();
  return () => clearInterval(timer);
}
