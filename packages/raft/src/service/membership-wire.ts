// Membership operations on the peer wire (RaftPeer.ChangeMembership): conversions between the
// layer's types and the protobuf messages, and errors carried as stable codes both ways.
import { RaftError } from "../core/errors.js";
import type { NodeId } from "../core/types.js";
import type * as pb from "../gen/raft/v1/raft.js";
import { errorFromCode, MemberNotFoundError } from "./errors.js";
import type { MemberInfo } from "./members.js";

export function memberToRecord(m: MemberInfo): pb.MemberRecord {
  return {
    id: m.id,
    name: m.name,
    peerUrls: [...m.peerUrls],
    clientUrls: [...m.clientUrls],
    isLearner: m.isLearner,
  };
}

export function memberFromRecord(r: pb.MemberRecord): MemberInfo {
  return { id: r.id, name: r.name, peerUrls: r.peerUrls, clientUrls: r.clientUrls, isLearner: r.isLearner };
}

/** A successful response; fields not given are empty. */
export function membershipOk(fields: Partial<pb.MembershipResponse>): pb.MembershipResponse {
  return {
    errorCode: "",
    errorMessage: "",
    leaderHint: 0n,
    member: undefined,
    updated: false,
    index: 0n,
    ...fields,
  };
}

/** The refusal of a membership operation, with the error's stable code and message. */
export function membershipRefusal(err: unknown, leader: NodeId): pb.MembershipResponse {
  return membershipOk({
    errorCode: err instanceof RaftError ? err.code : "RAFT_INTERNAL",
    errorMessage: err instanceof Error ? err.message : String(err),
    leaderHint: leader,
  });
}

/** The member ID a request is about (for errors that carry it). */
function subjectOf(req: pb.MembershipRequest): NodeId {
  return req.add?.member?.id ?? req.remove?.id ?? req.transfer?.target ?? req.publish?.id ?? 0n;
}

/** Rebuilds the leader's typed error on the forwarding member. */
export function membershipError(res: pb.MembershipResponse, req: pb.MembershipRequest): Error {
  if (res.errorCode === "RAFT_MEMBER_NOT_FOUND")
    return new MemberNotFoundError(subjectOf(req), res.errorMessage);
  return errorFromCode(res.errorCode, res.errorMessage, res.leaderHint);
}
