// Membership operations and leader transfer answered by any member: a member that is not the leader
// relays them to the leader's chainfire.v1.Cluster on its peer URL (served there, next to RaftPeer,
// by the local handlers only, so a relay never relays again). Reads (list, status) stay local.
import { Metadata, type ServiceError } from "@grpc/grpc-js";
import type { chainfirev1 } from "@photoncloud/chainfire-api";
import { type GrpcStatus, grpcError } from "@photoncloud/daemon";
import type { LeaderClients } from "./member-runtime.js";
import type { MembershipOps } from "./membership.js";

const RELAY_DEADLINE_MS = 15_000;

export function forwardingMembership(local: MembershipOps, leader: LeaderClients): MembershipOps {
  const relay =
    <Req, Res>(method: "memberAdd" | "memberRemove" | "leaderTransfer", serve: (req: Req) => Promise<Res>) =>
    async (req: Req): Promise<Res> => {
      const client = leader.operatorClient();
      if (client === null) return serve(req);
      return new Promise<Res>((resolve, reject) => {
        const fn = client[method] as unknown as (
          req: Req,
          metadata: Metadata,
          options: { deadline: number },
          callback: (err: ServiceError | null, res: Res) => void,
        ) => void;
        fn.call(client, req, new Metadata(), { deadline: Date.now() + RELAY_DEADLINE_MS }, (err, res) =>
          err ? reject(grpcError(err.code as GrpcStatus, err.details)) : resolve(res),
        );
      });
    };
  return {
    memberAdd: relay("memberAdd", (req: chainfirev1.MemberAddRequest) => local.memberAdd(req)),
    memberRemove: relay("memberRemove", (req: chainfirev1.MemberRemoveRequest) => local.memberRemove(req)),
    leaderTransfer: relay("leaderTransfer", (req: chainfirev1.LeaderTransferRequest) =>
      local.leaderTransfer(req),
    ),
    memberList: () => local.memberList(),
    status: () => local.status(),
  };
}
