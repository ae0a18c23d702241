// What a follower does with a message of its current term.
import { minBigint } from "./assert.js";
import type { RaftCore } from "./raft-core.js";
import { type Message, MessageType, NONE } from "./types.js";

export function stepFollower(r: RaftCore, m: Message): void {
  switch (m.type) {
    case MessageType.Prop:
      if (r.lead === NONE) r.drop("no leader");
      if (r.config.disableProposalForwarding)
        r.drop("this member is not the leader and forwarding is disabled");
      r.send({ ...m, to: r.lead });
      return;
    case MessageType.App:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleAppendEntries(r, m);
      return;
    case MessageType.Heartbeat:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.log.commitTo(m.commit);
      r.send({ type: MessageType.HeartbeatResp, to: m.from, context: m.context });
      return;
    case MessageType.Snap:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleSnapshot(r, m);
      return;
    case MessageType.TransferLeader:
      if (r.lead === NONE) {
        r.config.logger.info({ id: r.id }, "no leader: dropping leadership transfer request");
        return;
      }
      r.send({ ...m, to: r.lead });
      return;
    case MessageType.TimeoutNow:
      // The leader asked us to take over: campaign at once, skipping pre-vote and leases.
      r.hup(true);
      return;
    case MessageType.ReadIndex:
      if (r.lead === NONE) r.drop("no leader to confirm a read");
      r.send({ ...m, to: r.lead });
      return;
    case MessageType.ReadIndexResp:
      r.readStates.push({ index: m.index, requestCtx: m.context });
      return;
    default:
      return;
  }
}

export function handleAppendEntries(r: RaftCore, m: Message): void {
  if (m.index < r.log.committed) {
    r.send({ type: MessageType.AppResp, to: m.from, index: r.log.committed });
    return;
  }
  const lastNewIndex = r.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
  if (lastNewIndex !== undefined) {
    r.send({ type: MessageType.AppResp, to: m.from, index: lastNewIndex });
    return;
  }
  // Fast backtracking: point the leader at the last index whose term is <= the term it probed
  // with, so it can skip a whole term of mismatching entries per round trip.
  const hint = r.log.findConflictByTerm(minBigint(m.index, r.log.lastIndex()), m.logTerm);
  r.send({
    type: MessageType.AppResp,
    to: m.from,
    index: m.index,
    reject: true,
    rejectHint: hint.index,
    logTerm: hint.term,
  });
}

export function handleSnapshot(r: RaftCore, m: Message): void {
  const snap = m.snapshot;
  if (snap === null) return;
  const { index, term, confState } = snap.metadata;
  if (index <= r.log.committed) {
    r.send({ type: MessageType.AppResp, to: m.from, index: r.log.committed });
    return;
  }
  if (r.log.matchTerm(index, term)) {
    // The log already holds the snapshot's last entry: only the commit index moves.
    r.log.commitTo(index);
    r.send({ type: MessageType.AppResp, to: m.from, index: r.log.committed });
    return;
  }
  r.log.restore(snap);
  r.tracker.setConfig(confState, r.log.lastIndex() + 1n);
  r.send({ type: MessageType.AppResp, to: m.from, index: r.log.lastIndex() });
}
