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
    // etcd's Status reports the committed index here, not the last entry of the log.
    raftIndex: () => raft.status().commit,
    raftAppliedIndex: () => raft.status().applied,
    // The configuration, not the member metadata: it is what Raft itself acts on.
    isLearner: () => raft.node.currentConfState().learners.includes(member.memberId),
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

/**
 * Calls `onRemoved` once this member is no longer in the cluster: a removed member stops, as etcd's
 * do, instead of lingering without a cluster. The other members decide: one that follows a leader
 * and does not list this member settles it. They are asked at once when this member's own list
 * lacks it (it applied its removal, or it restarted on the data of a member removed meanwhile), and
 * after `probeMs` without a leader (a removed follower may never learn of its removal). A member
 * whose own list lacks it only for a while (a re-added ID replaying its earlier removal while it
 * catches up) is still listed by the others, so it keeps running.
 */
export class RemovalWatcher {
  private timer: NodeJS.Timeout | null = null;
  private troubleSinceMs: number | null = null;
  private lastProbeMs: number | null = null;
  private probing = false;
  private done = false;

  constructor(
    private readonly member: Pick<RunningMember, "memberId"> & {
      readonly raft: { readonly node: Pick<RunningMember["raft"]["node"], "members" | "leader"> };
    },
    private readonly askPeer: (peerUrl: string) => Promise<chainfirev1.MemberListResponse>,
    private readonly probeMs: number,
    private readonly onRemoved: () => void,
    private readonly nowMs: () => number = Date.now,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  /** Stops looking; a probe still running then reports nothing (the member is stopping anyway). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.done = true;
  }

  /** One look (the interval's); resolves when a probe it started has finished. */
  check(): Promise<void> {
    const { raft, memberId } = this.member;
    const listed = raft.node.members.has(memberId);
    if (this.done || (listed && raft.node.leader !== 0n)) {
      this.troubleSinceMs = null;
      return Promise.resolve();
    }
    const now = this.nowMs();
    this.troubleSinceMs ??= now;
    const due = !listed || now - this.troubleSinceMs >= this.probeMs;
    const rested = this.lastProbeMs === null || now - this.lastProbeMs >= this.probeMs;
    if (!due || !rested || this.probing) return Promise.resolve();
    this.probing = true;
    this.lastProbeMs = now;
    return this.probePeers().finally(() => {
      this.probing = false;
    });
  }

  private removed(): void {
    if (this.done) return;
    this.stop();
    this.onRemoved();
  }

  private async probePeers(): Promise<void> {
    const { raft, memberId } = this.member;
    for (const peer of raft.node.members.values()) {
      const url = peer.peerUrls[0];
      if (peer.id === memberId || url === undefined) continue;
      const view = await this.askPeer(url).catch(() => undefined);
      const leaderKnown = view !== undefined && (view.header?.leaderId ?? 0n) !== 0n;
      if (leaderKnown && !view.members.some((m) => m.id === memberId)) return this.removed();
    }
  }
}

export interface ClientTls {
  readonly trustedCaFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/**
 * Clients for the leader's first client URL, kept while the leader and its URL stay the same: lease
 * keep-alive and time-to-live go there, where the lessor counts down. Returns null when this member
 * is the leader; throws when no leader (or no published client URL of it) is known.
 */
export class LeaderClients implements LeaderForwarding {
  private cached: { url: string; clients: ReturnType<typeof createClients> } | null = null;

  constructor(
    private readonly member: RunningMember,
    private readonly tls: ClientTls,
  ) {}

  leaseClient(): etcd.LeaseClient | null {
    const { raft } = this.member;
    const leader = raft.node.leader;
    if (leader === 0n) throw chainfireError("NO_LEADER");
    if (leader === this.member.memberId) return null;
    const url = raft.node.members.get(leader)?.clientUrls[0];
    if (url === undefined) throw chainfireError("NO_LEADER");
    if (this.cached !== null && this.cached.url === url) return this.cached.clients.lease;
    this.cached?.clients.close();
    const parsed = parseUrl(url);
    const clients = createClients(`${hostOf(parsed.host)}:${parsed.port}`, this.credentialsFor(parsed.tls));
    this.cached = { url, clients };
    return clients.lease;
  }

  close(): void {
    this.cached?.clients.close();
    this.cached = null;
  }

  private credentialsFor(tls: boolean): ChannelCredentials {
    if (!tls) return credentials.createInsecure();
    const read = (file: string | undefined) => (file === undefined ? null : readFileSync(file));
    return credentials.createSsl(
      read(this.tls.trustedCaFile),
      read(this.tls.keyFile),
      read(this.tls.certFile),
    );
  }
}

function hostOf(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
