// The safety invariants of Raft, checked by the simulator as the cluster runs. Each check throws
// a Violation naming the invariant; the simulator reports the first one per seed.
import type { RaftCore } from "../core/raft-core.js";
import type { Entry, NodeId } from "../core/types.js";
import type { SimDisk } from "./sim-disk.js";

export class Violation extends Error {
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`${invariant}: ${detail}`);
  }
}

/** FNV-1a over bytes, continued from `h`: a cheap digest for comparing logs and state machines. */
export function fnv(h: number, bytes: Uint8Array): number {
  let x = h >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    x ^= bytes[i] as number;
    x = Math.imul(x, 16777619) >>> 0;
  }
  return x;
}

function entryDigest(e: Entry): number {
  return fnv((2166136261 ^ e.type) >>> 0, e.data);
}

/** The state-machine digest after applying `e` on top of `h`. */
export function applyDigest(h: number, e: Entry): number {
  const head = new TextEncoder().encode(`${e.index}/${e.term}/`);
  return fnv(fnv(h, head), e.data);
}

export class Checker {
  private readonly leaderOfTerm = new Map<bigint, NodeId>();
  private readonly entryAt = new Map<string, { digest: number; prevTerm: bigint }>();
  /** index → term of every entry known committed. */
  readonly committedTerm = new Map<bigint, bigint>();
  maxCommitted = 0n;
  /** index → state digest after applying it. */
  private readonly appliedDigest = new Map<bigint, number>();
  private readonly checkedLeaderTerm = new Map<NodeId, bigint>();
  private readonly checkedLeaderCommit = new Map<string, bigint>();

  /** Election safety: at most one leader per term. */
  checkLeader(id: NodeId, core: RaftCore): void {
    if (core.role !== 2) return;
    const other = this.leaderOfTerm.get(core.term);
    if (other !== undefined && other !== id) {
      throw new Violation("election safety", `members ${other} and ${id} both led term ${core.term}`);
    }
    this.leaderOfTerm.set(core.term, id);
    if (this.checkedLeaderTerm.get(id) !== core.term) {
      this.checkedLeaderTerm.set(id, core.term);
      this.checkLeaderCompleteness(id, core);
    }
  }

  /** Leader completeness: a new leader's log holds every entry committed so far. */
  private checkLeaderCompleteness(id: NodeId, core: RaftCore): void {
    const last = core.log.lastIndex();
    if (last < this.maxCommitted) {
      throw new Violation(
        "leader completeness",
        `leader ${id} of term ${core.term} ends at ${last} < ${this.maxCommitted}`,
      );
    }
    for (let i = core.log.firstIndex(); i <= this.maxCommitted; i++) {
      const want = this.committedTerm.get(i);
      if (want !== undefined && core.log.termOrZero(i) !== want) {
        throw new Violation(
          "leader completeness",
          `leader ${id} of term ${core.term} lacks committed entry ${i}/${want}`,
        );
      }
    }
  }

  /** Log matching: entries with the same index and term are identical and have the same predecessor. */
  checkAppended(id: NodeId, entries: readonly Entry[], termOf: (index: bigint) => bigint): void {
    for (const e of entries) {
      const key = `${e.index}:${e.term}`;
      const digest = entryDigest(e);
      const prevTerm = termOf(e.index - 1n);
      const seen = this.entryAt.get(key);
      if (seen === undefined) {
        this.entryAt.set(key, { digest, prevTerm });
      } else if (seen.digest !== digest || seen.prevTerm !== prevTerm) {
        throw new Violation("log matching", `member ${id} holds a different entry ${key}`);
      }
    }
  }

  /** Records entries a member considers committed; a committed index never changes its term. */
  recordCommitted(id: NodeId, from: bigint, to: bigint, termOf: (index: bigint) => bigint): void {
    for (let i = from + 1n; i <= to; i++) {
      const t = termOf(i);
      if (t === 0n) continue; // compacted: covered by the snapshot the member installed
      const want = this.committedTerm.get(i);
      if (want === undefined) this.committedTerm.set(i, t);
      else if (want !== t)
        throw new Violation("committed entry lost", `member ${id} commits ${i}/${t}, was ${i}/${want}`);
    }
    if (to > this.maxCommitted) this.maxCommitted = to;
  }

  /**
   * No committed entry lost: when a leader commits index C, a majority of its voters must hold
   * entry C on DURABLE storage (or a durable snapshot covering it), so that no crash can undo it.
   */
  checkDurableQuorum(id: NodeId, core: RaftCore, disks: ReadonlyMap<NodeId, SimDisk>): void {
    const commit = core.log.committed;
    // Only what this leader itself commits is checked, under the configuration of that moment: an
    // inherited commit was made under an earlier configuration, whose majority overlaps this one.
    const key = `${id}:${core.term}`;
    const checked = this.checkedLeaderCommit.get(key);
    this.checkedLeaderCommit.set(key, commit);
    if (checked === undefined || checked >= commit) return;
    const term = core.log.termOrZero(commit);
    if (term === 0n) return;
    let holders = 0;
    const voters = core.tracker.voters;
    for (const v of voters) {
      const disk = disks.get(v);
      if (disk !== undefined && holdsDurably(disk, commit, term)) holders++;
    }
    if (holders < Math.floor(voters.size / 2) + 1) {
      throw new Violation(
        "committed entry lost",
        `leader ${id} committed ${commit}/${term} but only ${holders} of ${voters.size} voters hold it durably`,
      );
    }
  }

  /** State-machine safety: every member reaches the same state after applying the same index. */
  checkApplied(id: NodeId, index: bigint, digest: number): void {
    const want = this.appliedDigest.get(index);
    if (want === undefined) this.appliedDigest.set(index, digest);
    else if (want !== digest)
      throw new Violation("state machine safety", `member ${id} diverged at index ${index}`);
  }
}

function holdsDurably(disk: SimDisk, index: bigint, term: bigint): boolean {
  const s = disk.durable;
  if (s.snapshot().metadata.index >= index) return true;
  if (index < s.firstIndex() || index > s.lastIndex()) return false;
  return s.term(index) === term;
}
