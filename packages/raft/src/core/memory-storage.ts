// An in-memory LogStorage: the reference store for tests and the simulator. It holds a snapshot
// (metadata, plus data) and the entries after it, exactly the shape the durable store keeps.
import { assert } from "./assert.js";
import { limitEntriesBytes } from "./entry-size.js";
import { CompactedError, UnavailableError } from "./errors.js";
import {
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  type HardState,
  type LogStorage,
  type NodeId,
  type Snapshot,
} from "./types.js";

export class MemoryStorage implements LogStorage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot;
  /** The configuration as of the last applied conf change (or the snapshot), reported at start-up. */
  private confState: ConfState;
  /** The compaction point: entries <= dummyIndex are gone; its term is still known. */
  private dummyIndex = 0n;
  private dummyTerm = 0n;
  /** Entries with index dummyIndex + 1 onwards. */
  private ents: Entry[] = [];

  constructor(init?: { voters?: NodeId[]; learners?: NodeId[] }) {
    const confState: ConfState = { voters: [...(init?.voters ?? [])], learners: [...(init?.learners ?? [])] };
    this.snap = { metadata: { index: 0n, term: 0n, confState }, data: new Uint8Array() };
    this.confState = confState;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.confState };
  }

  /**
   * Records the configuration after a conf change entry was applied, for a driver whose state
   * machine persists its applied index (it restarts with `applied` past the snapshot, so the
   * configuration must be as of `applied`).
   */
  setConfState(cs: ConfState): void {
    this.confState = cs;
  }

  hardStateNow(): HardState {
    return this.hardState;
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  firstIndex(): bigint {
    return this.dummyIndex + 1n;
  }

  lastIndex(): bigint {
    return this.dummyIndex + BigInt(this.ents.length);
  }

  term(index: bigint): bigint {
    if (index < this.dummyIndex) throw new CompactedError(index);
    if (index === this.dummyIndex) return this.dummyTerm;
    const e = this.ents[Number(index - this.dummyIndex - 1n)];
    if (e === undefined) throw new UnavailableError(index);
    return e.term;
  }

  entries(lo: bigint, hi: bigint, maxBytes: number): Entry[] {
    if (lo <= this.dummyIndex) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1n) throw new UnavailableError(hi);
    assert(lo <= hi, `entries range [${lo}, ${hi}) inverted`);
    const slice = this.ents.slice(Number(lo - this.dummyIndex - 1n), Number(hi - this.dummyIndex - 1n));
    return limitEntriesBytes(slice, maxBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  append(entries: readonly Entry[]): void {
    // Entries already compacted are dropped; the rest replaces any conflicting suffix.
    const fresh = entries.filter((e) => e.index > this.dummyIndex);
    const head = fresh[0];
    if (head === undefined) return;
    assert(
      head.index <= this.lastIndex() + 1n,
      `append at ${head.index} leaves a gap after ${this.lastIndex()}`,
    );
    this.ents = this.ents.slice(0, Number(head.index - this.dummyIndex - 1n)).concat(fresh);
  }

  /** Replaces the whole log with `snap` (the core only installs a snapshot its log does not match). */
  applySnapshot(snap: Snapshot): void {
    const index = snap.metadata.index;
    if (index <= this.snap.metadata.index) return;
    this.snap = snap;
    this.confState = snap.metadata.confState;
    this.dummyIndex = index;
    this.dummyTerm = snap.metadata.term;
    this.ents = [];
  }

  createSnapshot(index: bigint, confState: ConfState, data: Uint8Array): Snapshot {
    assert(index >= this.snap.metadata.index, `snapshot ${index} older than ${this.snap.metadata.index}`);
    assert(index <= this.lastIndex(), `snapshot ${index} beyond last index ${this.lastIndex()}`);
    this.snap = { metadata: { index, term: this.term(index), confState }, data };
    this.confState = confState;
    return this.snap;
  }

  /** Discards entries up to `index`, which a snapshot must already cover. */
  compact(index: bigint): void {
    if (index <= this.dummyIndex) return;
    assert(
      index <= this.snap.metadata.index,
      `compact ${index} beyond the snapshot at ${this.snap.metadata.index}`,
    );
    const term = this.term(index);
    this.ents = this.ents.slice(Number(index - this.dummyIndex));
    this.dummyIndex = index;
    this.dummyTerm = term;
  }

  /** An independent copy (entries are immutable and shared). */
  clone(): MemoryStorage {
    const copy = new MemoryStorage();
    copy.hardState = this.hardState;
    copy.snap = this.snap;
    copy.confState = this.confState;
    copy.dummyIndex = this.dummyIndex;
    copy.dummyTerm = this.dummyTerm;
    copy.ents = [...this.ents];
    return copy;
  }
}
