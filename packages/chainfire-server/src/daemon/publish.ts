// A member publishes its own name and client URLs into the replicated member list after it starts
// (etcd does the same), so members added by peer URL alone (etcd's MemberAdd) get both, and a member
// restarted with new --advertise-client-urls shows them. It retries until a leader accepts it.
import type { Logger } from "@photoncloud/daemon";
import type { RunningMember } from "@photoncloud/raft";
import type { MembershipOps } from "./membership.js";

const RETRY_MS = 500;

export function publishAttributes(
  member: RunningMember,
  membership: MembershipOps,
  own: { name: string; clientUrls: readonly string[] },
  logger: Logger,
  shuttingDown: Promise<void>,
): void {
  let stopped = false;
  void shuttingDown.then(() => (stopped = true));
  const { name, clientUrls } = own;
  const attempt = async (): Promise<boolean> => {
    // Wait until this member's own log has made it a voter or a learner: before that its member
    // list may be the --initial-cluster guess, whose learner flag must never be sent back.
    const conf = member.raft.node.currentConfState();
    const isLearner = conf.learners.includes(member.memberId);
    if (!isLearner && !conf.voters.includes(member.memberId)) return false;
    const { members } = await membership.memberList();
    const mine = members.find((m) => m.id === member.memberId);
    if (mine === undefined) return false;
    const same = mine.name === name && mine.clientUrls.join(",") === clientUrls.join(",");
    if (same) return true;
    // Empty peer URLs keep the stored ones: this member's own view of them may be stale (an
    // operator may have replaced them while it was down), and it must not undo that.
    await membership.memberAdd({ id: mine.id, name, peerUrls: [], clientUrls: [...clientUrls], isLearner });
    logger.info({ name, clientUrls }, "published this member's name and client URLs");
    return true;
  };
  const loop = async () => {
    while (!stopped) {
      const done = await attempt().catch((err: unknown) => {
        logger.debug({ err }, "publishing member attributes failed; retrying");
        return false;
      });
      if (done) return;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
    }
  };
  void loop();
}
