// What a candidate or pre-candidate does with a message of its current term.
import { handleAppendEntries, handleSnapshot } from "./role-follower.js";
import type { RaftCore } from "./raft-core.js";
import { type Message, MessageType, StateRole } from "./types.js";

export function stepCandidate(r: RaftCore, m: Message): void {
  const myVoteResp = r.role === StateRole.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
  switch (m.type) {
    case MessageType.Prop:
      r.drop("no leader (election in progress)");
      return;
    case MessageType.ReadIndex:
      r.drop("no leader to confirm a read (election in progress)");
      return;
    case MessageType.App:
      r.becomeFollower(m.term, m.from);
      handleAppendEntries(r, m);
      return;
    case MessageType.Heartbeat:
      r.becomeFollower(m.term, m.from);
      r.log.commitTo(m.commit);
      r.send({ type: MessageType.HeartbeatResp, to: m.from, context: m.context });
      return;
    case MessageType.Snap:
      r.becomeFollower(m.term, m.from);
      handleSnapshot(r, m);
      return;
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      // A stale answer from an earlier (pre-)campaign is ignored.
      if (m.type === myVoteResp) r.pollAndAct(m.from, !m.reject);
      return;
    default:
      return;
  }
}
