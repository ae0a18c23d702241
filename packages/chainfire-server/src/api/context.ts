// What the etcd API handlers need besides the Raft facade: the local MVCC store and watch hub, and
// facts about this member that the Raft layer knows (term, leader). The daemon supplies the real ones.
import { randomBytes } from "node:crypto";
import { command, type etcd } from "@photoncloud/chainfire-api";
import type { ProposeOptions, Replicated } from "@photoncloud/raft";
import { chainfireError, errorFromResult } from "../errors.js";
import { encodeCommand } from "../mvcc/messages.js";
import type { MvccStore } from "../mvcc/store.js";
import type { WatchHub } from "../watch/watch-hub.js";

export interface MemberFacts {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  raftTerm(): bigint;
  leaderId(): bigint;
  /** The committed Raft index: what etcd's Status reports as raftIndex. */
  raftIndex(): bigint;
  /** The last Raft index applied (membership entries included); the store's own index when absent. */
  raftAppliedIndex?(): bigint;
  isLearner(): boolean;
}

/**
 * Where requests that only the leader can answer go when this member is not the leader: lease
 * keep-alives and time-to-live (the expiry clock runs on the leader). `leaseClient()` returns null
 * when this member is the leader (serve locally) and throws when no leader is known.
 */
export interface LeaderForwarding {
  leaseClient(): etcd.LeaseClient | null;
  /** How long a unary call relayed to the leader may take (etcd's request timeout). */
  readonly relayTimeoutMs: number;
}

export interface EtcdApiContext {
  readonly replicated: Replicated;
  readonly store: MvccStore;
  readonly hub: WatchHub;
  readonly member: MemberFacts;
  /** The version reported by Status; etcd clients gate features on it, so it names the etcd API level. */
  readonly version: string;
  /**
   * A watch response this large or larger is split into fragments when its watcher asked for them
   * (etcd: --max-request-bytes plus the 512 KiB a gRPC message may carry beyond it).
   */
  readonly watchFragmentBytesMax: number;
  /** Largest encoded command accepted for proposal (etcd's --max-request-bytes). */
  readonly maxRequestBytes: number;
  /** Wall clock for leader-side lease bookkeeping. */
  nowMs(): number;
  /** Absent in a single-member server, where this member is always the leader. */
  readonly forwarding?: LeaderForwarding;
  /** Resolves when the server shuts down: long-lived streams (watch, keep-alive) end then. */
  readonly shuttingDown?: Promise<void>;
  /**
   * How often a stream that requires a leader checks for one (etcd: the election timeout; default
   * 1 s); see require-leader.ts.
   */
  readonly leaderCheckMs?: number;
}

export function responseHeader(ctx: EtcdApiContext, revision: bigint): etcd.ResponseHeader {
  return {
    clusterId: ctx.member.clusterId,
    memberId: ctx.member.memberId,
    revision,
    raftTerm: ctx.member.raftTerm(),
  };
}

/** Proposes a command and returns its result, turning a replicated error result into a throw. */
export function proposeCommand(
  ctx: EtcdApiContext,
  cmd: command.MvccCommand,
  options: ProposeOptions = {},
): Promise<command.MvccResult> {
  const encoded = encodeCommand(cmd);
  // Checked before the log, as etcd does, so an oversize request changes nothing anywhere.
  if (encoded.length > ctx.maxRequestBytes) return Promise.reject(chainfireError("REQUEST_TOO_LARGE"));
  return ctx.replicated.propose(encoded, options).then(({ result }) => {
    const decoded = command.MvccResult.decode(result);
    if (decoded.error) throw errorFromResult(decoded.error.code, decoded.error.message);
    return decoded;
  });
}

/**
 * etcd's answer to a write the quota cannot take: the NOSPACE alarm is raised through the log, then
 * the write is refused with NOSPACE, whether or not raising the alarm worked (etcd ignores that
 * error too): a client tells "database space exceeded" from errors it retries.
 */
export async function raiseNoSpace(ctx: EtcdApiContext): Promise<never> {
  await proposeCommand(ctx, {
    alarm: { action: 1, memberID: ctx.member.memberId, alarm: 1 },
  }).catch(() => {});
  throw chainfireError("NO_SPACE");
}

/** A random positive int64, for IDs the proposer chooses so every member applies the same one. */
export function randomId63(): bigint {
  return randomBytes(8).readBigUInt64BE() & ((1n << 63n) - 1n) || 1n;
}
