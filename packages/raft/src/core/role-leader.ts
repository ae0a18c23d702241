// What a leader does with a message of its current term (and with local messages).
import { VoteResult, voteResult } from "./quorum.js";
import type { RaftCore } from "./raft-core.js";
import type { Progress } from "./progress.js";
import { READ_REQUESTS_PENDING_MAX } from "./read-only.js";
import { EntryType, type Message, MessageType, type NodeId, NONE, ConfChangeType } from "./types.js";

export function stepLeader(r: RaftCore, m: Message): void {
  switch (m.type) {
    case MessageType.Beat:
      r.bcastHeartbeat();
      return;
    case MessageType.CheckQuorum:
      checkQuorum(r);
      return;
    case MessageType.Prop:
      handleProposal(r, m);
      return;
    case MessageType.ReadIndex:
      handleReadIndex(r, m);
      return;
    default:
  }
  const pr = r.tracker.progress.get(m.from);
  if (pr === undefined) return;
  switch (m.type) {
    case MessageType.AppResp:
      handleAppendResponse(r, m, pr);
      return;
    case MessageType.HeartbeatResp:
      handleHeartbeatResponse(r, m, pr);
      return;
    case MessageType.SnapStatus:
      if (pr.state !== "snapshot") return;
      if (m.reject) pr.pendingSnapshot = 0n;
      pr.becomeProbe();
      // Wait for the follower's next response before probing from the new position.
      pr.probeSent = true;
      return;
    case MessageType.Unreachable:
      if (pr.state === "replicate") pr.becomeProbe();
      return;
    case MessageType.TransferLeader:
      handleTransferLeader(r, m.from, pr);
      return;
    default:
  }
}

function checkQuorum(r: RaftCore): void {
  const active = r.tracker.quorumActive(r.id);
  for (const [id, pr] of r.tracker.progress) if (id !== r.id) pr.recentActive = false;
  if (!active) {
    r.config.logger.warn({ id: r.id, term: r.term }, "lost contact with a quorum: stepping down");
    r.becomeFollower(r.term, NONE);
  }
}

function handleProposal(r: RaftCore, m: Message): void {
  if (m.entries.length === 0) r.drop("empty proposal");
  if (!r.tracker.progress.has(r.id)) r.drop("the leader is being removed from the configuration");
  if (r.leadTransferee !== NONE) r.drop("leadership transfer in progress");
  const confChanges = m.entries.filter((e) => e.type === EntryType.ConfChange);
  if (confChanges.length > 1) r.drop("only one membership change per proposal");
  const first = confChanges[0];
  // UpdateNode changes no configuration (it carries member metadata only): it neither waits for
  // nor blocks a pending change, so members can publish their URLs while operators reconfigure.
  const changesConfig =
    first !== undefined && r.decodeProposedConfChange(first).type !== ConfChangeType.UpdateNode;
  if (first !== undefined && changesConfig) {
    if (r.pendingConfIndex > r.log.applied) r.drop("another membership change is pending");
    const cc = r.decodeProposedConfChange(first);
    if (cc.type === ConfChangeType.AddLearnerNode && r.tracker.voters.has(cc.nodeId)) {
      r.drop(
        `member ${cc.nodeId} is a voter; demoting a voter to learner is not supported (remove it first)`,
      );
    }
  }
  if (!r.appendEntries(m.entries)) r.drop("too much uncommitted data (uncommittedBytesMax)");
  if (changesConfig) r.pendingConfIndex = r.log.lastIndex();
  r.bcastAppend();
}

function handleReadIndex(r: RaftCore, m: Message): void {
  // Until this leader commits an entry of its own term, its commit index may be behind. A lone
  // voter waits too (etcd-io/raft answers it at once): its commit index is not written on its own,
  // so after a crash it restarts below writes it had acknowledged, until its first entry commits.
  if (!r.committedEntryInCurrentTerm()) {
    if (r.pendingReadIndexMessages.length >= READ_REQUESTS_PENDING_MAX) r.drop("too many pending reads");
    r.pendingReadIndexMessages.push(m);
    return;
  }
  if (r.tracker.voters.size === 1 && r.tracker.voters.has(r.id)) {
    r.respondToRead(m.from, m.context, r.log.committed);
    return;
  }
  if (!r.readOnly.addRequest(r.log.committed, m.from, m.context)) {
    r.config.logger.warn({ id: r.id }, "read request ignored: same context already pending or queue full");
    return;
  }
  r.readOnly.recvAck(r.id, m.context);
  // The heartbeat round goes out at the next ready(), confirming every read queued until then.
  r.readHeartbeatPending = true;
}

function handleAppendResponse(r: RaftCore, m: Message, pr: Progress): void {
  pr.recentActive = true;
  if (m.reject) {
    let nextProbeIndex = m.rejectHint;
    if (m.logTerm > 0n) nextProbeIndex = r.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
    if (pr.maybeDecrTo(m.index, nextProbeIndex)) {
      if (pr.state === "replicate") pr.becomeProbe();
      r.maybeSendAppend(m.from, true);
    }
    return;
  }
  const wasPaused = pr.isPaused();
  if (!pr.maybeUpdate(m.index)) return;
  if (pr.state === "probe") {
    pr.becomeReplicate();
  } else if (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot) {
    pr.becomeProbe();
    pr.becomeReplicate();
  } else if (pr.state === "replicate") {
    pr.inflights.freeLE(m.index);
  }
  if (r.maybeCommit()) r.bcastAppend();
  else if (wasPaused) r.maybeSendAppend(m.from, true);
  // Fill the window; bounded by inflightMsgsMax because each send adds an inflight.
  while (r.maybeSendAppend(m.from, false)) {}
  if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) r.sendTimeoutNow(m.from);
}

function handleHeartbeatResponse(r: RaftCore, m: Message, pr: Progress): void {
  pr.recentActive = true;
  pr.probeSent = false;
  if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
  if (pr.match < r.log.lastIndex()) r.maybeSendAppend(m.from, true);
  if (m.context.length === 0) return;
  const acks = r.readOnly.recvAck(m.from, m.context);
  if (acks === undefined) return;
  const votes = new Map<NodeId, boolean>();
  for (const id of acks) votes.set(id, true);
  if (voteResult(r.tracker.voters, votes) !== VoteResult.Won) return;
  for (const req of r.readOnly.advance(m.context)) r.respondToRead(req.from, req.ctx, req.index);
}

function handleTransferLeader(r: RaftCore, transferee: NodeId, pr: Progress): void {
  if (pr.isLearner) {
    r.config.logger.info({ id: r.id, transferee }, "ignoring leadership transfer to a learner");
    return;
  }
  if (r.leadTransferee !== NONE) {
    if (r.leadTransferee === transferee) return;
    r.abortLeaderTransfer();
  }
  if (transferee === r.id) return;
  // The transfer must finish within one election timeout, counted from now.
  r.electionElapsed = 0;
  r.leadTransferee = transferee;
  if (pr.match === r.log.lastIndex()) r.sendTimeoutNow(transferee);
  else r.maybeSendAppend(transferee, true);
}
