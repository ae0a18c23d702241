// etcdserverpb.Cluster mapped onto the membership contract. etcd's MemberAdd carries no name, so the
// new member's ID is derived from the cluster token and its peer URLs; the joining daemon finds that
// ID by its peer URL (see join-discovery.ts), as etcd's joining members do. Update and Promote are
// upserts of the same ID. Errors use etcd's texts, so etcdctl prints what it prints against etcd.
import type { chainfirev1, etcd } from "@photoncloud/chainfire-api";
import { parseUrl } from "@photoncloud/daemon";
import { deriveMemberId } from "@photoncloud/raft";
import { chainfireError } from "../errors.js";
import { unary } from "../api/grpc-util.js";
import type { MembershipOps } from "./membership.js";

export interface EtcdClusterDeps {
  readonly membership: MembershipOps;
  readonly clusterToken: string;
  /** The etcd response header for this member (cluster, member, revision, term). */
  header(): etcd.ResponseHeader;
}

export function etcdClusterHandlers(withRevision: EtcdClusterDeps): etcd.ClusterServer {
  // etcd's Cluster answers carry no revision in their header (cluster, member and term only).
  const deps = { ...withRevision, header: () => ({ ...withRevision.header(), revision: 0n }) };
  return {
    memberAdd: unary((req: etcd.MemberAddRequest) => memberAdd(deps, req)),
    memberRemove: unary(async (req: etcd.MemberRemoveRequest) => {
      await requireMember(deps, req.ID);
      const res = await deps.membership.memberRemove({ id: req.ID });
      return { header: deps.header(), members: res.members.map(toEtcdMember) };
    }),
    memberUpdate: unary((req: etcd.MemberUpdateRequest) => memberUpdate(deps, req)),
    memberList: unary(async () => {
      const res = await deps.membership.memberList();
      return { header: deps.header(), members: res.members.map(toEtcdMember) };
    }),
    memberPromote: unary(async (req: etcd.MemberPromoteRequest) => {
      const member = await requireMember(deps, req.ID);
      // etcd asks whether the member is in sync with the leader before whether it is a learner. A
      // member that has never started (no name published) holds none of the log: refused at once,
      // as etcd refuses it, where a learner that has started is given time to catch up.
      if (member.name === "") throw chainfireError("LEARNER_NOT_READY");
      if (!member.isLearner) throw chainfireError("MEMBER_NOT_LEARNER");
      const res = await deps.membership.memberAdd({ ...member, isLearner: false });
      return { header: deps.header(), members: res.members.map(toEtcdMember) };
    }),
  };
}

/** The ID etcd's MemberAdd gives a member: derived from the token and its sorted peer URLs. */
export function memberIdForPeerUrls(clusterToken: string, peerUrls: readonly string[]): bigint {
  return deriveMemberId(clusterToken, `peer-urls:${[...peerUrls].sort().join(",")}`);
}

async function memberAdd(deps: EtcdClusterDeps, req: etcd.MemberAddRequest): Promise<etcd.MemberAddResponse> {
  const peerUrls = checkUrls(req.peerURLs);
  const current = (await deps.membership.memberList()).members;
  // etcd's strict reconfiguration check comes before what the request itself has wrong.
  checkStartedVoters(current, req.isLearner);
  if (current.some((m) => m.peerUrls.some((u) => peerUrls.includes(u))))
    throw chainfireError("PEER_URL_EXIST");
  const id = memberIdForPeerUrls(deps.clusterToken, peerUrls);
  if (current.some((m) => m.id === id)) throw chainfireError("MEMBER_EXIST");
  // etcd 3.4 admits one learner at a time (maxLearners); chainfire.v1's MemberAdd is not limited.
  if (req.isLearner && current.some((m) => m.isLearner)) throw chainfireError("TOO_MANY_LEARNERS");
  const res = await deps.membership.memberAdd({
    id,
    name: "",
    peerUrls,
    clientUrls: [],
    isLearner: req.isLearner,
  });
  return {
    header: deps.header(),
    member: toEtcdMember(res.member ?? { id, name: "", peerUrls, clientUrls: [], isLearner: req.isLearner }),
    members: res.members.map(toEtcdMember),
  };
}

/**
 * etcd's strict reconfiguration check on what the member list shows: a new voter needs a quorum of
 * the voters it joins (itself counted among them, not as started) to have started, that is
 * published their names; and no member is added while a voter has never started, since etcd wants
 * every voter connected. A voter that started and is down now is refused by the membership layer's
 * own check, which sees the peers.
 */
function checkStartedVoters(current: readonly chainfirev1.Member[], isLearner: boolean): void {
  const voters = current.filter((m) => !m.isLearner);
  const started = voters.filter((m) => m.name !== "").length;
  // As etcd, a lone started voter may take a second voter (how a one-member cluster grows).
  const growingFromOne = voters.length === 1 && started === 1;
  if (!isLearner && !growingFromOne && started < Math.floor((voters.length + 1) / 2) + 1)
    throw chainfireError("NOT_ENOUGH_STARTED");
  if (started < voters.length) throw chainfireError("UNHEALTHY");
}

async function memberUpdate(
  deps: EtcdClusterDeps,
  req: etcd.MemberUpdateRequest,
): Promise<etcd.MemberUpdateResponse> {
  const current = (await deps.membership.memberList()).members;
  // As etcd, an unknown member first.
  const member = memberIn(current, req.ID);
  const peerUrls = checkUrls(req.peerURLs);
  const taken = current.some((m) => m.id !== req.ID && m.peerUrls.some((u) => peerUrls.includes(u)));
  if (taken) throw chainfireError("PEER_URL_EXIST");
  const res = await deps.membership.memberAdd({ ...member, peerUrls });
  return { header: deps.header(), members: res.members.map(toEtcdMember) };
}

async function requireMember(deps: EtcdClusterDeps, id: bigint): Promise<chainfirev1.Member> {
  return memberIn((await deps.membership.memberList()).members, id);
}

function memberIn(members: readonly chainfirev1.Member[], id: bigint): chainfirev1.Member {
  const member = members.find((m) => m.id === id);
  if (member === undefined) throw chainfireError("MEMBER_NOT_FOUND");
  return member;
}

/** etcd refuses an empty list or any URL that is not scheme://host:port. */
function checkUrls(urls: readonly string[]): string[] {
  if (urls.length === 0) throw chainfireError("MEMBER_BAD_URLS");
  try {
    return urls.map((u) => parseUrl(u).href);
  } catch {
    throw chainfireError("MEMBER_BAD_URLS");
  }
}

export function toEtcdMember(m: chainfirev1.Member): etcd.Member {
  return {
    ID: m.id,
    name: m.name,
    peerURLs: [...m.peerUrls],
    clientURLs: [...m.clientUrls],
    isLearner: m.isLearner,
  };
}
