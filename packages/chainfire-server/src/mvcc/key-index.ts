// The in-memory key index, as etcd's treeIndex: for every key its revision history (with tombstones)
// until compaction, plus the current value, so reads at the newest revision never touch SQLite and
// reads at an older revision touch it once per key.
import type { mvccpb } from "@photoncloud/chainfire-api";
import { type KeyRange, inRange } from "./key-range.js";

/**
 * One key's entry in the index: its revision history, oldest first, and its current value.
 *
 * The history is packed into one BigInt64Array, two slots per entry: the main revision, then the
 * sub-revision, stored as -(sub + 1) for a tombstone. Like etcd's slice of revision structs it holds
 * no pointers, so the collector never visits the entries however long the history grows before a
 * compaction. An object and a BigInt per entry made every mark-compact walk two heap objects per
 * write ever made to the key.
 */
export class KeyRecord {
  private slots = new BigInt64Array(2);
  private count = 0;
  /** The live value at the newest revision, or null when the newest entry is a tombstone. */
  current: mvccpb.KeyValue | null = null;

  constructor(readonly key: string) {}

  /** How many entries the history holds. */
  get length(): number {
    return this.count;
  }

  push(main: bigint, sub: number, tombstone: boolean): void {
    if (2 * this.count === this.slots.length) {
      const grown = new BigInt64Array(this.slots.length * 2);
      grown.set(this.slots);
      this.slots = grown;
    }
    this.slots[2 * this.count] = main;
    this.slots[2 * this.count + 1] = BigInt(tombstone ? -(sub + 1) : sub);
    this.count++;
  }

  /** The main revision of entry `i` (0 is the oldest). */
  main(i: number): bigint {
    return this.slots[2 * i]!;
  }

  sub(i: number): number {
    const packed = Number(this.slots[2 * i + 1]!);
    return packed < 0 ? -packed - 1 : packed;
  }

  tombstone(i: number): boolean {
    return this.slots[2 * i + 1]! < 0n;
  }

  /** The position of the entry visible at `revision` (the last with main <= revision), or -1. */
  indexAt(revision: bigint): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.slots[2 * mid]! <= revision) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** Drops the oldest `n` entries (compaction), giving back the space when most of it is unused. */
  dropOldest(n: number): void {
    this.slots.copyWithin(0, 2 * n, 2 * this.count);
    this.count -= n;
    if (this.slots.length > 8 && 8 * this.count <= this.slots.length) {
      this.slots = this.slots.slice(0, Math.max(2, 4 * this.count));
    }
  }
}

export class KeyIndex {
  private readonly records = new Map<string, KeyRecord>();
  /** Every indexed key in byte order; binary-searched for range scans. */
  private readonly sortedKeys: string[] = [];

  get size(): number {
    return this.records.size;
  }

  get(key: string): KeyRecord | undefined {
    return this.records.get(key);
  }

  getOrCreate(key: string): KeyRecord {
    let record = this.records.get(key);
    if (record === undefined) {
      record = new KeyRecord(key);
      this.records.set(key, record);
      this.sortedKeys.splice(this.lowerBound(key), 0, key);
    }
    return record;
  }

  /** Bulk loading: adds a record without ordering; call `sortKeys` once afterwards. */
  set(record: KeyRecord): void {
    if (!this.records.has(record.key)) this.sortedKeys.push(record.key);
    this.records.set(record.key, record);
  }

  sortKeys(): void {
    this.sortedKeys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  clear(): void {
    this.records.clear();
    this.sortedKeys.length = 0;
  }

  remove(key: string): void {
    if (!this.records.delete(key)) return;
    const at = this.lowerBound(key);
    if (this.sortedKeys[at] === key) this.sortedKeys.splice(at, 1);
  }

  /** Records in the range, in key order (including keys whose newest entry is a tombstone). */
  *scan(range: KeyRange): Generator<KeyRecord> {
    if (range.single) {
      const record = this.records.get(range.start);
      if (record !== undefined) yield record;
      return;
    }
    for (let i = this.lowerBound(range.start); i < this.sortedKeys.length; i++) {
      const key = this.sortedKeys[i]!;
      if (!inRange(range, key)) return;
      yield this.records.get(key)!;
    }
  }

  *all(): Generator<KeyRecord> {
    for (const key of this.sortedKeys) yield this.records.get(key)!;
  }

  private lowerBound(key: string): number {
    let lo = 0;
    let hi = this.sortedKeys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sortedKeys[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
