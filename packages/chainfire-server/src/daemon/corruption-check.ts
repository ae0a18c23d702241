// etcd's corruption checks between members (--experimental-initial-corrupt-check and
// --experimental-corrupt-check-time). Members that applied the same log hold the same revisions, so
// their HashKV at one revision is the same once their compactions are too. A member asks each peer,
// over the peer's client URL, for its HashKV at the asking member's current revision:
// - at start (initial check) a member whose hash differs from a peer's refuses to start, before it
//   serves a client;
// - on an interval the leader compares and raises the CORRUPT alarm for each member that differs,
//   or whose revision or compaction is ahead of the leader's once the leader has applied all it had
//   committed (every client write is then refused, as etcd does, until an operator disarms it).
// A peer that does not answer (down, behind that revision, or compacted past it) is skipped.
import type { etcd } from "@photoncloud/chainfire-api";
import type { Logger } from "@photoncloud/daemon";
import { formatId } from "@photoncloud/raft";
import { type ClientTls, memberClients } from "./member-runtime.js";
import { Metadata } from "@grpc/grpc-js";

export interface HashPeer {
  readonly id: bigint;
  readonly clientUrl: string;
}

export interface MemberHash {
  readonly hash: number;
  readonly revision: bigint;
  readonly compactRevision: bigint;
}

export interface Mismatch {
  readonly id: bigint;
  readonly revision: bigint;
  readonly ownHash: number;
  readonly peerHash: number;
  /** What differs, for the log. */
  readonly reason: string;
}

export interface CorruptionCheckDeps {
  /** The other members with a published client URL. */
  peers(): HashPeer[];
  /** This member's HashKV (0: at its current revision). */
  localHash(revision: bigint): Promise<MemberHash>;
  /** A peer's HashKV at `revision`. */
  peerHash(peer: HashPeer, revision: bigint): Promise<MemberHash>;
  /**
   * This member's revision and compaction once it has applied everything committed so far (a
   * linearizable read): no member can have applied more.
   */
  settled(): Promise<{ revision: bigint; compactRevision: bigint }>;
  readonly logger: Logger;
}

/**
 * The peers whose hash at this member's current revision differs from its own while their
 * compaction is the same (a different compaction makes different hashes of the same data).
 */
export async function findMismatches(
  deps: CorruptionCheckDeps,
): Promise<{ revision: bigint; mismatches: Mismatch[]; compared: number; answers: PeerAnswer[] }> {
  const own = await deps.localHash(0n);
  const answers = (
    await Promise.all(
      deps.peers().map(async (peer): Promise<PeerAnswer | null> => {
        try {
          return { peer, theirs: await deps.peerHash(peer, own.revision) };
        } catch (err) {
          deps.logger.warn(
            { member: formatId(peer.id), revision: own.revision.toString(), err: (err as Error).message },
            "corruption check: no hash from this member (down, behind this revision, or compacted past it); skipped",
          );
          return null;
        }
      }),
    )
  ).filter((a) => a !== null);
  const mismatches: Mismatch[] = [];
  let compared = 0;
  for (const answer of answers) {
    if (answer.theirs.compactRevision !== own.compactRevision) continue;
    compared++;
    if (answer.theirs.hash !== own.hash)
      mismatches.push({
        id: answer.peer.id,
        revision: own.revision,
        ownHash: own.hash,
        peerHash: answer.theirs.hash,
        reason: `hash ${answer.theirs.hash} at revision ${own.revision}, the leader's ${own.hash}`,
      });
  }
  return { revision: own.revision, mismatches, compared, answers };
}

interface PeerAnswer {
  readonly peer: HashPeer;
  readonly theirs: MemberHash;
}

/**
 * The members that answered with a revision or a compaction ahead of what this member has applied
 * after a linearizable read started once they had answered: everything they applied was committed
 * by then, so a member ahead applied something the log does not hold (etcd's leader makes the same
 * two checks).
 */
