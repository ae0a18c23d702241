// etcd's own metrics on /metrics, under etcd's names, types and meanings (member IDs in labels as
// etcd prints them: hex without leading zeros), so that the dashboards and alerts written for etcd
// (no leader, leader changes, failed proposals, slow fsyncs and commits, database size against its
// quota, peers not reached) work on chainfire unchanged. Read when scraped; the hot paths only add to plain numbers, and the two latency histograms take one
// observation per fsync of the Raft log and per COMMIT of the store's batched writes.
import type { DaemonMetrics, MessageByteCounts } from "@photoncloud/daemon";
import { memberGauges, type RunningMember, type SnapshotTransfers } from "@photoncloud/raft";
import { Counter, Gauge, Histogram } from "prom-client";
import type { MvccStore } from "../mvcc/store.js";
import type { WatchHub } from "../watch/watch-hub.js";

export interface EtcdMetricsSources {
  readonly member: RunningMember;
  readonly store: MvccStore;
  readonly hub: WatchHub;
  /** The quota in force (--quota-backend-bytes, or its default). */
  readonly quotaBackendBytes: bigint;
  /** The etcd version this member answers as (Status, /version). */
  readonly serverVersion: string;
}

export interface EtcdMetrics {
  /** Where the client services add up their messages' bytes (etcd_network_client_grpc_*_bytes_total). */
  readonly clientMessageBytes: MessageByteCounts;
  /** Counts one /health answer (etcd_server_health_success / _failures). */
  health(healthy: boolean): void;
  /** Stops probing the peers. */
  stop(): void;
}

/** How often each peer is probed for etcd_network_peer_round_trip_time_seconds (etcd's prober: 4 s). */
const PEER_PROBE_MS = 4000;

/** etcd's buckets for both disk latencies: 1 ms to about 8 s, doubling. */
const DISK_BUCKETS = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i);

