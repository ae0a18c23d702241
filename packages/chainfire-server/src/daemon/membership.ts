// The shapes of the member kit's membership handlers (chainfire.v1.Cluster as plain async functions).
// chainfire binds them twice: as chainfire.v1.Cluster, and behind etcd's Cluster API.
import type { chainfirev1 } from "@photoncloud/chainfire-api";

export interface MembershipOps {
  memberAdd(req: chainfirev1.MemberAddRequest): Promise<chainfirev1.MemberAddResponse>;
  memberRemove(req: chainfirev1.MemberRemoveRequest): Promise<chainfirev1.MemberRemoveResponse>;
  memberList(): Promise<chainfirev1.MemberListResponse>;
  status(): Promise<chainfirev1.StatusResponse>;
  leaderTransfer(req: chainfirev1.LeaderTransferRequest): Promise<chainfirev1.LeaderTransferResponse>;
}
