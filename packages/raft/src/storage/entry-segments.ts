// The Raft log's entries in SQLite, as a log in segments. `entries` takes new entries; once it holds
// `segmentBytes` of entry data it is sealed (renamed `entries_seg_<its first index>`) in the
// transaction that filled it, and a new `entries` is begun. A sealed segment whose every entry is
// compacted is dropped whole, so compaction deletes no row one by one.
//
// Why segments of bounded size: DROP TABLE frees every page of the table, on the event loop, in one
// go (about 0.6 ms per MB of entries here). Deleting compacted rows one by one made every write
// after a snapshot several times slower (chainfire-server/BENCHMARKS.md, run 71); dropping all of
// a snapshot interval at once stalls the member for as long as that interval is large (144-215 ms
// for 313 MB), which an interval of large entries could stretch past an election timeout. So
// segments are dropped one at a time, at most one per `dropIntervalMs`, riding along with the
// log's own transactions.
import type Database from "better-sqlite3";

/** A segment's default size (data bytes): its DROP takes about 10 ms here. */
export const SEGMENT_BYTES = 16 << 20;
/**
 * What a row costs beside its data, counted toward a segment's size: a DROP's time follows the
 * table's pages, so a segment of tiny entries is bounded by their rows.
 */
const ROW_BYTES = 32;
/** The least time between two drops of compacted segments. */
export const DROP_INTERVAL_MS = 100;

const COLUMNS = "(idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL)";
/** The names of sealed segments: `entries_old` is the one older table of the previous layout. */
const SEALED_NAME = /^entries_(old|seg_[0-9]+)$/;
/** The names of tables whose entries were replaced (a leader's snapshot, a cut): dropped, never read. */
const DOOMED_NAME = /^entries_doomed_([0-9]+)$/;

export type Row = { idx: bigint; term: bigint; type: bigint; data: Buffer };
type IdxTerm = { idx: bigint; term: bigint };

/** A sealed table and the indexes it holds, first to last (every one older than the next table's). */
interface Sealed {
  readonly name: string;
  readonly first: bigint;
  last: bigint;
  range?: Database.Statement;
  term?: Database.Statement;
}

export interface EntrySegmentsOptions {
  segmentBytes?: number;
  dropIntervalMs?: number;
}

export class EntrySegments {
  private readonly segmentBytes: number;
  private readonly dropIntervalMs: number;
  /** Sealed segments in index order. */
  private readonly sealed: Sealed[] = [];
  /** Tables whose entries were replaced, to drop (see `deleteAll`, `deleteFrom`). */
  private readonly doomed: string[] = [];
  /** The highest compacted index: sealed segments ending at or before it may be dropped. */
  private compacted = 0n;
  /** When the last drop happened (`performance.now()`), for `dropIntervalMs`. */
  private lastDropAt = Number.NEGATIVE_INFINITY;
  /**
   * Bytes in `entries`: its entries' data and ROW_BYTES a row (a deleted suffix is not subtracted:
   * the table is sealed a little sooner).
   */
  private activeBytes = 0;
  /** Numbers the doomed tables' names. */
  private nextDoomed = 0;
  private readonly stmts: {
    insert: Database.Statement;
    deleteFrom: Database.Statement;
    first: Database.Statement;
    range: Database.Statement;
    term: Database.Statement;
    last: Database.Statement;
  };

  constructor(
    private readonly db: Database.Database,
    opts: EntrySegmentsOptions = {},
  ) {
    this.segmentBytes = opts.segmentBytes ?? SEGMENT_BYTES;
    this.dropIntervalMs = opts.dropIntervalMs ?? DROP_INTERVAL_MS;
    db.exec(`CREATE TABLE IF NOT EXISTS entries ${COLUMNS}`);
    this.stmts = {
      insert: db.prepare("INSERT OR REPLACE INTO entries (idx, term, type, data) VALUES (?, ?, ?, ?)"),
      deleteFrom: db.prepare("DELETE FROM entries WHERE idx >= ?"),
      first: db.prepare("SELECT min(idx) FROM entries").pluck().safeIntegers(),
      range: db
        .prepare("SELECT idx, term, type, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx")
        .safeIntegers(),
      term: db.prepare("SELECT term FROM entries WHERE idx = ?").pluck().safeIntegers(),
      last: db.prepare("SELECT idx, term FROM entries ORDER BY idx DESC LIMIT 1").safeIntegers(),
    };
    this.reload(0n);
  }

  /**
   * Reads the tables and their bounds from the database, forgetting what was kept in memory: at
   * open, and after a transaction that failed (SQLite took back its renames and drops). `compacted`
   * is the log's compaction point as the database has it.
   */
  reload(compacted: bigint): void {
    const db = this.db;
    this.sealed.length = 0;
    this.doomed.length = 0;
    this.compacted = compacted;
    let doomed = this.nextDoomed;
    const names = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
    for (const name of names) {
      const n = DOOMED_NAME.exec(name)?.[1];
      if (n !== undefined) {
        doomed = Math.max(doomed, Number(n) + 1);
        this.doomed.push(name);
      }
      if (!SEALED_NAME.test(name)) continue;
      const bounds = db
        .prepare(`SELECT min(idx) AS first, max(idx) AS last FROM ${name}`)
        .safeIntegers()
        .get() as {
        first: bigint | null;
        last: bigint | null;
      };
      // An empty sealed table (an `entries_old` never filled) holds nothing to read.
      if (bounds.first === null || bounds.last === null) this.doomed.push(name);
      else this.sealed.push({ name, first: bounds.first, last: bounds.last });
    }
    this.sealed.sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    this.nextDoomed = doomed;
    this.activeBytes = Number(
      db.prepare(`SELECT coalesce(sum(length(data) + ${ROW_BYTES}), 0) FROM entries`).pluck().get(),
    );
  }

