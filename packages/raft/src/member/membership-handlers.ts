// The operator membership API (chainfire.v1.Cluster, and flaredb.v1.Cluster with identical
// messages) as plain async functions over plain objects shaped like the ts-proto messages
// (camelCase, bigint IDs). Each daemon binds them to its own generated service. Errors are the
// Raft service's typed errors (map them with raftErrorToGrpcStatus or the daemon kit).
import { InvalidArgumentError, MemberNotFoundError } from "../service/errors.js";
import { memberToRecord } from "../service/membership-wire.js";
import { deriveMemberId } from "./ids.js";
import type { MemberHeader, RunningMember } from "./start-member.js";

export interface ClusterMember {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface MemberAddRequest {
  /** 0 derives the ID from `name` and the cluster token. */
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface MemberAddResponse {
  header: MemberHeader | undefined;
  member: ClusterMember | undefined;
  members: ClusterMember[];
  /** True when the ID already existed and the request updated it. */
  updated: boolean;
}

export interface MemberRemoveRequest {
  id: bigint;
}

export interface MemberListResponse {
  header: MemberHeader | undefined;
  members: ClusterMember[];
}

export type MemberRemoveResponse = MemberListResponse;

export interface StatusResponse {
  header: MemberHeader | undefined;
  version: string;
  raftIndex: bigint;
  raftAppliedIndex: bigint;
  isLearner: boolean;
  dbSizeBytes: bigint;
  revision: bigint;
  compactRevision: bigint;
}

export interface LeaderTransferRequest {
  /** The target's ID, or 0 to name it with `targetName`. */
  targetId: bigint;
  targetName: string;
}

export interface LeaderTransferResponse {
  header: MemberHeader | undefined;
}

/** State-machine figures for Status (chainfire: revisions; flaredb: database size). */
export interface ExtraStatus {
  dbSizeBytes?: bigint;
  revision?: bigint;
  compactRevision?: bigint;
}

export interface MembershipHandlers {
  memberAdd(req: MemberAddRequest): Promise<MemberAddResponse>;
  memberRemove(req: MemberRemoveRequest): Promise<MemberRemoveResponse>;
  memberList(req?: unknown): Promise<MemberListResponse>;
  status(req?: unknown): Promise<StatusResponse>;
  leaderTransfer(req: LeaderTransferRequest): Promise<LeaderTransferResponse>;
}

/** The target of a leader transfer: its ID, or the member whose name is `targetName`. */
function transferTarget(member: RunningMember, req: LeaderTransferRequest): bigint {
  if (req.targetId !== 0n) return req.targetId;
  if (req.targetName === "") {
    throw new InvalidArgumentError("LeaderTransfer: give target_id or target_name (the member to lead)");
  }
  const found = member.raft.memberList().find((m) => m.name === req.targetName);
  if (found === undefined) {
    const names = member.raft
      .memberList()
      .map((m) => m.name)
      .join(", ");
    throw new MemberNotFoundError(0n, `no member is named "${req.targetName}" (members: ${names})`);
  }
  return found.id;
}

export function membershipHandlers(
  member: RunningMember,
  extraStatus?: () => ExtraStatus,
): MembershipHandlers {
  const raft = member.raft;
  const members = () => raft.memberList().map(memberToRecord);
  return {
    async memberAdd(req) {
      if (req.id === 0n && req.name === "") {
        throw new InvalidArgumentError(
          "MemberAdd: give id, or name to derive the ID from (with the cluster token)",
        );
      }
      const id = req.id !== 0n ? req.id : deriveMemberId(member.config.initialClusterToken, req.name);
      const r = await raft.upsertMember(id, {
        name: req.name,
        peerUrls: req.peerUrls,
        clientUrls: req.clientUrls,
        isLearner: req.isLearner,
      });
      return {
        header: member.header(),
        member: memberToRecord(r.member),
        members: members(),
        updated: r.updated,
      };
    },
    async memberRemove(req) {
      if (req.id === 0n) throw new InvalidArgumentError("MemberRemove: id must be the member's non-zero ID");
      await raft.removeMember(req.id);
      return { header: member.header(), members: members() };
    },
    async memberList() {
      return { header: member.header(), members: members() };
    },
    async status() {
      const s = raft.status();
      const extra = extraStatus?.() ?? {};
      return {
        header: member.header(),
        version: member.version,
        raftIndex: s.raftIndex,
        raftAppliedIndex: s.applied,
        // From the Raft configuration, not metadata (a joiner's first metadata is a guess).
        isLearner: raft.node.currentConfState().learners.includes(member.memberId),
        dbSizeBytes: extra.dbSizeBytes ?? 0n,
        revision: extra.revision ?? 0n,
        compactRevision: extra.compactRevision ?? 0n,
      };
    },
    async leaderTransfer(req) {
      await raft.transferLeader(transferTarget(member, req));
      return { header: member.header() };
    },
  };
}
