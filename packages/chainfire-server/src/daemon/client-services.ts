// The services on the client URLs: etcd's KV, Watch, Lease, Maintenance, Cluster, Lock and Election, plus
// chainfire.v1.Cluster (the operator contract). Learners answer only Status and serializable Range,
// like etcd's learner interceptor; every other call gets etcd's "rpc not supported for learner".
import { type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, status } from "@grpc/grpc-js";
import { chainfirev1, etcd, v3election, v3lock } from "@photoncloud/chainfire-api";
import {
  countingMessageBytes,
  DomainError,
  type GrpcServiceRegistration,
  type GrpcStatus,
  grpcError as kitGrpcError,
  isMappedGrpcError,
  type MessageByteCounts,
  reusingEncoder,
} from "@photoncloud/daemon";
import { raftErrorToGrpcStatus } from "@photoncloud/raft";
import { type EtcdApiContext, responseHeader } from "../api/context.js";
import { electionHandlers, lockHandlers } from "../api/concurrency-services.js";
import { unary } from "../api/grpc-util.js";
import { guardEtcdService } from "../api/guard.js";
import { authHandlers } from "../api/server.js";
import { kvHandlers } from "../api/kv-service.js";
import { leaseHandlers } from "../api/lease-service.js";
import { maintenanceHandlers } from "../api/maintenance-service.js";
import { type WatchServiceOptions, watchHandlers } from "../api/watch-service.js";
import { chainfireError } from "../errors.js";
import { etcdClusterHandlers } from "./etcd-cluster-service.js";
import type { MembershipOps } from "./membership.js";

export interface ClientServiceDeps {
  readonly ctx: EtcdApiContext;
  readonly membership: MembershipOps;
  readonly clusterToken: string;
  readonly watch?: WatchServiceOptions;
  /** Adds up the bytes of every message received and sent (etcd_network_client_grpc_*_bytes_total). */
  readonly messageBytes?: MessageByteCounts;
}

export function clientServices(deps: ClientServiceDeps): GrpcServiceRegistration[] {
  const { ctx } = deps;
  const header = () => responseHeader(ctx, ctx.store.currentRevision());
  const maintenance: etcd.MaintenanceServer = {
    ...maintenanceHandlers(ctx),
    moveLeader: unary(async (req: etcd.MoveLeaderRequest) => {
      if (req.targetID === 0n) throw chainfireError("BAD_LEADER_TRANSFEREE");
      try {
        await deps.membership.leaderTransfer({ targetId: req.targetID, targetName: "" });
      } catch (err) {
        // etcd's word for a target that is not a voting member of this cluster: unknown, or a learner.
        const code = (err as { code?: unknown }).code;
        const notVoter =
          code === "RAFT_MEMBER_NOT_FOUND" ||
          code === "RAFT_INVALID_ARGUMENT" ||
          (isMappedGrpcError(err) && (code === status.NOT_FOUND || code === status.INVALID_ARGUMENT));
        if (notVoter) throw chainfireError("BAD_LEADER_TRANSFEREE");
        throw err;
      }
      return { header: undefined };
    }),
  };
  const etcdServices: [ServiceDefinition, object][] = [
    [kvDefinition, kvHandlers(ctx)],
    [etcd.WatchService, watchHandlers(ctx, deps.watch)],
    [etcd.LeaseService, leaseHandlers(ctx)],
    [etcd.MaintenanceService, maintenance],
    [etcd.AuthService, authHandlers()],
    [v3lock.LockService, lockHandlers(ctx)],
    [v3election.ElectionService, electionHandlers(ctx)],
    [
      etcd.ClusterService,
      etcdClusterHandlers({ membership: deps.membership, clusterToken: deps.clusterToken, header }),
    ],
  ];
  const counted = (definition: ServiceDefinition) =>
    deps.messageBytes === undefined ? definition : countingMessageBytes(definition, deps.messageBytes);
  return [
    ...etcdServices.map(([definition, implementation]) => ({
      definition: counted(definition),
      implementation: guardEtcdService(definition, implementation, ctx.member),
      // The KV calls are the hot ones: served by the daemon kit's lean unary path.
      ...(definition === kvDefinition ? { leanUnaryMethods: ["range", "put", "deleteRange", "txn"] } : {}),
    })),
    { definition: counted(chainfirev1.ClusterService), implementation: operatorHandlers(deps.membership) },
  ];
}

/** etcdserverpb.KV with its answers serialised through reused, pooled writers (see reusingEncoder). */
const kvDefinition = {
  ...etcd.KVService,
  range: { ...etcd.KVService.range, responseSerialize: reusingEncoder(etcd.RangeResponse) },
  put: { ...etcd.KVService.put, responseSerialize: reusingEncoder(etcd.PutResponse) },
  deleteRange: { ...etcd.KVService.deleteRange, responseSerialize: reusingEncoder(etcd.DeleteRangeResponse) },
  txn: { ...etcd.KVService.txn, responseSerialize: reusingEncoder(etcd.TxnResponse) },
};

/** chainfire.v1.Cluster: the kit's handlers with the Raft layer's own error mapping. */
export function operatorHandlers(membership: MembershipOps): chainfirev1.ClusterServer {
  const mapped = <Req, Res>(fn: (req: Req) => Promise<Res>) =>
    unaryRaft(async (req: Req) => {
      try {
        return await fn(req);
      } catch (err) {
        if (isMappedGrpcError(err) || err instanceof DomainError) throw err;
        const { code, details } = raftErrorToGrpcStatus(err);
        throw kitGrpcError(code as GrpcStatus, details);
      }
    });
  return {
    memberAdd: mapped((req: chainfirev1.MemberAddRequest) => membership.memberAdd(req)),
    memberRemove: mapped((req: chainfirev1.MemberRemoveRequest) => membership.memberRemove(req)),
    memberList: mapped(() => membership.memberList()),
    status: mapped(() => membership.status()),
    leaderTransfer: mapped((req: chainfirev1.LeaderTransferRequest) => membership.leaderTransfer(req)),
  };
}

/** A unary adapter whose errors are already gRPC errors (so they skip the etcd mapping). */
function unaryRaft<Req, Res>(
  fn: (request: Req) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    fn(call.request).then(
      (response) => callback(null, response),
      (err: unknown) => callback(err as never),
    );
  };
}
