// A 3-member cluster under faults, as the fault tests' clients see it: which members can take a
// request now (running, not frozen), their IDs, and the leader.
import { type ChainfireClients, createClients, type etcd } from "@photoncloud/chainfire-api";
import type { Cluster, ClusterKind, ClusterOptions } from "../../bench/cluster.js";
import { call, until } from "./daemon-cluster.js";

/**
 * Clients for each member of a cluster under faults: they reconnect within 300 ms to a member
 * restarted, and take any message size, as etcd's client does (a watch catching up sends up to
 * 1,000 revisions at once, and the fault tests write values of up to 16 KB).
 */
export function faultTestClients(members: readonly { readonly endpoint: string }[]): ChainfireClients[] {
  return members.map((m) =>
    createClients(m.endpoint, undefined, {
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 300,
      "grpc.max_receive_message_length": -1,
    }),
  );
}

/**
 * Options for a fault test's 3-member cluster: short Raft timeouts, and with `snapshotsOften` a Raft
 * snapshot every 100 entries, after which chainfire keeps only 20 (etcd 3.4 keeps 5,000, fixed), so
 * that a member left behind catches up from a snapshot.
 */
export function faultClusterOptions(kind: ClusterKind, dir: string, snapshotsOften: boolean): ClusterOptions {
  const extraArgs = snapshotsOften ? ["--snapshot-count", "100"] : [];
  if (snapshotsOften && kind === "chainfire") extraArgs.push("--experimental-snapshot-catchup-entries", "20");
  return { kind, dir, size: 3, heartbeatMs: 50, electionMs: 500, extraArgs };
}

export class FaultedCluster {
  readonly clients: ChainfireClients[];
  /** Members (by index) frozen by SIGSTOP right now. */
  readonly frozen = new Set<number>();
  /** Each member's ID, once `readIds` has run. */
  readonly ids: bigint[] = [];

  constructor(readonly cluster: Cluster) {
    this.clients = faultTestClients(cluster.members);
  }

  async readIds(): Promise<void> {
    for (const c of this.clients)
      this.ids.push((await call<etcd.StatusResponse>(c.maintenance, "status", {}, 5000)).header!.memberId);
  }

  /** Members running and not frozen: the ones a client request can go to. */
  usable(): number[] {
    return this.cluster.members
      .map((_, i) => i)
      .filter((i) => this.cluster.members[i]!.process !== null && !this.frozen.has(i));
  }

  /** The leader's index, as a usable member reports it (polled until one does). */
  async leader(): Promise<number> {
    return until(async () => {
      for (const i of this.usable()) {
        const st = await call<etcd.StatusResponse>(this.clients[i]!.maintenance, "status", {}, 2000).catch(
          () => undefined,
        );
        const at = st === undefined ? -1 : this.ids.indexOf(st.leader);
        if (at >= 0) return at;
      }
      return undefined;
    }, "a leader");
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