async function aheadOfLeader(deps: CorruptionCheckDeps, answers: readonly PeerAnswer[]): Promise<Mismatch[]> {
  if (answers.length === 0) return [];
  const settled = await deps.settled();
  const ahead: Mismatch[] = [];
  for (const { peer, theirs } of answers) {
    const reason =
      theirs.revision > settled.revision
        ? `revision ${theirs.revision} is ahead of the leader's ${settled.revision}`
        : theirs.compactRevision > settled.compactRevision
          ? `compaction at revision ${theirs.compactRevision} is ahead of the leader's ${settled.compactRevision}`
          : null;
    if (reason !== null)
      ahead.push({ id: peer.id, revision: theirs.revision, ownHash: 0, peerHash: theirs.hash, reason });
  }
  return ahead;
}

/** The initial check: throws, naming the members that differ, when this member's data is not theirs. */
export async function initialCorruptionCheck(deps: CorruptionCheckDeps): Promise<void> {
  const { revision, mismatches, compared } = await findMismatches(deps);
  if (mismatches.length === 0) {
    deps.logger.info(
      { revision: revision.toString(), membersCompared: compared },
      compared > 0
        ? "initial corruption check passed"
        : "initial corruption check: no member could be compared",
    );
    return;
  }
  const which = mismatches
    .map((m) => `member ${formatId(m.id)} has hash ${m.peerHash}, this member ${m.ownHash}`)
    .join("; ");
  throw new Error(
    `--experimental-initial-corrupt-check: this member's data differs from its peers' at revision ${revision} (${which}). Replace this member (member remove, empty data dir, member add) or restore the cluster from a snapshot`,
  );
}

export interface PeriodicCheckOptions {
  readonly intervalMs: number;
  /** Whether this member leads (only the leader checks). */
  readonly leading: () => boolean;
  /** Raises the CORRUPT alarm for a member (through the log). */
  readonly raiseCorrupt: (memberId: bigint) => Promise<void>;
  /** Members the CORRUPT alarm is raised for already. */
  readonly corruptMembers: () => readonly bigint[];
}

/** The leader's periodic check; returns a stop function. */
export function startPeriodicCorruptionCheck(
  deps: CorruptionCheckDeps,
  options: PeriodicCheckOptions,
): () => void {
  let running = false;
  const round = async () => {
    if (running || !options.leading()) return;
    running = true;
    try {
      const { mismatches, answers } = await findMismatches(deps);
      const raise = async (found: readonly Mismatch[]) => {
        const raised = new Set(options.corruptMembers());
        for (const m of found) {
          if (raised.has(m.id)) continue;
          raised.add(m.id);
          deps.logger.error(
            { member: formatId(m.id), differs: m.reason },
            "corruption check: a member's data differs from the leader's; raising the CORRUPT alarm",
          );
          await options.raiseCorrupt(m.id);
        }
      };
      // The hashes first: a failed read for the second check must not lose what they found.
      await raise(mismatches);
      await raise(await aheadOfLeader(deps, answers));
    } catch (err) {
      deps.logger.warn(
        { err: (err as Error).message },
        "corruption check round failed; trying again next round",
      );
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void round(), options.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Asks a peer's client URL for its HashKV (one connection per question: the checks are rare). */
export async function askPeerHash(
  peer: HashPeer,
  revision: bigint,
  tls: ClientTls,
  deadlineMs: number,
): Promise<MemberHash> {
  const clients = memberClients(peer.clientUrl, tls);
  try {
    const res = await new Promise<etcd.HashKVResponse>((resolve, reject) =>
      clients.maintenance.hashKv(
        { revision },
        new Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, r) => (err ? reject(err) : resolve(r!)),
      ),
    );
    // A client URL behind a shared address could be answered by another member: not its hash.
    const answeredBy = res.header?.memberId ?? 0n;
    if (answeredBy !== peer.id)
      throw new Error(
        `${peer.clientUrl} was answered by member ${formatId(answeredBy)}, not ${formatId(peer.id)}`,
      );
    return { hash: res.hash, revision: res.header?.revision ?? 0n, compactRevision: res.compactRevision };
  } finally {
    clients.close();
  }
}
