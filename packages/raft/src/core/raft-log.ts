// The replicated log as the core sees it: stable storage plus the unstable tail, the commit index
// and the applied index. Invariant: applied <= committed <= lastIndex.
import { assert, maxBigint, minBigint } from "./assert.js";
import { limitEntriesBytes } from "./entry-size.js";
import { CompactedError, UnavailableError } from "./errors.js";
import type { Entry, LogStorage, Snapshot } from "./types.js";
import { Unstable } from "./unstable.js";

export class RaftLog {
  readonly unstable: Unstable;
  committed: bigint;
  applied: bigint;

  constructor(
    readonly storage: LogStorage,
    committed: bigint,
    applied: bigint,
  ) {
    this.unstable = new Unstable(storage.lastIndex() + 1n);
    // A restarted member re-delivers committed entries after `applied`, but never before the snapshot.
    this.applied = maxBigint(applied, storage.firstIndex() - 1n);
    assert(
      this.applied <= storage.lastIndex(),
      `applied ${applied} beyond last index ${storage.lastIndex()}`,
    );
    // An applied entry was committed: a commit index persisted without fsync (mustSync false) may
    // lag a state machine that records its applied index durably.
    this.committed = maxBigint(committed, this.applied);
    assert(this.committed <= this.lastIndex(), `commit ${committed} beyond last index ${this.lastIndex()}`);
  }

  firstIndex(): bigint {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): bigint {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): bigint {
    return this.term(this.lastIndex());
  }

  /** Term of entry `index`; throws CompactedError/UnavailableError outside [firstIndex-1, lastIndex]. */
  term(index: bigint): bigint {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    if (index < this.firstIndex() - 1n) throw new CompactedError(index);
    if (index > this.lastIndex()) throw new UnavailableError(index);
    return this.storage.term(index);
  }

  /**
   * Term of entry `index`, or 0 when it is compacted or not present. Checks the bounds first: a
   * follower asks for the term of every entry past its log on each append (findConflict), and an
   * exception per append would be built, with its stack trace, only to be caught here.
   */
  termOrZero(index: bigint): bigint {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    if (index < this.firstIndex() - 1n || index > this.lastIndex()) return 0n;
    try {
      return this.term(index);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return 0n;
      throw e;
    }
  }

  matchTerm(index: bigint, term: bigint): boolean {
    return this.termOrZero(index) === term;
  }

  isUpToDate(lastIndex: bigint, term: bigint): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /** The highest index whose entry (and every entry before it) is on stable storage. */
  persistedIndex(): bigint {
    if (this.unstable.snapshot !== null) return 0n;
    return this.unstable.offset - 1n;
  }

  /**
   * Appends a follower's incoming entries after (index, logTerm) if the log matches there.
   * Returns the last index of the new entries, or undefined on mismatch.
   */
  maybeAppend(index: bigint, logTerm: bigint, committed: bigint, ents: readonly Entry[]): bigint | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNewIndex = index + BigInt(ents.length);
    const conflict = this.findConflict(ents);
    if (conflict !== 0n) {
      assert(conflict > this.committed, `conflict at ${conflict} with committed ${this.committed}`);
      this.append(ents.slice(Number(conflict - index - 1n)));
    }
    this.commitTo(minBigint(committed, lastNewIndex));
    return lastNewIndex;
  }

  append(ents: readonly Entry[]): bigint {
    const first = ents[0];
    if (first === undefined) return this.lastIndex();
    assert(
      first.index - 1n >= this.committed,
      `append after ${first.index - 1n} below commit ${this.committed}`,
    );
    assert(first.index <= this.lastIndex() + 1n, `append at ${first.index} leaves a gap`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** The first entry that conflicts with the log (same index, different term), or 0. */
  private findConflict(ents: readonly Entry[]): bigint {
    for (const e of ents) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0n;
  }

  /**
   * The largest index <= `index` whose term is <= `term`: where a log with (index, term) may match
   * ours. Used for fast backtracking, skipping whole terms per round trip.
   */
  findConflictByTerm(index: bigint, term: bigint): { index: bigint; term: bigint } {
    let i = index;
    for (; i > 0n; i--) {
      let t: bigint;
      try {
        t = this.term(i);
      } catch {
        return { index: i, term: 0n };
      }
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0n, term: 0n };
  }

  commitTo(index: bigint): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Commits `index` if it is in `term` (a leader only counts replicas of current-term entries). */
  maybeCommit(index: bigint, term: bigint): boolean {
    if (index > this.committed && this.termOrZero(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  appliedTo(index: bigint): void {
    if (index === 0n) return;
    assert(
      index <= this.committed && index >= this.applied,
      `applied ${index} outside [${this.applied}, ${this.committed}]`,
    );
    this.applied = index;
  }

  /** Entries in [lo, hi) within `maxBytes` (at least one). Throws CompactedError below firstIndex. */
  slice(lo: bigint, hi: bigint, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) throw new CompactedError(lo);
    assert(hi <= this.lastIndex() + 1n, `slice to ${hi} beyond last index ${this.lastIndex()}`);
    let out: Entry[] = [];
    const offset = this.unstable.offset;
    if (lo < offset) {
      out = this.storage.entries(lo, minBigint(hi, offset), maxBytes);
      // Storage returned fewer entries than asked: the byte bound was hit.
      if (BigInt(out.length) < minBigint(hi, offset) - lo) return out;
    }
    if (hi > offset) out = out.concat(this.unstable.slice(maxBigint(lo, offset), hi));
    return limitEntriesBytes(out, maxBytes);
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > maxBigint(this.applied, this.firstIndex() - 1n);
  }

  nextCommittedEntries(maxBytes: number): Entry[] {
    const lo = maxBigint(this.applied + 1n, this.firstIndex());
    if (this.committed + 1n <= lo) return [];
    return this.slice(lo, this.committed + 1n, maxBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(snap: Snapshot): void {
    this.committed = snap.metadata.index;
    this.unstable.restore(snap);
  }
}
