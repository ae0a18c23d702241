// The SQLite side of the MVCC store: revision-keyed rows (one per key change, tombstones included),
// leases and a few counters. Every 64-bit column is read with safeIntegers so it arrives as bigint.
import Database from "better-sqlite3";

export interface Row {
  main: bigint;
  sub: bigint;
  key: Buffer;
  create_rev: bigint;
  version: bigint;
  lease: bigint;
  value: Buffer | null;
  tombstone: bigint;
}

export interface LeaseRow {
  id: bigint;
  ttl: bigint;
  remaining_ttl: bigint;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  main INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, create_rev INTEGER NOT NULL,
  version INTEGER NOT NULL, lease INTEGER NOT NULL, value BLOB, tombstone INTEGER NOT NULL,
  PRIMARY KEY (main, sub)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, remaining_ttl INTEGER NOT NULL);
`;

export class Backend {
  readonly db: Database.Database;
  private readonly insertRow: Database.Statement;
  private readonly selectRow: Database.Statement;
  private readonly deleteRow: Database.Statement;
  private readonly setMeta: Database.Statement;
  private readonly getMeta: Database.Statement;
  private readonly upsertLease: Database.Statement;
  private readonly removeLease: Database.Statement;
  private readonly rowsFrom: Database.Statement;
  private readonly pageCount: Database.Statement;
  private readonly pageSize: Database.Statement;
  private readonly freelistCount: Database.Statement;
  /** One transaction wrapper for every batch (better-sqlite3 builds a new one per `db.transaction`). */
  private readonly runInTransaction: Database.Transaction<(fn: () => unknown) => unknown>;

  constructor(source: string | Buffer) {
    this.db = new Database(source as string);
    // The Raft log is the durable record: after a crash the entries past the recorded applied index
    // are applied again, so the state machine can trade fsync per commit for throughput.
    if (typeof source === "string" && source !== ":memory:") this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(SCHEMA);
    this.insertRow = this.db.prepare(
      "INSERT OR REPLACE INTO kv (main, sub, key, create_rev, version, lease, value, tombstone) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.selectRow = this.db.prepare("SELECT * FROM kv WHERE main = ? AND sub = ?").safeIntegers();
    this.deleteRow = this.db.prepare("DELETE FROM kv WHERE main = ? AND sub = ?");
    this.setMeta = this.db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)");
    this.getMeta = this.db.prepare("SELECT value FROM meta WHERE name = ?").safeIntegers().pluck();
    this.upsertLease = this.db.prepare(
      "INSERT OR REPLACE INTO lease (id, ttl, remaining_ttl) VALUES (?, ?, ?)",
    );
    this.removeLease = this.db.prepare("DELETE FROM lease WHERE id = ?");
    this.rowsFrom = this.db
      .prepare("SELECT * FROM kv WHERE main >= ? AND main <= ? ORDER BY main, sub LIMIT ?")
      .safeIntegers();
    // Read once per applied batch for the quota check: prepared here, not compiled per call.
    this.pageCount = this.db.prepare("PRAGMA page_count").pluck();
    this.pageSize = this.db.prepare("PRAGMA page_size").pluck();
    this.freelistCount = this.db.prepare("PRAGMA freelist_count").pluck();
    this.runInTransaction = this.db.transaction((fn: () => unknown) => fn());
  }

  transaction<T>(fn: () => T): T {
    return this.runInTransaction(fn) as T;
  }

  putRow(r: Row): void {
    this.insertRow.run(r.main, r.sub, r.key, r.create_rev, r.version, r.lease, r.value, r.tombstone);
  }

  row(main: bigint, sub: number): Row | undefined {
    return this.selectRow.get(main, sub) as Row | undefined;
  }

  removeRow(main: bigint, sub: number): void {
    this.deleteRow.run(main, sub);
  }

  /** Rows with fromMain <= main <= toMain in revision order, at most `limit`. */
  rowsBetween(fromMain: bigint, toMain: bigint, limit: number): Row[] {
    return this.rowsFrom.all(fromMain, toMain, limit) as Row[];
  }

  *allRows(): Generator<Row> {
    yield* this.db.prepare("SELECT * FROM kv ORDER BY main, sub").safeIntegers().iterate() as Iterable<Row>;
  }

  allLeases(): LeaseRow[] {
    return this.db.prepare("SELECT * FROM lease ORDER BY id").safeIntegers().all() as LeaseRow[];
  }

  meta(name: string): bigint {
    return (this.getMeta.get(name) as bigint | undefined) ?? 0n;
  }

  setMetaValue(name: string, value: bigint): void {
    this.setMeta.run(name, value);
  }

  putLease(id: bigint, ttl: bigint, remaining: bigint): void {
    this.upsertLease.run(id, ttl, remaining);
  }

  deleteLease(id: bigint): void {
    this.removeLease.run(id);
  }

  sizeBytes(): bigint {
    const pages = this.pageCount.get() as number;
    const pageSize = this.pageSize.get() as number;
    return BigInt(pages) * BigInt(pageSize);
  }

  sizeInUseBytes(): bigint {
    const free = this.freelistCount.get() as number;
    const pageSize = this.pageSize.get() as number;
    return this.sizeBytes() - BigInt(free) * BigInt(pageSize);
  }

  serialize(): Buffer {
    return this.db.serialize();
  }

  close(): void {
    this.db.close();
  }
}
