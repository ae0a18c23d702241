// The newest log entries kept in memory beside the SQLite log, so that what was just written (the
// entries a leader sends to its followers after its own write, the committed entries a member
// applies) is not read back from SQLite, decoded and copied again. Bounded in entries and bytes;
// older entries are read from SQLite as before. The tail always ends at the log's last index.
import type { Entry } from "../core/types.js";

export class EntryTail {
  private ents: Entry[] = [];
  private bytes = 0;

  constructor(
    private readonly entriesMax: number,
    private readonly bytesMax: number,
  ) {
    if (entriesMax < 1 || bytesMax < 1) throw new Error("EntryTail bounds must be positive");
  }

  /** Index of the first entry held (meaningless when empty). */
  get firstIndex(): bigint {
    return this.ents[0]?.index ?? 0n;
  }

  get length(): number {
    return this.ents.length;
  }

  /** True when `index` is held. */
  has(index: bigint): boolean {
    const first = this.ents[0];
    return first !== undefined && index >= first.index && index < first.index + BigInt(this.ents.length);
  }

  /** The entry at `index`, which must be held. */
  at(index: bigint): Entry {
    const e = this.ents[Number(index - this.firstIndex)];
    if (e === undefined || e.index !== index) throw new Error(`entry ${index} is not in the tail (a bug)`);
    return e;
  }

  /**
   * Appends `fresh` (contiguous, ascending) after dropping every held entry at or after its first
   * index (the conflicting suffix the log store deletes too). A gap before `fresh` empties the tail.
   */
  append(fresh: readonly Entry[]): void {
    const head = fresh[0];
    if (head === undefined) return;
    this.truncateFrom(head.index);
    const last = this.ents[this.ents.length - 1];
    if (last !== undefined && last.index + 1n !== head.index) this.clear();
    for (const e of fresh) {
      this.ents.push(e);
      this.bytes += e.data.length;
    }
    this.trim();
  }

  /** Drops entries with index >= `index`. */
  truncateFrom(index: bigint): void {
    if (this.ents.length === 0 || index > this.ents[this.ents.length - 1]!.index) return;
    if (index <= this.firstIndex) {
      this.clear();
      return;
    }
    for (const e of this.ents.splice(Number(index - this.firstIndex))) this.bytes -= e.data.length;
  }

  /** Drops entries with index <= `index` (log compaction). */
  dropUpTo(index: bigint): void {
    if (this.ents.length === 0 || index < this.firstIndex) return;
    const n = Math.min(this.ents.length, Number(index - this.firstIndex) + 1);
    for (const e of this.ents.splice(0, n)) this.bytes -= e.data.length;
  }

  clear(): void {
    this.ents = [];
    this.bytes = 0;
  }

  /**
   * Entries [lo, hi) from the tail (all held), at least one, then as many as fit in `maxBytes`,
   * exactly as the SQLite read would return them.
   */
  slice(lo: bigint, hi: bigint, maxBytes: number): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.at(i);
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Drops the oldest entries beyond the bounds, in chunks (one splice per quarter of the bound). */
  private trim(): void {
    if (this.ents.length <= this.entriesMax && this.bytes <= this.bytesMax) return;
    let n = 0;
    let dropped = 0;
    const entriesTarget = Math.floor((this.entriesMax * 3) / 4);
    const bytesTarget = Math.floor((this.bytesMax * 3) / 4);
    while (
      n < this.ents.length - 1 &&
      (this.ents.length - n > entriesTarget || this.bytes - dropped > bytesTarget)
    ) {
      dropped += this.ents[n]!.data.length;
      n++;
    }
    this.ents.splice(0, n);
    this.bytes -= dropped;
  }
}
