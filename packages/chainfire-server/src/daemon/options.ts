// chainfire's options: the member kit's etcd-named group (name, data dir, URLs, cluster bootstrap,
// Raft timing, TLS, logging) plus the flags only the KV store has. The same keys work in the TOML
// file given by --config-file and as CHAINFIRE_* environment variables.
import { defineOptions } from "@photoncloud/daemon";
import { memberOptions } from "@photoncloud/raft";

/** etcd's default ports: client 2379, peer 2380, metrics 2381. */
export const DEFAULT_PORTS = { client: 2379, peer: 2380, metrics: 2381 } as const;

export const chainfireOptions = defineOptions({
  ...memberOptions("CHAINFIRE_", DEFAULT_PORTS),
  // As etcd's: no metrics listener unless asked for (the client URLs serve /metrics, /health and
  // /version), so members started on one host with etcd's flags alone do not clash on one port.
  listenMetricsUrls: {
    flag: "listen-metrics-urls",
    env: "CHAINFIRE_LISTEN_METRICS_URLS",
    type: "url-list",
    example: "http://127.0.0.1:2381",
    description: "URLs to serve /metrics, /health (with details) and /version on (default: none)",
  },
  quotaBackendBytes: {
    flag: "quota-backend-bytes",
    env: "CHAINFIRE_QUOTA_BACKEND_BYTES",
    type: "bytes",
    default: "2GiB",
    description:
      "raise the NOSPACE alarm and refuse writes once the backend database exceeds this size (as etcd: 0 is the default, a negative size no quota)",
  },
  backendBatchIntervalMs: {
    flag: "backend-batch-interval",
    env: "CHAINFIRE_BACKEND_BATCH_INTERVAL",
    type: "duration-ms",
    default: "100ms",
    min: 0,
    description:
      "longest time applied writes stay in the backend's open transaction before it commits (etcd's --backend-batch-interval; 0 commits every applied batch). The Raft log already holds them durably",
  },
  backendBatchLimit: {
    flag: "backend-batch-limit",
    env: "CHAINFIRE_BACKEND_BATCH_LIMIT",
    type: "int",
    default: 10_000,
    min: 1,
    description:
      "most row writes the backend's open transaction holds before it commits (etcd's --backend-batch-limit)",
  },
  autoCompactionMode: {
    flag: "auto-compaction-mode",
    env: "CHAINFIRE_AUTO_COMPACTION_MODE",
    type: "enum",
    values: ["periodic", "revision"],
    default: "periodic",
    description:
      "how --auto-compaction-retention is read: periodic (keep that much time of history) or revision (keep that many revisions)",
  },
  autoCompactionRetention: {
    flag: "auto-compaction-retention",
    env: "CHAINFIRE_AUTO_COMPACTION_RETENTION",
    type: "string",
    default: "0",
    description:
      "history the leader keeps when it compacts on its own, as etcd: hours or a duration (1, 30m, 1h30m) in periodic mode, revisions in revision mode; 0 turns it off",
  },
  maxTxnOps: {
    flag: "max-txn-ops",
    env: "CHAINFIRE_MAX_TXN_OPS",
    type: "int",
    default: 128,
    min: 1,
    description: "most operations in one transaction (etcd's --max-txn-ops)",
  },
  leaseCheckpointIntervalMs: {
    flag: "experimental-lease-checkpoint-interval",
    env: "CHAINFIRE_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL",
    type: "duration-ms",
    default: "5s",
    min: 100,
    description:
      "how often the leader records each lease's remaining TTL through the log, so a new leader continues the countdown",
  },
  // etcd 3.4 flags an etcd unit often carries. The ones whose setting chainfire always has are
  // accepted; a setting chainfire does not offer is refused, saying what to do instead.
  logger: {
    flag: "logger",
    env: "CHAINFIRE_LOGGER",
    type: "enum",
    values: ["zap", "capnslog"],
    default: "zap",
    description: "etcd's logger choice, accepted as is: chainfire always writes JSON lines",
  },
  logOutputs: {
    flag: "log-outputs",
    env: "CHAINFIRE_LOG_OUTPUTS",
    type: "enum",
    values: ["default", "stdout", "stderr"],
    default: "default",
    example: "default",
    description: "etcd's log destination, accepted as is (the log goes to stdout, or to --log-file)",
  },
  enableV2: {
    flag: "enable-v2",
    env: "CHAINFIRE_ENABLE_V2",
    type: "bool",
    description: "etcd's v2 API: not served; only false is accepted",
    check: (on: boolean) => (on ? "chainfire serves etcd's v3 API only; leave it false or out" : undefined),
  },
  preVote: {
    flag: "pre-vote",
    env: "CHAINFIRE_PRE_VOTE",
    type: "bool",
    default: true,
    description: "Raft pre-vote: always on in chainfire; only true is accepted",
    check: (on: boolean) => (on ? undefined : "chainfire always runs pre-vote; leave it true or out"),
  },
  strictReconfigCheck: {
    flag: "strict-reconfig-check",
    env: "CHAINFIRE_STRICT_RECONFIG_CHECK",
    type: "bool",
    default: true,
    description: "refuse membership changes that would lose quorum: always on; only true is accepted",
    check: (on: boolean) =>
      on ? undefined : "chainfire always refuses changes that would lose quorum; leave it true or out",
  },
  metricsLevel: {
    flag: "metrics",
    env: "CHAINFIRE_METRICS",
    type: "enum",
    values: ["basic", "extensive"],
    default: "basic",
    description: "etcd's metrics level, accepted as is: /metrics has one set",
  },
  maxWals: {
    flag: "max-wals",
    env: "CHAINFIRE_MAX_WALS",
    type: "int",
    default: 5,
    min: 0,
    description: "etcd's WAL file count, accepted as is: the Raft log is compacted behind each snapshot",
  },
  maxSnapshots: {
    flag: "max-snapshots",
    env: "CHAINFIRE_MAX_SNAPSHOTS",
    type: "int",
    default: 5,
    min: 0,
    description: "etcd's snapshot file count, accepted as is: a member keeps only the snapshots it needs",
  },
  forceNewCluster: {
    flag: "force-new-cluster",
    env: "CHAINFIRE_FORCE_NEW_CLUSTER",
    type: "bool",
    description: "not offered; only false is accepted",
    check: (on: boolean) =>
      on
        ? "not offered; to rebuild a cluster from one member's data, `chainfirectl snapshot save` it and `snapshot restore` a new cluster"
        : undefined,
  },
  autoTls: {
    flag: "auto-tls",
    env: "CHAINFIRE_AUTO_TLS",
    type: "bool",
    description: "not offered; only false is accepted",
    check: (on: boolean) => (on ? "not offered; give --cert-file and --key-file" : undefined),
  },
  peerAutoTls: {
    flag: "peer-auto-tls",
    env: "CHAINFIRE_PEER_AUTO_TLS",
    type: "bool",
    description: "not offered; only false is accepted",
    check: (on: boolean) => (on ? "not offered; give --peer-cert-file and --peer-key-file" : undefined),
  },
  walDir: {
    flag: "wal-dir",
    env: "CHAINFIRE_WAL_DIR",
    type: "string",
    description: "not offered: the Raft log lives under <data-dir>/raft; only an empty value is accepted",
    check: (dir: string) =>
      dir === "" ? undefined : "not offered: the Raft log lives under <data-dir>/raft; leave it out",
  },
  snapshotCatchupEntries: {
    flag: "experimental-snapshot-catchup-entries",
    env: "CHAINFIRE_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
    type: "int",
    min: 1,
    description:
      "log entries kept behind a snapshot for slow followers (default: half of --snapshot-count, at most 5000); a follower further behind gets the snapshot",
  },
});

export type ChainfireOptions = typeof chainfireOptions;
