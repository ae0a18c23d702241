// Public API of @photoncloud/chainfire-api: the generated etcd v3 wire types (etcdserverpb, mvccpb),
// chainfire.v1 (operator Cluster service and the internal MVCC command), and typed client factories.
export * as chainfirev1 from "./gen/chainfire/v1/cluster.js";
export * as command from "./gen/chainfire/v1/mvcc_command.js";
export * as etcd from "./gen/etcd/etcdserverpb/rpc.js";
export * as mvccpb from "./gen/etcd/mvccpb/kv.js";
export * as v3election from "./gen/etcd/v3electionpb/v3election.js";
export * as v3lock from "./gen/etcd/v3lockpb/v3lock.js";
export { type ChainfireClients, createClients, type EtcdClients } from "./clients.js";
