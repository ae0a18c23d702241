// What the etcd handlers learn from the running Raft member: header facts, whether this member is a
// learner, leadership changes (the lessor follows them) and where the leader's client URL is.
import { readFileSync } from "node:fs";
import { credentials } from "@grpc/grpc-js";
import { type ChainfireClients, createClients, type etcd } from "@photoncloud/chainfire-api";
import { hostPort, parseUrl } from "@photoncloud/daemon";
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
 * leader change without being cut short or made eternal. A new leader's lessor is promoted once it
 * has applied an entry of its own term. The lessor learns the term it leads in:
 * what it decides from its clock is proposed for that term only (see LeaseDriver), and a member that
 * lost the leadership and won it back between two looks starts its countdowns again from the log.
 */
export class LeadershipWatcher {
  private timer: NodeJS.Timeout | null = null;
  private leading = false;
  private term = 0n;

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

  /** Looks at the member's role and term now (`start` does so on an interval). */
  check(): void {
    // Leading, and past every entry of earlier terms: a renewal an earlier leader recorded is then
    // applied before this lessor counts anything down, and its driver proposes no expiry ahead of
    // such a record (the first entry a leader applies of its own term comes after all of them).
    const node = this.member.raft.node;
    const applied = node.appliedIndex();
    const term = node.withCore((c) =>
      c.role === StateRole.Leader && c.log.termOrZero(applied) === c.term ? c.term : 0n,
    );
    const leading = term !== 0n;
    if (leading === this.leading && term === this.term) return;
    const changed = leading !== this.leading;
    if (this.leading) this.store.lessor.demote();
    this.leading = leading;
    this.term = term;
    if (leading) this.store.lessor.promote(this.store.lessor.nowMs(), term);
    if (changed) this.onChange(leading);
  }
}

export interface ClientTls {
  readonly trustedCaFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/**
 * What this member dials other members' client URLs with (lease calls relayed to the leader,
 * corruption checks): its --cert-file, for members that ask for client certificates, and the CA
 * that checks their server certificates. That is --trusted-ca-file; without it (TLS that does not
 * ask clients for certificates) --peer-trusted-ca-file, since members' certificates come from the
 * cluster's CA, which the system's roots do not hold.
 */
export function memberClientTls(config: {
  readonly trustedCaFile?: string | undefined;
  readonly peerTrustedCaFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}): ClientTls {
  return {
    trustedCaFile: config.trustedCaFile ?? config.peerTrustedCaFile,
    certFile: config.certFile,
    keyFile: config.keyFile,
  };
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

  /** etcd's request timeout: 5 s and two election timeouts (a leader change fits in it). */
  get relayTimeoutMs(): number {
    return 5000 + 2 * this.member.config.electionTimeoutMs;
  }

  leaseClient(): etcd.LeaseClient | null {
    const { raft } = this.member;
    const leader = raft.node.leader;
    if (leader === 0n) throw chainfireError("NO_LEADER");
    if (leader === this.member.memberId) return null;
    const url = raft.node.members.get(leader)?.clientUrls[0];
    if (url === undefined) throw chainfireError("NO_LEADER");
    if (this.cached !== null && this.cached.url === url) return this.cached.clients.lease;
    this.cached?.clients.close();
    const clients = memberClients(url, this.tls);
    this.cached = { url, clients };
    return clients.lease;
  }

  close(): void {
    this.cached?.clients.close();
    this.cached = null;
  }
}

/**
 * Clients for another member's client URL: plain, or TLS with the client TLS files (the trusted CA,
 * and this member's certificate when client certificates are asked).
 */
export function memberClients(clientUrl: string, files: ClientTls): ChainfireClients {
  const url = parseUrl(clientUrl);
  const read = (file: string | undefined) => (file === undefined ? null : readFileSync(file));
  const creds = url.tls
    ? credentials.createSsl(read(files.trustedCaFile), read(files.keyFile), read(files.certFile))
    : credentials.createInsecure();
  // What the leader answers is relayed whatever its size (a lease's keys), as etcd relays it.
  return createClients(hostPort(url.host, url.port), creds, { "grpc.max_receive_message_length": -1 });
}
