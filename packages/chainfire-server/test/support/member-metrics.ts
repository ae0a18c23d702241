// A member's Prometheus metrics, as the fault tests read them (etcd and chainfire name them alike).
import type { ClusterMember } from "../../bench/cluster.js";

/**
 * Snapshots a member has received from its peers since it started
 * (etcd_network_snapshot_receive_success); undefined when its metrics do not answer.
 */
export async function snapshotsReceived(m: ClusterMember): Promise<number | undefined> {
  try {
    const res = await fetch(`http://${m.host}:${m.metricsPort}/metrics`, {
      signal: AbortSignal.timeout(10_000),
    });
    return (await res.text())
      .split("\n")
      .filter((l) => l.startsWith("etcd_network_snapshot_receive_success{"))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
  } catch {
    return undefined;
  }
}
