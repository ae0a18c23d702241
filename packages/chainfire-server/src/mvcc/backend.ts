// The SQLite side of the MVCC store: revision-keyed rows (one per key change, tombstones included),
// leases and a few counters. Every 64-bit column is read with safeIntegers so it arrives as bigint.
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { syncFile, WalCheckpointer, WalFileSync } from "@photoncloud/raft";
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

/** etcd's defaults for --backend-batch-interval (100 ms) and --backend-batch-limit (10,000 writes). */
export const DEFAULT_BATCH_INTERVAL_MS = 100;
export const DEFAULT_BATCH_LIMIT = 10_000;

/** Every write the backend makes: its own statements and the replay into a defragmented copy. */
const WRITE_SQL = {
  putRow:
    "INSERT OR REPLACE INTO kv (main, sub, key, create_rev, version, lease, value, tombstone) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  removeRow: "DELETE FROM kv WHERE main = ? AND sub = ?",
  setMeta: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
  deleteMeta: "DELETE FROM meta WHERE name = ?",
  putLease: "INSERT OR REPLACE INTO lease (id, ttl, remaining_ttl) VALUES (?, ?, ?)",
  deleteLease: "DELETE FROM lease WHERE id = ?",
} as const;

const ROWS_UP_TO_SQL = "SELECT * FROM kv WHERE main <= ? ORDER BY main, sub";

export class Backend {
  readonly db: Database.Database;
  private readonly insertRow: Database.Statement;
  private readonly selectRow: Database.Statement;
  private readonly deleteRow: Database.Statement;
  private readonly setMeta: Database.Statement;
  private readonly getMeta: Database.Statement;
  private readonly upsertLease: Database.Statement;
  private readonly removeLease: Database.Statement;
  private readonly removeMeta: Database.Statement;
  private readonly rowsFrom: Database.Statement;
  private readonly pageCount: Database.Statement;
  private readonly pageSize: Database.Statement;
  private readonly freelistCount: Database.Statement;
  private readonly beginStmt: Database.Statement;
  private readonly commitStmt: Database.Statement;
  private readonly rollbackStmt: Database.Statement;
  /** Rows written into the open write transaction since it began. */
  private pendingWrites = 0;
  private commitTimer: NodeJS.Timeout | null = null;
  /** Checkpoints the WAL from a worker thread, when asked for (see WalCheckpointer). */
  private checkpointer: WalCheckpointer | null = null;
  /** Syncs the file's WAL off the event loop (null for an in-memory database). */
  private readonly files: WalFileSync | null = null;
  /** The file's path (null for an in-memory database), for the connections of `pinRows`. */
  private readonly path: string | null = null;
  /** Open `pinRows` readers: closed with the backend, before its file may be replaced. */
  private readonly readers = new Set<PinnedRows>();
  /** Every write since `startDefragCopy`, while a defragmented copy is being made. */
  private journal: JournalOp[] | null = null;
  /** A rollback happened while journaling: the journal may hold writes that were undone. */
  private journalBroken = false;

  /**
   * @param batchIntervalMs how long applied batches may stay in the open write transaction (etcd's
   *   --backend-batch-interval); 0 commits every batch.
   * @param batchLimit how many row writes one write transaction may hold before the batch that
   *   crosses it commits (etcd's --backend-batch-limit).
   */
  constructor(
    source: string | Buffer,
    private readonly batchIntervalMs = DEFAULT_BATCH_INTERVAL_MS,
    private readonly batchLimit = DEFAULT_BATCH_LIMIT,
    backgroundCheckpoints = false,
  ) {
    this.db = new Database(source as string);
    // The Raft log is the durable record: after a crash the entries past the recorded applied index
    // are applied again, so the state machine can trade fsync per commit for throughput.
    if (typeof source === "string" && source !== ":memory:") {
      this.db.pragma("journal_mode = WAL");
      this.files = new WalFileSync(source);
      this.path = source;
    }
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(SCHEMA);
    this.insertRow = this.db.prepare(WRITE_SQL.putRow);
    this.selectRow = this.db.prepare("SELECT * FROM kv WHERE main = ? AND sub = ?").safeIntegers();
    this.deleteRow = this.db.prepare(WRITE_SQL.removeRow);
    this.setMeta = this.db.prepare(WRITE_SQL.setMeta);
    this.getMeta = this.db.prepare("SELECT value FROM meta WHERE name = ?").safeIntegers().pluck();
    this.upsertLease = this.db.prepare(WRITE_SQL.putLease);
    this.removeLease = this.db.prepare(WRITE_SQL.deleteLease);
    this.removeMeta = this.db.prepare(WRITE_SQL.deleteMeta);
    this.rowsFrom = this.db
      .prepare("SELECT * FROM kv WHERE main >= ? AND main <= ? ORDER BY main, sub LIMIT ?")
      .safeIntegers();
    // Read once per applied batch for the quota check: prepared here, not compiled per call.
    this.pageCount = this.db.prepare("PRAGMA page_count").pluck();
    this.pageSize = this.db.prepare("PRAGMA page_size").pluck();
    this.freelistCount = this.db.prepare("PRAGMA freelist_count").pluck();
    this.beginStmt = this.db.prepare("BEGIN");
    this.commitStmt = this.db.prepare("COMMIT");
    this.rollbackStmt = this.db.prepare("ROLLBACK");
    if (backgroundCheckpoints && typeof source === "string" && source !== ":memory:") {
      this.checkpointer = new WalCheckpointer(this.db);
    }
  }

