// The part of the log not yet on stable storage: an optional incoming snapshot and the entries from
// `offset` on. It shadows the storage: for index >= offset, the unstable entry is the truth.
import { assert } from "./assert.js";
import type { Entry, Snapshot } from "./types.js";

export class Unstable {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];

  constructor(public offset: bigint) {}

  maybeFirstIndex(): bigint | undefined {
    return this.snapshot === null ? undefined : this.snapshot.metadata.index + 1n;
  }

  maybeLastIndex(): bigint | undefined {
    if (this.entries.length > 0) return this.offset + BigInt(this.entries.length) - 1n;
    return this.snapshot === null ? undefined : this.snapshot.metadata.index;
  }

  maybeTerm(index: bigint): bigint | undefined {
    if (index < this.offset) {
      if (this.snapshot !== null && this.snapshot.metadata.index === index)
        return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || index > last) return undefined;
    return this.entries[Number(index - this.offset)]?.term;
  }

  /** Entries up to (index, term) reached stable storage; drop them unless they were replaced since. */
  stableTo(index: bigint, term: bigint): void {
    if (this.maybeTerm(index) !== term || index < this.offset) return;
    this.entries = this.entries.slice(Number(index + 1n - this.offset));
    this.offset = index + 1n;
  }

  stableSnapTo(index: bigint): void {
    if (this.snapshot !== null && this.snapshot.metadata.index === index) this.snapshot = null;
  }

  restore(snap: Snapshot): void {
    this.offset = snap.metadata.index + 1n;
    this.entries = [];
    this.snapshot = snap;
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const first = ents[0];
    if (first === undefined) return;
    const after = first.index;
    if (after === this.offset + BigInt(this.entries.length)) {
      this.entries = this.entries.concat(ents);
    } else if (after <= this.offset) {
      // Replaces everything unstable; storage entries from `after` on are now shadowed.
      this.offset = after;
      this.entries = [...ents];
    } else {
      this.entries = this.entries.slice(0, Number(after - this.offset)).concat(ents);
    }
    assert(
      this.entries.every((e, i) => e.index === this.offset + BigInt(i)),
      "unstable entries not contiguous",
    );
  }

  slice(lo: bigint, hi: bigint): Entry[] {
    assert(
      lo >= this.offset && hi <= this.offset + BigInt(this.entries.length) && lo <= hi,
      "unstable slice",
    );
    return this.entries.slice(Number(lo - this.offset), Number(hi - this.offset));
  }
}
