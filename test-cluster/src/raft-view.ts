// What the operator sees of a running cluster: per-member health and Raft status (leader, term,
// indexes) read through the public APIs, and waits for a leader that every member agrees on.
import type { MemberDescriptor, RaftKind } from "./cluster.js";
import { MembershipClient, type MembershipService } from "./clients.js";
import { pollUntil } from "./poll.js";

export interface MemberStatus {
  readonly id: string;
  readonly kind: string;
  readonly clientUrl: string;
  readonly healthy: boolean;
  readonly memberId?: string;
  readonly leaderId?: string;
  readonly term?: bigint;
  readonly raftIndex?: bigint;
  readonly appliedIndex?: bigint;
  readonly isLearner?: boolean;
  readonly error?: string;
}

/** Member IDs as etcd shows them: 16 hex digits. */
export function hexId(id: bigint): string {
  return id.toString(16).padStart(16, "0");
}

export function serviceOf(kind: RaftKind): MembershipService {
  return kind === "chainfire" ? "chainfire.v1.Cluster" : "flaredb.v1.Cluster";
}

async function httpHealthy(metricsUrl: string): Promise<{ healthy: boolean; error?: string }> {
  try {
    const res = await fetch(`${metricsUrl}/health`, { signal: AbortSignal.timeout(2000) });
    await res.text();
    return res.status === 200
      ? { healthy: true }
      : { healthy: false, error: `health answered ${res.status}` };
  } catch (err) {
    return { healthy: false, error: (err as Error).message };
  }
}

/** Health plus, for Raft members, their own Status answer. Never throws: errors are in the result. */
export async function memberStatus(d: MemberDescriptor): Promise<MemberStatus> {
  const base = { id: d.id, kind: d.kind, clientUrl: d.clientUrl };
  const health = await httpHealthy(d.metricsUrl);
  if (d.kind === "iam") return { ...base, ...health };
  const client = new MembershipClient(serviceOf(d.kind), d.clientUrl);
  try {
    const s = await client.status(2000);
    const h = s.header;
    return {
      ...base,
      ...health,
      memberId: h ? hexId(h.memberId) : undefined,
      leaderId: h && h.leaderId !== 0n ? hexId(h.leaderId) : undefined,
      term: h?.raftTerm,
      raftIndex: s.raftIndex,
      appliedIndex: s.raftAppliedIndex,
      isLearner: s.isLearner,
    };
  } catch (err) {
    return { ...base, healthy: false, error: health.error ?? (err as Error).message };
  } finally {
    client.close();
  }
}

/**
 * Waits until every given member reports the same non-zero leader, and returns it. `members` are the
 * ones expected to be up; a stopped member is simply not listed.
 */
export async function waitForLeader(
  members: readonly MemberDescriptor[],
  deadlineMs: number,
): Promise<{ leaderId: bigint; term: bigint; leader: MemberDescriptor | undefined }> {
  return pollUntil(
    `one leader agreed by ${members.map((m) => m.id).join(", ")}`,
    async () => {
      const answers = await Promise.all(
        members.map(async (m) => {
          const client = new MembershipClient(serviceOf(m.kind as RaftKind), m.clientUrl);
          try {
            const s = await client.status(2000);
            return { m, header: s.header };
          } finally {
            client.close();
          }
        }),
      );
      const leaders = new Set(answers.map((a) => a.header?.leaderId ?? 0n));
      const [leaderId] = [...leaders];
      if (leaders.size !== 1 || leaderId === undefined || leaderId === 0n) {
        throw new Error(`members disagree or have no leader: ${[...leaders].map(hexId).join(", ")}`);
      }
      const leader = answers.find((a) => a.header?.memberId === leaderId)?.m;
      const term = answers.reduce((t, a) => ((a.header?.raftTerm ?? 0n) > t ? a.header!.raftTerm : t), 0n);
      return { leaderId, term, leader };
    },
    { deadlineMs, intervalMs: 150 },
  );
}
