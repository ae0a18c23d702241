// Typed client factories. Every client built by one call shares one channel, as etcd's own clients
// do, so a test or tool opens one connection per endpoint.
import { type ChannelCredentials, type ClientOptions, credentials } from "@grpc/grpc-js";
import { ClusterClient as OperatorClusterClient } from "./gen/chainfire/v1/cluster.js";
import {
  AuthClient,
  ClusterClient,
  KVClient,
  LeaseClient,
  MaintenanceClient,
  WatchClient,
} from "./gen/etcd/etcdserverpb/rpc.js";
import { ElectionClient } from "./gen/etcd/v3electionpb/v3election.js";
import { LockClient } from "./gen/etcd/v3lockpb/v3lock.js";

export interface EtcdClients {
  kv: KVClient;
  watch: WatchClient;
  lease: LeaseClient;
  cluster: ClusterClient;
  maintenance: MaintenanceClient;
  /** Only Authenticate, which a client given a user calls first. */
  auth: AuthClient;
  /** etcd's server-side lock and election services (v3lockpb, v3electionpb). */
  lock: LockClient;
  election: ElectionClient;
}

export interface ChainfireClients extends EtcdClients {
  /** chainfire.v1.Cluster: the operator membership API. */
  operator: OperatorClusterClient;
  /** Closes the shared channel. */
  close(): void;
}

/**
 * Clients for one endpoint ("host:port"). Insecure credentials unless given, since the default dev
 * cluster listens on loopback without TLS.
 */
export function createClients(
  endpoint: string,
  channelCredentials: ChannelCredentials = credentials.createInsecure(),
  options: ClientOptions = {},
): ChainfireClients {
  const kv = new KVClient(endpoint, channelCredentials, options);
  // Passing the first client's channel makes the others share its connection.
  const shared = { ...options, channelOverride: kv.getChannel() };
  const clients: ChainfireClients = {
    kv,
    watch: new WatchClient(endpoint, channelCredentials, shared),
    lease: new LeaseClient(endpoint, channelCredentials, shared),
    cluster: new ClusterClient(endpoint, channelCredentials, shared),
    maintenance: new MaintenanceClient(endpoint, channelCredentials, shared),
    auth: new AuthClient(endpoint, channelCredentials, shared),
    lock: new LockClient(endpoint, channelCredentials, shared),
    election: new ElectionClient(endpoint, channelCredentials, shared),
    operator: new OperatorClusterClient(endpoint, channelCredentials, shared),
    close: () => kv.close(),
  };
  return clients;
}
