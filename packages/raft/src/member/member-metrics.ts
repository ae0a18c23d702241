// Prometheus gauges for a running member, read when scraped (no work on the Raft hot path).
import type { DaemonMetrics } from "@photoncloud/daemon";
import { Gauge } from "prom-client";
import type { RaftService } from "../service/raft-service.js";

/**
 * Makes gauges on the daemon's registry that read a member's state when scraped (and keep their
 * last value once the member has stopped).
 */
export function memberGauges(
  metrics: DaemonMetrics,
  raft: RaftService,
): (name: string, help: string, read: () => number | bigint) => Gauge {
  const registers = [metrics.registry];
  return (name, help, read) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        if (!raft.node.isStopped) this.set(Number(read()));
      },
    });
}

/** Registers raft_* gauges on the daemon's registry (with its default labels, if it has any). */
export function registerMemberMetrics(metrics: DaemonMetrics, raft: RaftService, memberId: bigint): void {
  const gauge = memberGauges(metrics, raft);
  gauge("raft_has_leader", "1 when this member knows a leader", () => (raft.node.leader !== 0n ? 1 : 0));
  gauge("raft_is_leader", "1 when this member is the leader", () => (raft.node.leader === memberId ? 1 : 0));
  gauge("raft_is_learner", "1 when this member is a learner (non-voting)", () =>
    raft.node.currentConfState().learners.includes(memberId) ? 1 : 0,
  );
  gauge("raft_term", "current Raft term", () => raft.node.core.term);
  gauge(
    "raft_commit_index",
    "highest log index known committed",
    () => raft.node.core.status().hardState.commit,
  );
  gauge("raft_applied_index", "highest log index applied to the state machine", () =>
    raft.node.appliedIndex(),
  );
  gauge("raft_last_log_index", "last index in this member's log", () => raft.node.store.lastIndex());
  gauge("raft_snapshot_index", "index of the latest stored snapshot", () => raft.node.store.snapshotIndex());
  gauge(
    "raft_voters",
    "voting members in the configuration",
    () => raft.node.currentConfState().voters.length,
  );
  gauge("raft_learners", "learners in the configuration", () => raft.node.currentConfState().learners.length);
}
