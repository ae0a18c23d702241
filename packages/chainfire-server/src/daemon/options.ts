// chainfire's options: the member kit's etcd-named group (name, data dir, URLs, cluster bootstrap,
// Raft timing, TLS, logging) plus the flags only the KV store has. The same keys work in the TOML
// file given by --config-file and as CHAINFIRE_* environment variables.
import { defineOptions } from "@photoncloud/daemon";
import { memberOptions } from "@photoncloud/raft";

/** etcd's default ports: client 2379, peer 2380, metrics 2381. */
export const DEFAULT_PORTS = { client: 2379, peer: 2380, metrics: 2381 } as const;

/** The longest delay a Node.js timer takes (longer ones fire at once). */
const TIMER_MAX_MS = 2_147_483_647;

/** An origin as etcd's --cors takes one: a URL of scheme, host and port only. */
const ORIGIN = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/(\[[0-9a-fA-F:.]+\]|[^/:?#\s[\]]+):\d{1,5}$/;

/** An etcd v2 proxy timing flag (ms): accepted, as the proxy it tunes is not offered. */
function proxyTiming(flag: string, ms: number) {
  return {
    flag,
    env: `CHAINFIRE_${flag.toUpperCase().replaceAll("-", "_")}`,
    type: "int" as const,
    default: ms,
    min: 0,
    description: "etcd's v2 proxy timing (ms), accepted as is: the proxy is not offered",
  };
}

/** An etcd flag for a feature chainfire does not offer: only an empty value is accepted. */
function notOffered(flag: string, instead: string) {
  return {
    flag,
    env: `CHAINFIRE_${flag.toUpperCase().replaceAll("-", "_")}`,
    type: "string" as const,
    description: `not offered (${instead}); only an empty value is accepted`,
    check: (value: string) => (value === "" ? undefined : `not offered: ${instead}; leave it out`),
  };
}

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
  enableGrpcGateway: {
    flag: "enable-grpc-gateway",
    env: "CHAINFIRE_ENABLE_GRPC_GATEWAY",
    type: "bool",
    default: true,
    description:
      "serve etcd's JSON gateway (/v3/...) on the client URLs beside gRPC; false turns it off, as in etcd",
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
  grpcKeepaliveIntervalMs: {
    flag: "grpc-keepalive-interval",
    env: "CHAINFIRE_GRPC_KEEPALIVE_INTERVAL",
    type: "duration-ms",
    default: "2h",
    min: 0,
    max: TIMER_MAX_MS,
    unitRequired: true,
    description:
      "how long a client connection may stay silent before the member pings it (0 for either keepalive setting: etcd's and grpc-go's defaults, 2h and 20s)",
  },
  grpcKeepaliveTimeoutMs: {
    flag: "grpc-keepalive-timeout",
    env: "CHAINFIRE_GRPC_KEEPALIVE_TIMEOUT",
    type: "duration-ms",
    default: "20s",
    min: 0,
    max: TIMER_MAX_MS,
    unitRequired: true,
    description:
      "how long a pinged client connection has to answer before it is closed and its calls (watches, lease keep-alives) cancelled",
  },
  grpcKeepaliveMinTimeMs: {
    flag: "grpc-keepalive-min-time",
    env: "CHAINFIRE_GRPC_KEEPALIVE_MIN_TIME",
    type: "duration-ms",
    default: "5s",
    min: 0,
    max: TIMER_MAX_MS,
    unitRequired: true,
    description: "etcd's least time between a client's pings, accepted as is: every ping is answered",
  },
  cors: {
    flag: "cors",
    env: "CHAINFIRE_CORS",
    type: "string-list",
    default: "*",
    description:
      "origins a browser page may call the client URLs' HTTP side from (CORS), each scheme://host:port as etcd takes them; empty or * allows all (etcd's flag)",
    check: (origins: readonly string[]) => {
      const bad = origins.find((o) => o !== "*" && !ORIGIN.test(o));
      return bad === undefined
        ? undefined
        : `${JSON.stringify(bad)} is not an origin of the form scheme://host:port (as etcd, the port is required), nor "*"`;
    },
  },
  hostWhitelist: {
    flag: "host-whitelist",
    env: "CHAINFIRE_HOST_WHITELIST",
    type: "string-list",
    default: "*",
    description:
      "hostnames a plain-HTTP request to the client URLs may name (a guard against DNS rebinding; TLS requests are not checked); empty or * allows all (etcd's flag)",
  },
  maxConcurrentStreams: {
    flag: "max-concurrent-streams",
    env: "CHAINFIRE_MAX_CONCURRENT_STREAMS",
    type: "int",
    default: 4_294_967_295,
    min: 1,
    max: 4_294_967_295,
    description: "most calls one client connection may have open at once (etcd's default: no limit, 2^32-1)",
  },
  watchProgressNotifyIntervalMs: {
    flag: "experimental-watch-progress-notify-interval",
    env: "CHAINFIRE_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
    type: "duration-ms",
    default: "10m",
    min: 100,
    max: TIMER_MAX_MS,
    unitRequired: true,
    description: "how often a watch created with progress_notify gets an empty answer carrying the revision",
  },
  initialElectionTickAdvance: {
    flag: "initial-election-tick-advance",
    env: "CHAINFIRE_INITIAL_ELECTION_TICK_ADVANCE",
    type: "bool",
    default: true,
    description:
      "etcd's fast first election at boot, accepted as is: pre-vote keeps a starting member from disturbing a leader",
  },
  enableLeaseCheckpoint: {
    flag: "experimental-enable-lease-checkpoint",
    env: "CHAINFIRE_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT",
    type: "bool",
    description:
      "etcd's lease checkpoints, accepted as is: chainfire always records remaining TTLs through the log (see --experimental-lease-checkpoint-interval)",
  },
  compactionBatchLimit: {
    flag: "experimental-compaction-batch-limit",
    env: "CHAINFIRE_EXPERIMENTAL_COMPACTION_BATCH_LIMIT",
    type: "int",
    default: 1000,
    min: 1,
    description: "etcd's revisions deleted per compaction batch, accepted as is",
  },
  backendFreelistType: {
    flag: "experimental-backend-bbolt-freelist-type",
    env: "CHAINFIRE_EXPERIMENTAL_BACKEND_BBOLT_FREELIST_TYPE",
    type: "enum",
    values: ["array", "map"],
    default: "array",
    description: "etcd's bbolt freelist type, accepted as is: the backend is SQLite",
  },
  warningApplyDurationMs: {
    flag: "experimental-warning-apply-duration",
    env: "CHAINFIRE_EXPERIMENTAL_WARNING_APPLY_DURATION",
    type: "duration-ms",
    default: "100ms",
    min: 0,
    description: "an apply taking this long or more is logged (apply request took too long) and counted",
  },
  logPackageLevels: {
    flag: "log-package-levels",
    env: "CHAINFIRE_LOG_PACKAGE_LEVELS",
    type: "string",
    description: "etcd's per-package log levels (capnslog), accepted as is: --log-level sets the one level",
  },
  authToken: {
    flag: "auth-token",
    env: "CHAINFIRE_AUTH_TOKEN",
    type: "string",
    default: "simple",
    description:
      "etcd's auth token type, accepted as is: etcd authentication is not offered (it cannot be enabled)",
  },
  authTokenTtl: {
    flag: "auth-token-ttl",
    env: "CHAINFIRE_AUTH_TOKEN_TTL",
    type: "int",
    default: 300,
    min: 1,
    description: "etcd's auth token lifetime (s), accepted as is: etcd authentication is not offered",
  },
  bcryptCost: {
    flag: "bcrypt-cost",
    env: "CHAINFIRE_BCRYPT_COST",
    type: "int",
    default: 10,
    min: 4,
    max: 31,
    description: "etcd's password hashing cost, accepted as is: etcd authentication is not offered",
  },
  debug: {
    flag: "debug",
    env: "CHAINFIRE_DEBUG",
    type: "bool",
    description: "etcd's debug logging switch: only false is accepted",
    check: (on: boolean) => (on ? "give --log-level debug instead" : undefined),
  },
  enablePprof: {
    flag: "enable-pprof",
    env: "CHAINFIRE_ENABLE_PPROF",
    type: "bool",
    description: "etcd's Go profiler endpoint: not offered; only false is accepted",
    check: (on: boolean) =>
      on
        ? "not offered: profile a member with node --cpu-prof (CHAINFIRE_NODE_ARGS); leave it false or out"
        : undefined,
  },
  proxy: {
    flag: "proxy",
    env: "CHAINFIRE_PROXY",
    type: "enum",
    values: ["off", "readonly", "on"],
    default: "off",
    description: "etcd's v2 proxy mode: not offered; only off is accepted",
    check: (mode: string) =>
      mode === "off" ? undefined : "not offered: run a member (or a learner) instead; leave it off",
  },
  proxyFailureWaitMs: proxyTiming("proxy-failure-wait", 5000),
  proxyRefreshIntervalMs: proxyTiming("proxy-refresh-interval", 30_000),
  proxyDialTimeoutMs: proxyTiming("proxy-dial-timeout", 1000),
  proxyWriteTimeoutMs: proxyTiming("proxy-write-timeout", 5000),
  proxyReadTimeoutMs: proxyTiming("proxy-read-timeout", 0),
  discovery: notOffered("discovery", "list the members in --initial-cluster"),
  discoverySrv: notOffered("discovery-srv", "list the members in --initial-cluster"),
  discoverySrvName: notOffered("discovery-srv-name", "list the members in --initial-cluster"),
  discoveryProxy: notOffered("discovery-proxy", "list the members in --initial-cluster"),
  discoveryFallback: {
    flag: "discovery-fallback",
    env: "CHAINFIRE_DISCOVERY_FALLBACK",
    type: "enum",
    values: ["exit", "proxy"],
    default: "proxy",
    description: "etcd's answer to a failed discovery, accepted as is: discovery is not offered",
  },
  enableV2v3: notOffered("experimental-enable-v2v3", "chainfire serves etcd's v3 API only"),
  peerSkipClientSanVerification: {
    flag: "experimental-peer-skip-client-san-verification",
    env: "CHAINFIRE_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION",
    type: "bool",
    description: "etcd's skipping of the peer client certificate's SAN check: only false is accepted",
    check: (on: boolean) =>
      on
        ? "not needed: a peer's client certificate is checked against --peer-trusted-ca-file only"
        : undefined,
  },
  initialCorruptCheck: {
    flag: "experimental-initial-corrupt-check",
    env: "CHAINFIRE_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
    type: "bool",
    description:
      "at start, before serving clients, compare this member's HashKV with each reachable peer's at its revision; refuse to start when one differs (etcd's flag)",
  },
  corruptCheckTimeMs: {
    flag: "experimental-corrupt-check-time",
    env: "CHAINFIRE_EXPERIMENTAL_CORRUPT_CHECK_TIME",
    type: "duration-ms",
    default: "0s",
    min: 0,
    max: TIMER_MAX_MS,
    unitRequired: true,
    description:
      "how often the leader compares each member's HashKV with its own and raises the CORRUPT alarm for one that differs (writes are then refused until it is disarmed); 0 never checks (etcd's flag)",
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
