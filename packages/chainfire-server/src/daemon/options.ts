// chainfire's options: the member kit's etcd-named group (name, data dir, URLs, cluster bootstrap,
// Raft timing, TLS, logging) plus the flags only the KV store has. The same keys work in the TOML
// file given by --config-file and as CHAINFIRE_* environment variables.
import { defineOptions } from "@photoncloud/daemon";
import { memberOptions } from "@photoncloud/raft";

/** etcd's default ports: client 2379, peer 2380, metrics 2381. */
export const DEFAULT_PORTS = { client: 2379, peer: 2380, metrics: 2381 } as const;

export const chainfireOptions = defineOptions({
  ...memberOptions("CHAINFIRE_", DEFAULT_PORTS),
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
