// The option group every Raft daemon (chainfire, flaredb) spreads into its own options: etcd's
// member flags with etcd's meanings, plus client/peer TLS and logging from the daemon kit.
import {
  type ConfigOf,
  clientTlsOptions,
  defineOptions,
  logOptions,
  peerTlsOptions,
  tlsExtraOptions,
} from "@photoncloud/daemon";

export interface MemberPorts {
  /** Default port of --listen-client-urls (etcd: 2379). */
  client: number;
  /** Default port of --listen-peer-urls (etcd: 2380). */
  peer: number;
  /** Default port of --listen-metrics-urls (etcd: 2381). */
  metrics: number;
}

/**
 * Options whose etcd default is another option's value (advertise URLs = listen URLs, initial
 * cluster = this member) have no static default here: read them through `resolveMemberUrls`.
 */
export function memberOptions(envPrefix: string, ports: MemberPorts) {
  const env = (name: string) => `${envPrefix}${name}`;
  return defineOptions({
    name: {
      flag: "name",
      env: env("NAME"),
      type: "string",
      default: "default",
      description: "human-readable name of this member (with the cluster token it determines the member ID)",
    },
    dataDir: {
      flag: "data-dir",
      env: env("DATA_DIR"),
      type: "path",
      required: true,
      example: "/var/lib/photoncloud/member",
      description: "data directory (Raft log under raft/, the state machine beside it)",
    },
    memberId: {
      flag: "member-id",
      env: env("MEMBER_ID"),
      type: "uint64",
      description: "explicit member ID (only when joining with --initial-cluster-state existing)",
    },
    listenClientUrls: {
      flag: "listen-client-urls",
      env: env("LISTEN_CLIENT_URLS"),
      type: "url-list",
      default: `http://127.0.0.1:${ports.client}`,
      description: "URLs to serve client requests on",
    },
    advertiseClientUrls: {
      flag: "advertise-client-urls",
      env: env("ADVERTISE_CLIENT_URLS"),
      type: "url-list",
      description: "client URLs announced to the cluster (default: --listen-client-urls)",
    },
    listenPeerUrls: {
      flag: "listen-peer-urls",
      env: env("LISTEN_PEER_URLS"),
      type: "url-list",
      default: `http://127.0.0.1:${ports.peer}`,
      description: "URLs to serve Raft peer traffic on",
    },
    initialAdvertisePeerUrls: {
      flag: "initial-advertise-peer-urls",
      env: env("INITIAL_ADVERTISE_PEER_URLS"),
      type: "url-list",
      description: "peer URLs announced to the cluster (default: --listen-peer-urls)",
    },
    listenMetricsUrls: {
      flag: "listen-metrics-urls",
      env: env("LISTEN_METRICS_URLS"),
      type: "url-list",
      default: `http://127.0.0.1:${ports.metrics}`,
      description: "URLs to serve /metrics, /health and /version on",
    },
    initialCluster: {
      flag: "initial-cluster",
      env: env("INITIAL_CLUSTER"),
      type: "string",
      example: "n1=http://127.0.0.1:2380,n2=http://127.0.0.2:2380,n3=http://127.0.0.3:2380",
      description:
        "name=peer-url list of the initial members (default: <name>=<initial-advertise-peer-urls>)",
    },
    initialClusterState: {
      flag: "initial-cluster-state",
      env: env("INITIAL_CLUSTER_STATE"),
      type: "enum",
      values: ["new", "existing"],
      default: "new",
      description: "new: bootstrap a cluster; existing: join a running cluster (after member add)",
    },
    initialClusterToken: {
      flag: "initial-cluster-token",
      env: env("INITIAL_CLUSTER_TOKEN"),
      type: "string",
      default: "photoncloud-cluster",
      description: "token unique to this cluster (member and cluster IDs derive from it)",
    },
    heartbeatIntervalMs: {
      flag: "heartbeat-interval",
      env: env("HEARTBEAT_INTERVAL"),
      type: "duration-ms",
      default: 100,
      min: 1,
      description: "time between leader heartbeats (ms), also the Raft tick",
    },
    electionTimeoutMs: {
      flag: "election-timeout",
      env: env("ELECTION_TIMEOUT"),
      type: "duration-ms",
      default: 1000,
      min: 1,
      description: "time without a leader before an election (ms); at least 5 heartbeat intervals",
    },
    snapshotCount: {
      flag: "snapshot-count",
      env: env("SNAPSHOT_COUNT"),
      type: "int",
      default: 100_000,
      min: 1,
      description: "applied entries between snapshots (the log is compacted behind each snapshot)",
    },
    maxRequestBytes: {
      flag: "max-request-bytes",
      env: env("MAX_REQUEST_BYTES"),
      type: "bytes",
      default: "1.5MiB",
      min: 1,
      description: "largest client request accepted",
    },
    ...clientTlsOptions(envPrefix),
    ...peerTlsOptions(envPrefix),
    ...tlsExtraOptions(envPrefix),
    ...logOptions(envPrefix),
  });
}

/**
 * What the member kit reads of a daemon's config. The metrics listener is the daemon's own affair
 * (chainfire, as etcd, opens none by default), so a daemon may redefine that option.
 */
export type MemberConfig = Omit<ConfigOf<ReturnType<typeof memberOptions>>, "listenMetricsUrls">;