  /**
   * Runs one applied batch inside the open write transaction (beginning one if needed) and commits
   * it when the batch limit is reached; otherwise a timer commits it `batchIntervalMs` later. As in
   * etcd's backend, a COMMIT per Raft round (WAL frames for every dirty page, and a checkpoint every
   * thousand pages) is the largest fixed cost of a small round. Deferring it is safe: the applied
   * index is written in the same transaction as the data, and the Raft log, durable before an entry
   * is applied, still holds every entry past the last committed applied index, so a crash only
   * means re-applying them at restart. Reads on this connection see the applied, uncommitted rows.
   * A throw (fatal for the member) rolls the whole open transaction back, so the file stays at the
   * last committed applied index.
   */
  transaction<T>(fn: () => T): T {
    if (!this.db.inTransaction) this.beginStmt.run();
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.rollback();
      throw err;
    }
    if (this.pendingWrites >= this.batchLimit || this.batchIntervalMs <= 0) this.commit();
    else this.commitTimer ??= setTimeout(() => this.commit(), this.batchIntervalMs).unref();
    return result;
  }

  /** Told how long each COMMIT took, in seconds. */
  onCommit: ((seconds: number) => void) | null = null;

  /** Commits the open write transaction, if any (before the file is read elsewhere or closed). */
  commit(): void {
    this.clearPending();
    if (!this.db.open || !this.db.inTransaction) return;
    const started = performance.now();
    this.commitStmt.run();
    this.onCommit?.((performance.now() - started) / 1000);
  }

  private rollback(): void {
    // The writes journaled since the last commit are undone here: a defragment copy would keep them.
    if (this.journal !== null) this.journalBroken = true;
    this.clearPending();
    if (this.db.inTransaction) this.rollbackStmt.run();
  }

  private clearPending(): void {
    this.pendingWrites = 0;
    if (this.commitTimer !== null) clearTimeout(this.commitTimer);
    this.commitTimer = null;
  }

  putRow(r: Row): void {
    this.insertRow.run(r.main, r.sub, r.key, r.create_rev, r.version, r.lease, r.value, r.tombstone);
    this.pendingWrites++;
    this.journal?.push({ putRow: { ...r } });
  }

  row(main: bigint, sub: number): Row | undefined {
    return this.selectRow.get(main, sub) as Row | undefined;
  }

  removeRow(main: bigint, sub: number): void {
    this.deleteRow.run(main, sub);
    this.pendingWrites++;
    this.journal?.push({ removeRow: [main, sub] });
  }

  /** Rows with fromMain <= main <= toMain in revision order, at most `limit`. */
  rowsBetween(fromMain: bigint, toMain: bigint, limit: number): Row[] {
    return this.rowsFrom.all(fromMain, toMain, limit) as Row[];
  }

  /**
   * The rows with main <= upTo in revision order, as committed now: the open write transaction is
   * committed and a connection of its own pins a read view of the file, which later writes and
   * compactions do not change, so the caller may read it in chunks across event-loop turns. An
   * in-memory database has no second connection: its rows are read at once. Close it when done.
   */
  pinRows(upTo: bigint): PinnedRows {
    if (this.path === null) {
      const rows = this.db.prepare(ROWS_UP_TO_SQL).safeIntegers();
      return new PinnedRows((rows.all(upTo) as Row[]).values(), () => {});
    }
    this.commit();
    const reader = new Database(this.path, { readonly: true, fileMustExist: true });
    try {
      reader.defaultSafeIntegers(true);
      reader.exec("BEGIN");
      const rows = reader.prepare(ROWS_UP_TO_SQL).iterate(upTo);
      const pinned: PinnedRows = new PinnedRows(rows as Iterator<Row>, () => {
        this.readers.delete(pinned);
        rows.return?.();
        if (reader.open) reader.close();
      });
      this.readers.add(pinned);
      return pinned;
    } catch (err) {
      // Never left open: a restore must be able to replace the file.
      if (reader.open) reader.close();
      throw err;
    }
  }

  *allRows(): Generator<Row> {
    yield* this.db.prepare("SELECT * FROM kv ORDER BY main, sub").safeIntegers().iterate() as Iterable<Row>;
  }

  allLeases(): LeaseRow[] {
    return this.db.prepare("SELECT * FROM lease ORDER BY id").safeIntegers().all() as LeaseRow[];
  }

  /** A stored number; 0n when it was never set. */
  meta(name: string): bigint {
    return this.metaOrUndefined(name) ?? 0n;
  }

  metaOrUndefined(name: string): bigint | undefined {
    return this.getMeta.get(name) as bigint | undefined;
  }

  setMetaValue(name: string, value: bigint): void {
    this.setMeta.run(name, value);
    this.journal?.push({ setMeta: [name, value] });
  }

  deleteMeta(name: string): void {
    this.removeMeta.run(name);
    this.journal?.push({ deleteMeta: name });
  }

  putLease(id: bigint, ttl: bigint, remaining: bigint): void {
    this.upsertLease.run(id, ttl, remaining);
    this.journal?.push({ putLease: [id, ttl, remaining] });
  }

  deleteLease(id: bigint): void {
    this.removeLease.run(id);
    this.journal?.push({ deleteLease: id });
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
    this.commit();
    return this.db.serialize();
  }

  /**
   * Commits the open write transaction and makes the file durable off the event loop; null for an
   * in-memory database.
   */
  sync(): Promise<void> | null {
    this.commit();
    return this.files?.sync() ?? null;
  }

  /** Rebuilds the file to release free pages (VACUUM cannot run inside a transaction). */
  vacuum(): void {
    this.commit();
    this.db.exec("VACUUM");
  }

  /**
   * Starts a defragmented copy of the database at `target`, made off the event loop: the open
   * write transaction is committed, a worker thread runs VACUUM INTO from a read view of its own,
   * and every write made here from now on is recorded. Once this resolves, the caller finishes the
   * copy with `finishDefragCopy` (or drops it with `dropDefragCopy`) before it next awaits anything:
   * writes keep being recorded until then. A file database only.
   */
  async startDefragCopy(target: string): Promise<void> {
    if (this.path === null) throw new Error("an in-memory database has no file to defragment");
    if (this.journal !== null) throw new Error("a defragment is already running");
    this.commit();
    this.dropDefragCopy(target);
    this.journal = [];
    this.journalBroken = false;
    try {
      await vacuumInto(this.path, target);
    } catch (err) {
      this.dropDefragCopy(target);
      throw err;
    }
  }

  /**
   * Replays the writes recorded since `startDefragCopy` into the copy (after committing the open
   * transaction, so the copy holds everything applied here), in one synced transaction, and stops
   * recording. Throws, dropping the copy, when a rollback or the backend's closing made the
   * recorded writes untrustworthy.
   */
  finishDefragCopy(target: string): void {
    const journal = this.journal;
    try {
      if (journal === null || !this.db.open || this.journalBroken)
        throw new Error("the database was closed or rolled back while its copy was made");
      this.commit();
      const copy = new Database(target);
      try {
        copy.pragma("synchronous = FULL");
        copy.transaction(() => replay(copy, journal))();
      } finally {
        copy.close();
      }
      syncFile(target);
    } catch (err) {
      this.dropDefragCopy(target);
      throw err;
    }
    this.journal = null;
  }

  /** Stops recording writes and removes the copy (and any journal file SQLite left beside it). */
  dropDefragCopy(target: string): void {
    this.journal = null;
    removeDefragCopy(target);
  }

  /**
   * Commits, stops the background checkpoints and closes the connection. Returns whether the
   * checkpointer's connection closed too (see WalCheckpointer.close): only then may the file be
   * replaced.
   */
  close(): boolean {
    for (const reader of [...this.readers]) reader.close();
    this.commit();
    const checkpointerClosed = this.checkpointer?.close() ?? true;
    this.files?.close();
    this.db.close();
    return checkpointerClosed;
  }
}