  /** Appends one entry to `entries` (inside the caller's transaction). */
  insert(idx: bigint, term: bigint, type: number, data: Buffer): void {
    this.stmts.insert.run(idx, term, type, data);
    this.activeBytes += data.length + ROW_BYTES;
  }

  /**
   * After the appends of a transaction: seals `entries` once it holds a segment's worth, and drops
   * a compacted segment when one waits and the last drop is long enough ago.
   */
  afterWrite(): void {
    if (this.activeBytes >= this.segmentBytes) this.seal();
    this.dropOneCompacted(false);
  }

  private seal(): void {
    const first = this.activeFirst();
    const last = this.stmts.last.get() as IdxTerm | undefined;
    if (first === null || last === undefined) {
      this.activeBytes = 0;
      return;
    }
    // Named by its first index: no two segments share one (a doomed one is renamed first).
    const name = `entries_seg_${first}`;
    this.db.exec(`ALTER TABLE entries RENAME TO ${name}; CREATE TABLE entries ${COLUMNS};`);
    this.sealed.push({ name, first, last: last.idx });
    this.activeBytes = 0;
  }

  private activeFirst(): bigint | null {
    return this.stmts.first.get() as bigint | null;
  }

  /** Renames a table out of the way, to be dropped later (see `dropOneCompacted`). */
  private doom(name: string): void {
    const doomed = `entries_doomed_${this.nextDoomed++}`;
    this.db.exec(`ALTER TABLE ${name} RENAME TO ${doomed}`);
    this.doomed.push(doomed);
  }

  /**
   * Deletes every entry at or after `idx` (a conflicting suffix), in whichever tables hold them:
   * a table cut whole is renamed out of the way; only a table cut partway loses rows one by one.
   */
  deleteFrom(idx: bigint): void {
    const first = this.activeFirst();
    if (first !== null && first >= idx) {
      this.doom("entries");
      this.db.exec(`CREATE TABLE entries ${COLUMNS}`);
      this.activeBytes = 0;
    } else if (first !== null) {
      this.stmts.deleteFrom.run(idx);
    }
    while (this.sealed.length > 0) {
      const s = this.sealed[this.sealed.length - 1] as Sealed;
      if (s.last < idx) break;
      if (s.first >= idx) {
        this.doom(s.name);
        this.sealed.pop();
        continue;
      }
      this.db.prepare(`DELETE FROM ${s.name} WHERE idx >= ?`).run(idx);
      s.last = idx - 1n;
      break;
    }
  }

  /**
   * Empties the log (a snapshot from the leader replaces it). Every table is renamed out of the way
   * at once, to be dropped one at a time as compacted segments are: emptying them here would cost
   * what dropping them does, in one stall.
   */
  deleteAll(): void {
    for (const s of this.sealed) this.doom(s.name);
    if (this.stmts.last.get() !== undefined) {
      this.doom("entries");
      this.db.exec(`CREATE TABLE entries ${COLUMNS}`);
    }
    this.sealed.length = 0;
    this.activeBytes = 0;
  }

  /**
   * Every entry up to `index` is compacted: the sealed segments that end there or before are
   * dropped, one now (inside the caller's transaction) and the others by later writes (`afterWrite`).
   */
  compactTo(index: bigint): void {
    if (index > this.compacted) this.compacted = index;
    this.dropOneCompacted(true);
  }

  private dropOneCompacted(now: boolean): void {
    const oldest = this.sealed[0];
    const compacted = oldest !== undefined && oldest.last <= this.compacted;
    if (this.doomed.length === 0 && !compacted) return;
    const t = performance.now();
    if (!now && t - this.lastDropAt < this.dropIntervalMs) return;
    if (this.doomed.length > 0) {
      this.db.exec(`DROP TABLE ${this.doomed[0]}`);
      this.doomed.shift();
    } else {
      this.db.exec(`DROP TABLE ${(oldest as Sealed).name}`);
      this.sealed.shift();
    }
    this.lastDropAt = t;
  }

  /** The rows in [lo, hi) in index order, across the tables that hold them. */
  *rows(lo: bigint, hi: bigint): Generator<Row> {
    for (const s of this.sealed) {
      if (s.last < lo || s.first >= hi) continue;
      s.range ??= this.db
        .prepare(`SELECT idx, term, type, data FROM ${s.name} WHERE idx >= ? AND idx < ? ORDER BY idx`)
        .safeIntegers();
      yield* s.range.iterate(lo, hi) as Iterable<Row>;
    }
    yield* this.stmts.range.iterate(lo, hi) as Iterable<Row>;
  }

  /** The term of entry `idx`, or undefined when no table holds it. */
  term(idx: bigint): bigint | undefined {
    const s = this.sealed.find((x) => x.first <= idx && idx <= x.last);
    if (s === undefined) return this.stmts.term.get(idx) as bigint | undefined;
    s.term ??= this.db.prepare(`SELECT term FROM ${s.name} WHERE idx = ?`).pluck().safeIntegers();
    return s.term.get(idx) as bigint | undefined;
  }

  /** The newest entry (`entries` holds the newest when it has any). */
  lastRow(): IdxTerm | undefined {
    const active = this.stmts.last.get() as IdxTerm | undefined;
    if (active !== undefined) return active;
    const s = this.sealed[this.sealed.length - 1];
    if (s === undefined) return undefined;
    const term = this.term(s.last);
    return term === undefined ? undefined : { idx: s.last, term };
  }

  /** The names of the tables read, oldest first (for tests and diagnostics). */
  tables(): string[] {
    return [...this.sealed.map((s) => s.name), "entries"];
  }
}
