// etcd's corruption checks between members (--experimental-initial-corrupt-check and
// --experimental-corrupt-check-time). Members that applied the same log hold the same revisions, so
// their HashKV at one revision is the same once their compactions are too. A member asks each peer,
// over the peer's client URL, for its HashKV at the asking member's current revision:
// - at start (initial check) a member whose hash differs from a peer's refuses to start, before it
//   serves a client;
// - on an interval the leader compares and raises the CORRUPT alarm for each member that differs
//   (every client write is then refused, as etcd does, until an operator disarms it).
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
}

export interface CorruptionCheckDeps {
  /** The other members with a published client URL. */
  peers(): HashPeer[];
  /** This member's HashKV (0: at its current revision). */
  localHash(revision: bigint): Promise<MemberHash>;
  /** A peer's HashKV at `revision`. */
  peerHash(peer: HashPeer, revision: bigint): Promise<MemberHash>;
  readonly logger: Logger;
}

/**
 * The peers whose hash at this member's current revision differs from its own while their
 * compaction is the same (a different compaction makes different hashes of the same data).
 */
export async function findMismatches(
  deps: CorruptionCheckDeps,
): Promise<{ revision: bigint; mismatches: Mismatch[]; compared: number }> {
  const own = await deps.localHash(0n);
  const answers = await Promise.all(
    deps.peers().map(async (peer) => {
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
  );
  const mismatches: Mismatch[] = [];
  let compared = 0;
  for (const answer of answers) {
    if (answer === null || answer.theirs.compactRevision !== own.compactRevision) continue;
    compared++;
    if (answer.theirs.hash !== own.hash)
      mismatches.push({
        id: answer.peer.id,
        revision: own.revision,
        ownHash: own.hash,
        peerHash: answer.theirs.hash,
      });
  }
  return { revision: own.revision, mismatches, compared };
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
      const { mismatches } = await findMismatches(deps);
      const raised = new Set(options.corruptMembers());
      for (const m of mismatches) {
        if (raised.has(m.id)) continue;
        deps.logger.error(
          {
            member: formatId(m.id),
            revision: m.revision.toString(),
            hash: m.peerHash,
            leaderHash: m.ownHash,
          },
          "corruption check: a member's data differs from the leader's; raising the CORRUPT alarm",
        );
        await options.raiseCorrupt(m.id);
      }
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
