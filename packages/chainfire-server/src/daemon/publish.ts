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
    const { members } = await membership.memberList();
    const mine = members.find((m) => m.id === member.memberId);
    if (mine === undefined) return false; // not yet in the configuration this member knows
    const same = mine.name === name && mine.clientUrls.join(",") === clientUrls.join(",");
    if (same) return true;
    await membership.memberAdd({ ...mine, name, clientUrls: [...clientUrls] });
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
