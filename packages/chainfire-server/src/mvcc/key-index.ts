// The in-memory key index, as etcd's treeIndex: for every key its revision history (with tombstones)
// until compaction, plus the current value, so reads at the newest revision never touch SQLite and
// reads at an older revision touch it once per key.
import type { mvccpb } from "@photoncloud/chainfire-api";
import { type KeyRange, inRange } from "./key-range.js";

export interface RevisionEntry {
  readonly main: bigint;
  readonly sub: number;
  readonly tombstone: boolean;
}

export interface KeyRecord {
  readonly key: string;
  /** Ascending by (main, sub); the last entry is the key's newest state. */
  revisions: RevisionEntry[];
  /** The live value at the newest revision, or null when the newest entry is a tombstone. */
  current: mvccpb.KeyValue | null;
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
      record = { key, revisions: [], current: null };
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

/** The entry visible at `revision` (the last one with main <= revision), or undefined. */
export function entryAt(record: KeyRecord, revision: bigint): RevisionEntry | undefined {
  const revisions = record.revisions;
  let lo = 0;
  let hi = revisions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (revisions[mid]!.main <= revision) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? undefined : revisions[lo - 1];
}
