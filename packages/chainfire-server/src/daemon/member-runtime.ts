// What the etcd handlers learn from the running Raft member: header facts, whether this member is a
// learner, leadership changes (the lessor follows them) and where the leader's client URL is.
import { readFileSync } from "node:fs";
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import { type chainfirev1, createClients, type etcd } from "@photoncloud/chainfire-api";
import { parseUrl } from "@photoncloud/daemon";
import { type RunningMember, StateRole } from "@photoncloud/raft";
import type { LeaderForwarding, MemberFacts } from "../api/context.js";
import { chainfireError } from "../errors.js";
import type { MvccStore } from "../mvcc/store.js";

export function memberFacts(member: RunningMember): MemberFacts {
  const { raft } = member;
  return {
    // A joining member learns the cluster ID from the cluster after it starts.
    get clusterId() {
      return member.clusterId;
    },
    memberId: member.memberId,
    raftTerm: () => member.header().raftTerm,
    leaderId: () => member.header().leaderId,
    raftIndex: () => raft.status().raftIndex,
    raftAppliedIndex: () => raft.status().applied,
    isLearner: () => raft.node.members.get(member.memberId)?.isLearner ?? false,
  };
}

/**
 * Promotes the lessor when this member becomes leader and demotes it when it stops being one. The
 * new leader restarts each countdown from the last checkpointed remaining TTL, so leases survive a
 * leader change without being cut short or made eternal.
 */
export class LeadershipWatcher {
  private timer: NodeJS.Timeout | null = null;
  private leading = false;

  constructor(
    private readonly member: RunningMember,
    private readonly store: MvccStore,
    private readonly onChange: (leading: boolean) => void = () => {},
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
    this.check();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.leading) this.store.lessor.demote();
    this.leading = false;
  }

  private check(): void {
    const leading = this.member.raft.node.role === StateRole.Leader;
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) this.store.lessor.promote(Date.now());
    else this.store.lessor.demote();
    this.onChange(leading);
  }
}

export interface ClientTls {
  readonly trustedCaFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

type Clients = ReturnType<typeof createClients>;

/**
 * Clients for the leader, kept while the leader and its URL stay the same: on its first client URL
 * (lease keep-alive and time-to-live) and on its first peer URL (membership operations, served
 * there by chainfire.v1.Cluster, since peer URLs are known from the start while client URLs are
 * published later). Returns null when this member is the leader; throws when no leader is known.
 */
export class LeaderClients implements LeaderForwarding {
  private readonly cached = new Map<"client" | "peer", { url: string; clients: Clients }>();

  constructor(
    private readonly member: RunningMember,
    private readonly tls: { client: ClientTls; peer: ClientTls },
  ) {}

  leaseClient(): etcd.LeaseClient | null {
    return this.clientsFor("client")?.lease ?? null;
  }

  operatorClient(): chainfirev1.ClusterClient | null {
    return this.clientsFor("peer")?.operator ?? null;
  }

  close(): void {
    for (const entry of this.cached.values()) entry.clients.close();
    this.cached.clear();
  }

  private clientsFor(kind: "client" | "peer"): Clients | null {
    const { raft } = this.member;
    const leader = raft.node.leader;
    if (leader === 0n) throw chainfireError("NO_LEADER");
    if (leader === this.member.memberId) return null;
    const info = raft.node.members.get(leader);
    const url = (kind === "client" ? info?.clientUrls : info?.peerUrls)?.[0];
    if (url === undefined) throw chainfireError("NO_LEADER");
    const cached = this.cached.get(kind);
    if (cached !== undefined && cached.url === url) return cached.clients;
    cached?.clients.close();
    const parsed = parseUrl(url);
    const clients = createClients(
      `${hostOf(parsed.host)}:${parsed.port}`,
      this.credentialsFor(kind, parsed.tls),
    );
    this.cached.set(kind, { url, clients });
    return clients;
  }

  private credentialsFor(kind: "client" | "peer", tls: boolean): ChannelCredentials {
    if (!tls) return credentials.createInsecure();
    const files = this.tls[kind];
    const read = (file: string | undefined) => (file === undefined ? null : readFileSync(file));
    return credentials.createSsl(read(files.trustedCaFile), read(files.keyFile), read(files.certFile));
  }
}

function hostOf(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