/**
 * Rows of a pinned read view (see Backend.pinRows). The view is pinned by the first read, which
 * the constructor makes, so it is the database as it was when `pinRows` returned.
 */
export class PinnedRows {
  private head: IteratorResult<Row>;
  private closed = false;

  constructor(
    private readonly rows: Iterator<Row>,
    private readonly onClose: () => void,
  ) {
    this.head = rows.next();
  }

  /** Up to `max` more rows; an empty array once every row was read or the view was closed. */
  next(max: number): Row[] {
    const out: Row[] = [];
    while (!this.closed && out.length < max && this.head.done !== true) {
      out.push(this.head.value);
      this.head = this.rows.next();
    }
    return out;
  }

  /** Whether every row was read (false when the view was closed first). */
  get complete(): boolean {
    return this.head.done === true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}

/** A write recorded while a defragmented copy is made (see Backend.startDefragCopy). */
type JournalOp =
  | { putRow: Row }
  | { removeRow: [bigint, number] }
  | { setMeta: [string, bigint] }
  | { deleteMeta: string }
  | { putLease: [bigint, bigint, bigint] }
  | { deleteLease: bigint };

function replay(db: Database.Database, ops: readonly JournalOp[]): void {
  const putRow = db.prepare(WRITE_SQL.putRow);
  const removeRow = db.prepare(WRITE_SQL.removeRow);
  const setMeta = db.prepare(WRITE_SQL.setMeta);
  const deleteMeta = db.prepare(WRITE_SQL.deleteMeta);
  const putLease = db.prepare(WRITE_SQL.putLease);
  const deleteLease = db.prepare(WRITE_SQL.deleteLease);
  for (const op of ops) {
    if ("putRow" in op) {
      const r = op.putRow;
      putRow.run(r.main, r.sub, r.key, r.create_rev, r.version, r.lease, r.value, r.tombstone);
    } else if ("removeRow" in op) removeRow.run(...op.removeRow);
    else if ("setMeta" in op) setMeta.run(...op.setMeta);
    else if ("deleteMeta" in op) deleteMeta.run(op.deleteMeta);
    else if ("putLease" in op) putLease.run(...op.putLease);
    else deleteLease.run(op.deleteLease);
  }
}

/** Runs in a worker thread (plain CommonJS): VACUUM INTO from a read-only connection of its own. */
const VACUUM_WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
// The connection is closed before the answer, so the swap that follows never finds it open.
let db;
let answer;
try {
  db = new Database(workerData.path, { readonly: true, fileMustExist: true });
  db.prepare("VACUUM INTO ?").run(workerData.target);
  answer = { ok: true };
} catch (err) {
  answer = { error: String((err && err.message) || err) };
}
try {
  if (db !== undefined && db.open) db.close();
} catch (err) {
  answer = { error: String((err && err.message) || err) };
}
parentPort.postMessage(answer);
`;

function vacuumInto(path: string, target: string): Promise<void> {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  return new Promise((resolve, reject) => {
    const worker = new Worker(VACUUM_WORKER, { eval: true, workerData: { driver, path, target } });
    // A member that stops meanwhile does not wait for it: the next start removes the unfinished copy.
    worker.unref();
    let answered = false;
    worker.once("message", (m: { ok?: boolean; error?: string }) => {
      answered = true;
      if (m.ok === true) resolve();
      else reject(new Error(`VACUUM INTO failed: ${m.error}`));
    });
    worker.once("error", (err) => {
      answered = true;
      reject(err);
    });
    worker.once("exit", () => {
      if (!answered) reject(new Error("the defragment worker exited without an answer"));
    });
  });
}

/** Removes a defragmented copy and the journal files SQLite may have left beside it. */
export function removeDefragCopy(target: string): void {
  for (const file of [target, `${target}-journal`, `${target}-wal`, `${target}-shm`])
    rmSync(file, { force: true });
}