export function registerEtcdMetrics(metrics: DaemonMetrics, sources: EtcdMetricsSources): EtcdMetrics {
  const { member, store, hub } = sources;
  const raft = member.raft;
  const registers = [metrics.registry];
  const live = () => !raft.node.isStopped;
  const gauge = memberGauges(metrics, raft);
  /** A counter kept as a plain number elsewhere, copied in when scraped. */
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  /** etcd's "1 for the label with the current value" gauges. */
  const info = (name: string, help: string, label: string, value: string) =>
    new Gauge({ name, help, labelNames: [label], registers }).set({ [label]: value }, 1);

  info(
    "etcd_server_id",
    "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
    "server_id",
    member.memberId.toString(16),
  );
  info(
    "etcd_server_version",
    "Which version is running. 1 for 'server_version' label with current version.",
    "server_version",
    sources.serverVersion,
  );
  info(
    "etcd_cluster_version",
    "Which version is running. 1 for 'cluster_version' label with current cluster version",
    "cluster_version",
    sources.serverVersion.split(".").slice(0, 2).join("."),
  );
  gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", () =>
    raft.node.leader !== 0n ? 1 : 0,
  );
  gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", () =>
    raft.node.leader === member.memberId ? 1 : 0,
  );
  gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", () =>
    raft.node.currentConfState().learners.includes(member.memberId) ? 1 : 0,
  );
  counter(
    "etcd_server_leader_changes_seen_total",
    "The number of leader changes seen.",
    () => raft.stats.leaderChanges,
  );
  gauge(
    "etcd_server_proposals_committed_total",
    "The total number of consensus proposals committed.",
    () => raft.node.core.status().hardState.commit,
  );
  gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", () =>
    raft.node.appliedIndex(),
  );
  gauge(
    "etcd_server_proposals_pending",
    "The current number of pending proposals to commit.",
    () => raft.pendingProposals,
  );
  counter(
    "etcd_server_proposals_failed_total",
    "The total number of failed proposals seen.",
    () => raft.stats.proposalsFailed,
  );
  counter(
    "etcd_server_heartbeat_send_failures_total",
    "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
    () => raft.node.heartbeatSendFailures,
  );
  counter(
    "etcd_server_read_indexes_failed_total",
    "The total number of failed read indexes seen.",
    () => raft.stats.readIndexesFailed,
  );
  counter(
    "etcd_server_slow_read_indexes_total",
    "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
    () => raft.stats.slowReadIndexes,
  );
  counter(
    "etcd_server_learner_promote_successes",
    "The total number of successful learner promotions while this member is leader.",
    () => raft.stats.learnerPromotes,
  );
  gauge(
    "etcd_server_snapshot_apply_in_progress_total",
    "1 if the server is applying the incoming snapshot. 0 if none.",
    () => (raft.node.snapshotInstalling ? 1 : 0),
  );
  counter(
    "etcd_server_slow_apply_total",
    "The total number of slow apply requests (likely overloaded from slow disk).",
    () => store.stats.slowApplies,
  );
  gauge(
    "etcd_server_quota_backend_bytes",
    "Current backend storage quota size in bytes.",
    () => sources.quotaBackendBytes,
  );
  const healthCounts = { success: 0, failures: 0 };
  counter(
    "etcd_server_health_success",
    "The total number of successful health checks",
    () => healthCounts.success,
  );
  counter(
    "etcd_server_health_failures",
    "The total number of failed health checks",
    () => healthCounts.failures,
  );

  for (const name of ["etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_db_total_size_in_bytes"])
    gauge(name, "Total size of the underlying database physically allocated in bytes.", () =>
      store.dbSizeBytes(),
    );
  gauge(
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "Total size of the underlying database logically in use in bytes.",
    () => store.dbSizeInUseBytes(),
  );
  // etcd 3.4 exports these under both names.
  for (const prefix of ["etcd_mvcc", "etcd_debugging_mvcc"]) {
    counter(`${prefix}_put_total`, "Total number of puts seen by this member.", () => store.stats.puts);
    counter(
      `${prefix}_delete_total`,
      "Total number of deletes seen by this member.",
      () => store.stats.deletes,
    );
    counter(`${prefix}_range_total`, "Total number of ranges seen by this member.", () => store.stats.ranges);
    counter(`${prefix}_txn_total`, "Total number of txns seen by this member.", () => store.stats.txns);
  }
  gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", () => store.keyCount());
  gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", () =>
    store.currentRevision(),
  );
  gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", () =>
    store.compactRevision(),
  );
  gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", () => hub.watcherCount);
  gauge(
    "etcd_debugging_mvcc_slow_watcher_total",
    "Total number of unsynced slow watchers.",
    () => hub.unsyncedCount,
  );

  const fsync = new Histogram({
    name: "etcd_disk_wal_fsync_duration_seconds",
    help: "The latency distributions of fsync called by WAL.",
    buckets: DISK_BUCKETS,
    registers,
  });
  const logged = raft.node.store.onFsync;
  raft.node.store.onFsync = (seconds) => {
    fsync.observe(seconds);
    logged?.(seconds);
  };
  const commit = new Histogram({
    name: "etcd_disk_backend_commit_duration_seconds",
    help: "The latency distributions of commit called by backend.",
    buckets: DISK_BUCKETS,
    registers,
  });
  store.onCommit = (seconds) => commit.observe(seconds);

  const clientMessageBytes: MessageByteCounts = { received: 0, sent: 0 };
  counter(
    "etcd_network_client_grpc_received_bytes_total",
    "The total number of bytes received from grpc clients.",
    () => clientMessageBytes.received,
  );
  counter(
    "etcd_network_client_grpc_sent_bytes_total",
    "The total number of bytes sent to grpc clients.",
    () => clientMessageBytes.sent,
  );

  /** A counter per peer, labelled as etcd labels it (hex ID), from counts kept per peer. */
  const perPeer = (name: string, help: string, label: string, counts: ReadonlyMap<bigint, number>) =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [peer, n] of counts) this.inc({ [label]: peer.toString(16) }, n);
      },
    });
  perPeer(
    "etcd_network_peer_sent_failures_total",
    "The total number of send failures from peers.",
    "To",
    raft.stats.peerSendFailures,
  );
  perPeer(
    "etcd_network_peer_sent_bytes_total",
    "The total number of bytes sent to peers.",
    "To",
    raft.transport.bytesSent,
  );
  perPeer(
    "etcd_network_peer_received_bytes_total",
    "The total number of bytes received from peers.",
    "From",
    raft.transport.bytesReceived,
  );
  // Snapshots to and from each peer, as etcd's rafthttp counts them.
  const snapshotMetrics = (direction: "send" | "receive", label: "To" | "From", t: SnapshotTransfers) => {
    const many = direction === "send" ? "sends" : "receives";
    perPeer(
      `etcd_network_snapshot_${direction}_success`,
      `Total number of successful snapshot ${many}`,
      label,
      t.success,
    );
    perPeer(
      `etcd_network_snapshot_${direction}_failures`,
      `Total number of snapshot ${direction} failures`,
      label,
      t.failures,
    );
    new Gauge({
      name: `etcd_network_snapshot_${direction}_inflights_total`,
      help: `Total number of inflight snapshot ${many}`,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [peer, n] of t.inflight) this.set({ [label]: peer.toString(16) }, n);
      },
    });
    return new Histogram({
      name: `etcd_network_snapshot_${direction}_total_duration_seconds`,
      help: `Total latency distributions of v3 snapshot ${many}`,
      labelNames: [label],
      // etcd's: 0.1 s to 51.2 s, doubling.
      buckets: Array.from({ length: 10 }, (_, i) => 0.1 * 2 ** i),
      registers,
    });
  };
  const snapshotSeconds = {
    sent: snapshotMetrics("send", "To", raft.transport.snapshotsSent),
    received: snapshotMetrics("receive", "From", raft.transport.snapshotsReceived),
  };
  raft.transport.onSnapshotTransferred = (direction, peer, seconds) =>
    snapshotSeconds[direction].observe(
      { [direction === "sent" ? "To" : "From"]: peer.toString(16) },
      seconds,
    );

  const self = member.memberId.toString(16);
  /** Each peer this member has a connection state for (members of the cluster but itself). */
  const peers = function* () {
    for (const peer of raft.node.members.keys()) {
      const stats = peer === member.memberId ? undefined : raft.transport.peerStats(peer);
      if (stats !== undefined) yield { Local: self, Remote: peer.toString(16), stats };
    }
  };
  new Gauge({
    name: "etcd_network_active_peers",
    help: "The current number of active peer connections.",
    labelNames: ["Local", "Remote"],
    registers,
    collect() {
      this.reset();
      for (const { stats, ...labels } of peers()) this.set(labels, stats.active ? 1 : 0);
    },
  });
  new Counter({
    name: "etcd_network_disconnected_peers_total",
    help: "The total number of disconnected peers.",
    labelNames: ["Local", "Remote"],
    registers,
    collect() {
      this.reset();
      for (const { stats, ...labels } of peers())
        if (stats.disconnects > 0) this.inc(labels, stats.disconnects);
    },
  });

  // etcd's prober: every few seconds a small request to each peer's peer URL, its round trip
  // observed per peer (a peer that does not answer is not observed).
  const rtt = new Histogram({
    name: "etcd_network_peer_round_trip_time_seconds",
    help: "Round-Trip-Time histogram between peers",
    labelNames: ["To"],
    buckets: Array.from({ length: 16 }, (_, i) => 0.0001 * 2 ** i),
    registers,
  });
  const probing = new Set<bigint>();
  const probe = () => {
    if (!live()) return;
    for (const peer of raft.node.members.keys()) {
      if (peer === member.memberId || probing.has(peer)) continue;
      probing.add(peer);
      const started = performance.now();
      raft.transport.clusterInfo(peer, PEER_PROBE_MS).then(
        () => {
          probing.delete(peer);
          rtt.observe({ To: peer.toString(16) }, (performance.now() - started) / 1000);
        },
        () => probing.delete(peer),
      );
    }
  };
  const prober = setInterval(probe, PEER_PROBE_MS);
  prober.unref();

  return {
    clientMessageBytes,
    health: (healthy) => {
      if (healthy) healthCounts.success++;
      else healthCounts.failures++;
    },
    stop: () => clearInterval(prober),
  };
}
