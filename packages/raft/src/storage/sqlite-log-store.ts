// The durable Raft log on better-sqlite3. Everything one Ready needs on disk (snapshot, entries with
// conflict-suffix truncation, hard state) is written in ONE transaction. The database runs in WAL
// mode with synchronous=NORMAL: a committed transaction is in the WAL file (the OS page cache) when
// `persist` returns, so it survives kill -9 at once; it survives power loss once `sync()` resolves
// (an fdatasync of the WAL file on libuv's thread pool, off the event loop). One `sync()` covers every
// transaction written before it (group commit), and SQLite's WAL checksums make a crash keep a
// prefix of the transactions, each whole or absent.
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { CompactedError, SnapshotTemporarilyUnavailableError, UnavailableError } from "../core/errors.js";
import {
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  type EntryType,
  type HardState,
  type LogStorage,
  type NodeId,
  type Snapshot,
} from "../core/types.js";
import { EntrySegments, type EntrySegmentsOptions } from "./entry-segments.js";
import { EntryTail } from "./entry-tail.js";
import { WalCheckpointer } from "./wal-checkpointer.js";
import { syncFolder } from "./sync-files.js";

/**
 * Snapshots are files beside the database: `snap-<index>.snap` for one made locally (see
 * `writeSnapshotFile`), `snap-<index>-received.snap` for one received from a leader (see `persist`;
 * the transport receives into `snap-<index>-received.snap.<n>.tmp`, see `receivedSnapshotFile`).
 */
const SNAP_FILE = /^snap-(\d+)(-received)?\.snap(\.\d+)?(\.tmp)?(-journal)?$/;
/** The meta key naming the file that holds the stored snapshot's data, when a file does. */
const SNAP_FILE_KEY = "snapFile";
/**
 * The meta key marking the stored snapshot as one held by the state machine's own files: the
 * snapshot row then records only index, term and ConfState (see `createSnapshotMarker`).
 */
const SNAP_IN_MACHINE_KEY = "snapInMachine";

const EMPTY = new Uint8Array(0);
/** How much of an image file `writeSnapshotFileFrom` copies at a time. */
const COPY_PIECE_BYTES = 4 * 1024 * 1024;

/** A snapshot's data, read from its file when a file holds it (for tests and small snapshots). */
export function snapshotBytes(snap: Snapshot): Uint8Array {
  return snap.file === undefined ? snap.data : readFileSync(snap.file.path);
}

/** Bounds of the in-memory tail of newest entries. */
const TAIL_ENTRIES_MAX = 8192;
const TAIL_BYTES_MAX = 32 << 20;

export interface PersistBatch {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  /**
   * Application metadata (see `setAppMeta`) written with a snapshot that replaces the log, in the
   * same transaction as its configuration: the service layer's member table, so the two agree
   * whatever a crash interrupts after it.
   */
  readonly snapshotAppMeta?: { readonly key: string; readonly value: Uint8Array };
}

export interface SqliteLogStoreOptions {
  /** Path of the database file (created if missing). */
  path: string;
  /** Initial voters written at the very first start only (bootstrap of a brand-new cluster). */
  bootstrapVoters?: readonly NodeId[];
  bootstrapLearners?: readonly NodeId[];
  /** Checkpoint the WAL from a worker thread instead of in the committing call (see WalCheckpointer). */
  backgroundCheckpoints?: boolean;
  /** How the entries' tables are sealed and dropped (see EntrySegments); the defaults otherwise. */
  segments?: EntrySegmentsOptions;
}

export function encodeConfState(cs: ConfState): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ v: cs.voters.map(String), l: cs.learners.map(String) }));
}

export function decodeConfState(b: Uint8Array): ConfState {
  const o = JSON.parse(new TextDecoder().decode(b)) as { v: string[]; l: string[] };
  return { voters: o.v.map((x) => BigInt(x)), learners: o.l.map((x) => BigInt(x)) };
}

export class SqliteLogStore implements LogStorage {
  readonly db: Database.Database;
  private hard: HardState = EMPTY_HARD_STATE;
  private conf: ConfState = { voters: [], learners: [] };
  /** Index of the last applied conf change recorded with `conf` (0n when from bootstrap/snapshot). */
  private confIdx = 0n;
  /** The compaction point: entries <= snapIndex are gone (a snapshot covers them); its term is kept. */
  private snapIndex = 0n;
  private snapTerm = 0n;
  private last = 0n;
  private lastTerm = 0n;
  /**
   * The term and vote last written to the database. The hard state is written only when its term
   * or vote moves, and at `close`; a commit index that moves alone stays in memory (`hard`). A lost
   * commit index is recovered (from the state machine's applied index and from the leader), a lost
   * vote is not. Writing it every round cost two more WAL pages per transaction (the meta row and
   * its key's index) on top of the one an appended entry costs.
   */
  private writtenTerm = 0n;
  private writtenVote = 0n;
  private hardDirty = false;
  /** A descriptor of the WAL file for `sync()` (null for an in-memory database). */
  private walFd: number | null = null;
  /** Transactions written so far, and how many of them the last completed fsync covers. */
  private writeSeq = 0;
  private syncedSeq = 0;
  /** The fsync in flight, if any; later callers wait for it and then start their own. */
  private syncing: Promise<void> | null = null;
  /** See `durableLastIndex`. */
  private durableLast = 0n;
  /** The lowest `index - 1` rewritten since the running sync started (null: none). */
  private rewrittenSinceSyncStart: bigint | null = null;
  private closed = false;
  /** Checkpoints the WAL from a worker thread, when asked for (see WalCheckpointer). */
  private checkpointer: WalCheckpointer | null = null;
  /** The folder of snapshot files (null for an in-memory database). */
  private readonly snapDir: string | null;
  /** Numbers the temporary snapshot files handed out (see `scratchSnapshotFile`, `receivedSnapshotFile`). */
  private nextTemporary = 0;
  /** Snapshot files no longer referenced, deleted once the transaction that let go of them is synced. */
  private obsoleteFiles: { seq: number; file: string }[] = [];
  /**
   * Called when the core asks for the stored snapshot's data while the state machine's own files hold
   * it (see `createSnapshotMarker`): the owner makes an image and stores it, and the core, told the
   * snapshot is temporarily unavailable, asks again at the follower's next heartbeat response.
   */
  onSnapshotWanted: (() => void) | null = null;
  /** Told how long each fsync of the log took, in seconds, queueing on the thread pool included. */
  onFsync: ((seconds: number) => void) | null = null;
  /** False from storing a snapshot image until `snapshot()` has handed it out (see `imageUnsent`). */
  private imageSent = true;
  /** The newest entries, served without reading SQLite (see entry-tail.ts). */
  private readonly tail = new EntryTail(TAIL_ENTRIES_MAX, TAIL_BYTES_MAX);
  /** The entries' tables (see EntrySegments). */
  private readonly segments: EntrySegments;
  private readonly stmts;
  /** The Ready write, wrapped once (better-sqlite3 builds a new wrapper per `db.transaction`). */
  private readonly persistTx: Database.Transaction<
    (batch: PersistBatch, received: string | null) => { replacedLog: boolean; fresh: Entry[] }
  >;

  constructor(opts: SqliteLogStoreOptions) {
    this.db = new Database(opts.path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
      CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL,
        term INTEGER NOT NULL, conf BLOB NOT NULL, data BLOB NOT NULL);
    `);
    this.stmts = {
      getMeta: this.db.prepare("SELECT value FROM meta WHERE key = ?").safeIntegers(),
      setMeta: this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"),
      deleteMeta: this.db.prepare("DELETE FROM meta WHERE key = ?"),
      getSnap: this.db.prepare("SELECT idx, term, conf, data FROM snapshot WHERE id = 1").safeIntegers(),
      setSnap: this.db.prepare(
        "INSERT OR REPLACE INTO snapshot (id, idx, term, conf, data) VALUES (1, ?, ?, ?, ?)",
      ),
    };
    this.persistTx = this.db.transaction((batch: PersistBatch, received: string | null) =>
      this.persistInTx(batch, received),
    );
    this.snapDir = this.db.memory ? null : dirname(opts.path);
    this.segments = new EntrySegments(this.db, opts.segments);
    this.load(opts);
    this.removeStraySnapshotFiles();
    if (opts.backgroundCheckpoints === true && !this.db.memory)
      this.checkpointer = new WalCheckpointer(this.db);
    this.openWal(opts.path);
    // openWal synced everything loaded (an in-memory database has nothing to lose anyway).
    this.durableLast = this.last;
  }

  /**
   * Opens the WAL file (SQLite created it on the first transaction) and syncs everything written
   * so far, the directory included, so the files themselves survive power loss.
   */
  private openWal(path: string): void {
    if (this.db.memory) return;
    this.walFd = openSync(`${path}-wal`, "r");
    fsyncSync(this.walFd);
    syncFolder(dirname(path));
  }

  private load(opts: SqliteLogStoreOptions): void {
    const hs = this.getMeta("hardState");
    if (hs === undefined) {
      // First start: record the bootstrap configuration durably (empty for a joining member).
      this.conf = {
        voters: [...(opts.bootstrapVoters ?? [])].sort(cmp),
        learners: [...(opts.bootstrapLearners ?? [])].sort(cmp),
      };
      this.db.transaction(() => {
        this.setMeta("hardState", encodeHardState(EMPTY_HARD_STATE));
        this.setMeta("confState", encodeConfState(this.conf));
        this.setMeta("confIndex", Buffer.from("0"));
      })();
    } else {
      this.hard = decodeHardState(hs);
      this.writtenTerm = this.hard.term;
      this.writtenVote = this.hard.vote;
      this.conf = decodeConfState(this.getMeta("confState") ?? encodeConfState(this.conf));
      this.confIdx = BigInt(Buffer.from(this.getMeta("confIndex") ?? Buffer.from("0")).toString());
    }
    const comp = this.getMeta("compacted");
    if (comp !== undefined) {
      const [i, t] = Buffer.from(comp).toString().split(",");
      this.snapIndex = BigInt(i ?? "0");
      this.snapTerm = BigInt(t ?? "0");
    }
    // Segments left compacted by a restart before they were dropped go as writes come.
    this.segments.compactTo(this.snapIndex);
    const last = this.segments.lastRow();
    if (last !== undefined && last.idx > this.snapIndex) {
      this.last = last.idx;
      this.lastTerm = last.term;
    } else {
      this.last = this.snapIndex;
      this.lastTerm = this.snapTerm;
    }
  }

  private getMeta(key: string): Buffer | undefined {
    const row = this.stmts.getMeta.get(key) as { value: Buffer } | undefined;
    return row?.value;
  }

  private setMeta(key: string, value: Uint8Array): void {
    this.stmts.setMeta.run(key, Buffer.from(value));
  }

  // ---- LogStorage -------------------------------------------------------------------------

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hard, confState: this.conf };
  }

  firstIndex(): bigint {
    return this.snapIndex + 1n;
  }

  lastIndex(): bigint {
    return this.last;
  }

  term(index: bigint): bigint {
    if (index < this.snapIndex) throw new CompactedError(index);
    if (index === this.snapIndex) return this.snapTerm;
    if (index > this.last) throw new UnavailableError(index);
    if (index === this.last) return this.lastTerm;
    if (this.tail.has(index)) return this.tail.at(index).term;
    const term = this.segments.term(index);
    if (term === undefined) throw new UnavailableError(index);
    return term;
  }

  entries(lo: bigint, hi: bigint, maxBytes: number): Entry[] {
    if (lo <= this.snapIndex) throw new CompactedError(lo);
    if (hi > this.last + 1n) throw new UnavailableError(hi);
    if (this.tail.has(lo)) return this.tail.slice(lo, hi, maxBytes);
    const out: Entry[] = [];
    let bytes = 0;
    for (const r of this.segments.rows(lo, hi)) {
      bytes += r.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push({ index: r.idx, term: r.term, type: Number(r.type) as EntryType, data: r.data });
    }
    return out;
  }

  /**
   * Whether the image stored last (by `createSnapshot` or `createSnapshotFromFile`) has not been
   * handed out by `snapshot()` yet: with a machine that keeps files, such an image was made for a
   * follower still waiting for it. False after a restart.
   */
  imageUnsent(): boolean {
    return !this.imageSent;
  }

  /** Whether the stored snapshot is held by the state machine's own files (see `createSnapshotMarker`). */
  snapshotInMachine(): boolean {
    return this.getMeta(SNAP_IN_MACHINE_KEY) !== undefined;
  }

  /** Index of the stored snapshot (0n when none). */
  snapshotIndex(): bigint {
    const row = this.stmts.getSnap.get() as { idx: bigint } | undefined;
    return row?.idx ?? 0n;
  }

  snapshot(): Snapshot {
    const row = this.stmts.getSnap.get() as
      | { idx: bigint; term: bigint; conf: Buffer; data: Buffer }
      | undefined;
    if (row === undefined) {
      return { metadata: { index: 0n, term: 0n, confState: this.conf }, data: new Uint8Array() };
    }
    if (this.snapshotInMachine()) {
      this.onSnapshotWanted?.();
      throw new SnapshotTemporarilyUnavailableError();
    }
    const file = this.getMeta(SNAP_FILE_KEY);
    this.imageSent = true;
    const metadata = { index: row.idx, term: row.term, confState: decodeConfState(row.conf) };
    if (file === undefined || this.snapDir === null) return { metadata, data: row.data };
    // Handed out as the file: the transport streams it, an install reads it in pieces.
    const path = join(this.snapDir, file.toString());
    return { metadata, data: EMPTY, file: { path, bytes: statSync(path).size } };
  }

  // ---- Write side -------------------------------------------------------------------------

  /** The conf change index recorded with the current configuration (see `setConfState`). */
  confIndex(): bigint {
    return this.confIdx;
  }

  hardState(): HardState {
    return this.hard;
  }

  /**
   * Writes one Ready's snapshot, entries and hard state in one transaction; `sync()` then makes it
   * durable. A hard state that moves only the commit index is kept in memory (see `writtenTerm`).
   * Returns true when a transaction was written (so `sync()` has work to do).
   */
  persist(batch: PersistBatch): boolean {
    if (batch.hardState !== null) {
      this.hard = batch.hardState;
      this.hardDirty = true;
    }
    const termOrVote = this.hard.term !== this.writtenTerm || this.hard.vote !== this.writtenVote;
    if (batch.snapshot === null && batch.entries.length === 0 && !termOrVote) return false;
    const received = this.writeReceivedSnapshot(batch.snapshot);
    let written: { replacedLog: boolean; fresh: Entry[] };
    const snapIndexBefore = this.snapIndex;
    try {
      written = this.persistTx(batch, received);
    } catch (err) {
      if (received !== null) rmSync(join(this.snapDir!, received), { force: true });
      // The segments as the database still has them. (The node stops on a failed write; the
      // other fields kept in memory are not taken back.)
      this.segments.reload(snapIndexBefore);
      throw err;
    }
    this.writeSeq++;
    // The tail follows the transaction only once it has committed.
    if (written.replacedLog) this.tail.clear();
    this.tail.append(written.fresh);
    // Entries rewritten by this transaction are not durable until the next sync completes.
    const head = written.fresh[0];
    const keep = written.replacedLog ? 0n : head !== undefined ? head.index - 1n : this.durableLast;
    if (keep < this.durableLast) this.durableLast = keep;
    if (this.rewrittenSinceSyncStart === null || keep < this.rewrittenSinceSyncStart) {
      this.rewrittenSinceSyncStart = keep;
    }
    return true;
  }

  /**
   * The highest index such that every entry up to it, as the log holds it now, is covered by a
   * completed sync (so it survives power loss). Committed entries up to it may be applied while
   * a later sync is still running.
   */
  durableLastIndex(): bigint {
    return this.durableLast;
  }

  /** True while some transaction written so far is not yet covered by a completed fsync. */
  hasUnsynced(): boolean {
    return this.walFd !== null && this.syncedSeq < this.writeSeq;
  }

  /**
   * Resolves once every transaction written before the call is on stable storage. The fsync runs
   * on libuv's thread pool; concurrent callers share it or queue one more behind it. Rejects with
   * the fsync error (the caller must stop: what was written may not be durable).
   */
  async sync(): Promise<void> {
    const target = this.writeSeq;
    while (this.syncedSeq < target && this.walFd !== null) {
      if (this.syncing === null) this.syncing = this.fsyncOnce();
      await this.syncing;
    }
  }

  private fsyncOnce(): Promise<void> {
    const fd = this.walFd;
    const covered = this.writeSeq;
    // What this sync makes durable: the log as it is now, less what is rewritten while it runs.
    const lastAtStart = this.last;
    this.rewrittenSinceSyncStart = null;
    return new Promise<void>((resolve, reject) => {
      if (fd === null) {
        resolve();
        return;
      }
      const started = performance.now();
      // fdatasync, as SQLite itself uses on Linux: the WAL's data and size, not its timestamps.
      fdatasync(fd, (err) => {
        this.syncing = null;
        if (err !== null) {
          reject(err);
          return;
        }
        this.onFsync?.((performance.now() - started) / 1000);
        if (covered > this.syncedSeq) this.syncedSeq = covered;
        this.deleteObsoleteFiles();
        const rewritten = this.rewrittenSinceSyncStart;
        const durable = rewritten !== null && rewritten < lastAtStart ? rewritten : lastAtStart;
        if (durable > this.durableLast) this.durableLast = durable;
        resolve();
      });
    });
  }

  /**
   * A snapshot from the leader, written to its own file before the transaction that records it
   * (synced, renamed into place, folder synced), as a local one is: a row can hold at most 1 GB
   * (SQLite's limit on a value), and stores past that were refused by every follower. Returns the
   * file's name, or null when the batch stores no such snapshot or the database is in memory.
   */
  private writeReceivedSnapshot(snap: Snapshot | null): string | null {
    const dir = this.snapDir;
    if (dir === null || snap === null || snap.metadata.index <= this.snapIndex) return null;
    const name = `snap-${snap.metadata.index}-received.snap`;
    if (snap.file !== undefined) {
      // Received into a file of its own by the transport, and synced: only its name changes.
      renameSync(snap.file.path, join(dir, name));
      syncFolder(dir);
      return name;
    }
    const tmp = join(dir, `${name}.tmp`);
    const fd = openSync(tmp, "w");
    try {
      const data = toBuffer(snap.data);
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, name));
    syncFolder(dir);
    return name;
  }

  /** Returns whether a snapshot replaced the log, and the entries appended. */
  private persistInTx(
    batch: PersistBatch,
    received: string | null,
  ): { replacedLog: boolean; fresh: Entry[] } {
    const snap = batch.snapshot;
    const replacedLog = snap !== null && snap.metadata.index > this.snapIndex;
    if (replacedLog) {
      // A snapshot from the leader replaces the whole log.
      this.segments.deleteAll();
      this.writeSnapshotRow(snap, received);
      this.last = snap.metadata.index;
      this.lastTerm = snap.metadata.term;
      this.conf = snap.metadata.confState;
      this.confIdx = snap.metadata.index;
      this.setMeta("confState", encodeConfState(this.conf));
      this.setMeta("confIndex", Buffer.from(String(this.confIdx)));
      if (batch.snapshotAppMeta !== undefined) {
        this.setMeta(`app:${batch.snapshotAppMeta.key}`, batch.snapshotAppMeta.value);
      }
    }
    const fresh = batch.entries.filter((e) => e.index > this.snapIndex);
    const head = fresh[0];
    if (head !== undefined) {
      if (head.index > this.last + 1n) {
        throw new Error(`append at ${head.index} leaves a gap after ${this.last}`);
      }
      if (head.index <= this.last) {
        this.segments.deleteFrom(head.index);
      }
      for (const e of fresh) this.segments.insert(e.index, e.term, e.type, toBuffer(e.data));
      const tail = fresh[fresh.length - 1] as Entry;
      this.last = tail.index;
      this.lastTerm = tail.term;
    }
    if (this.hard.term !== this.writtenTerm || this.hard.vote !== this.writtenVote) {
      this.writeHardStateIfDirty();
    }
    this.segments.afterWrite();
    return { replacedLog, fresh };
  }

  private writeHardStateIfDirty(): void {
    if (!this.hardDirty) return;
    this.setMeta("hardState", encodeHardState(this.hard));
    this.writtenTerm = this.hard.term;
    this.writtenVote = this.hard.vote;
    this.hardDirty = false;
  }

  /** The snapshot row, its data in the row or, when `file` is given, in that file. */
  private writeSnapshotRow(snap: Snapshot, file: string | null): void {
    const m = snap.metadata;
    const data = file === null ? toBuffer(snap.data) : toBuffer(EMPTY);
    this.stmts.setSnap.run(m.index, m.term, Buffer.from(encodeConfState(m.confState)), data);
    this.releaseSnapshotFile();
    if (file !== null) this.setMeta(SNAP_FILE_KEY, Buffer.from(file));
    this.setCompacted(m.index, m.term);
    this.imageSent = true;
  }

  /**
   * Inside a transaction: the stored snapshot's file (if any) is let go of (see `obsoleteFiles`), and
   * so is its mark as held by the state machine.
   */
  private releaseSnapshotFile(): void {
    this.stmts.deleteMeta.run(SNAP_IN_MACHINE_KEY);
    const file = this.getMeta(SNAP_FILE_KEY);
    if (file === undefined) return;
    this.stmts.deleteMeta.run(SNAP_FILE_KEY);
    // Deleted once the transaction is synced: until then a crash may bring the reference back.
    this.obsoleteFiles.push({ seq: this.writeSeq + 1, file: file.toString() });
  }

  /** Deletes the obsolete snapshot files that the last completed sync covers. */
  private deleteObsoleteFiles(): void {
    const dir = this.snapDir;
    if (dir === null || this.obsoleteFiles.length === 0) return;
    const keep: { seq: number; file: string }[] = [];
    for (const o of this.obsoleteFiles) {
      if (o.seq <= this.syncedSeq) void unlink(join(dir, o.file)).catch(() => {});
      else keep.push(o);
    }
    this.obsoleteFiles = keep;
  }

  /** At open: snapshot files nothing refers to (a crash while writing or replacing one) are removed. */
  private removeStraySnapshotFiles(): void {
    const dir = this.snapDir;
    if (dir === null) return;
    const current = this.getMeta(SNAP_FILE_KEY)?.toString();
    for (const name of readdirSync(dir)) {
      if (SNAP_FILE.test(name) && name !== current) rmSync(join(dir, name), { force: true });
    }
  }

  /**
   * Writes a locally made snapshot's data to its own file, off the event loop (libuv's thread pool):
   * written, synced, renamed into place and the folder synced. Storing tens of megabytes in the
   * database instead would stall the loop for as long as the write and the checkpoint after it.
   * Returns the file's name for `createSnapshotFromFile`, or null for an in-memory database
   * (store the data with `createSnapshot` then).
   */
  async writeSnapshotFile(index: bigint, parts: readonly Uint8Array[]): Promise<string | null> {
    if (this.snapDir === null) return null;
    return this.writeSnapshotFileWith(index, (fh) => fh.writev(parts.map(toBuffer)).then(() => undefined));
  }

  /**
   * `writeSnapshotFile` for a snapshot whose image a state machine wrote to the file `image` (see
   * `scratchSnapshotFile`): `head`, then the image copied a piece at a time, off the event loop.
   * The image's file is left to the caller.
   */
  async writeSnapshotFileFrom(index: bigint, head: Uint8Array, image: string): Promise<string> {
    return this.writeSnapshotFileWith(index, async (fh) => {
      const writeAll = async (bytes: Buffer) => {
        for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done)).bytesWritten;
      };
      await writeAll(toBuffer(head));
      const from = await open(image, "r");
      try {
        const expected = head.length + (await from.stat()).size;
        const piece = Buffer.allocUnsafe(COPY_PIECE_BYTES);
        for (;;) {
          const { bytesRead } = await from.read(piece, 0, piece.length, null);
          if (bytesRead === 0) break;
          await writeAll(piece.subarray(0, bytesRead));
        }
        const written = (await fh.stat()).size;
        if (written !== expected) throw new Error(`snapshot file is ${written} bytes, not ${expected}`);
      } finally {
        await from.close();
      }
    });
  }

  /** Writes `snap-<index>.snap` with `fill`: synced, renamed into place, the folder synced. */
  private async writeSnapshotFileWith(
    index: bigint,
    fill: (fh: FileHandle) => Promise<void>,
  ): Promise<string> {
    const dir = this.snapDir;
    if (dir === null) throw new Error("an in-memory log store keeps no snapshot files");
    const name = `snap-${index}.snap`;
    const tmp = join(dir, `${name}.tmp`);
    const fh = await open(tmp, "w");
    try {
      await fill(fh);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
    const dirHandle = await open(dir, "r");
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
    return name;
  }

  /**
   * A file a state machine may write an image of its state at `index` to (null for an in-memory
   * database), for `writeSnapshotFileFrom`; the caller removes it, and a restart removes one left.
   */
  scratchSnapshotFile(index: bigint): string | null {
    if (this.snapDir === null) return null;
    return join(this.snapDir, `snap-${index}.snap.${this.nextTemporary++}.tmp`);
  }

  /**
   * Where the transport may receive a snapshot at `index` from a leader (null for an in-memory
   * database): a file name `persist` takes over, and that a restart removes if it never does.
   */
  receivedSnapshotFile(index: bigint): string | null {
    if (this.snapDir === null) return null;
    return join(this.snapDir, `snap-${index}-received.snap.${this.nextTemporary++}.tmp`);
  }

  /** Deletes a snapshot file written by `writeSnapshotFile` that will not be stored after all. */
  discardSnapshotFile(name: string): void {
    if (this.snapDir !== null && name !== this.getMeta(SNAP_FILE_KEY)?.toString()) {
      rmSync(join(this.snapDir, name), { force: true });
    }
  }

  private setCompacted(index: bigint, term: bigint): void {
    this.setMeta("compacted", Buffer.from(`${index},${term}`));
    this.snapIndex = index;
    this.snapTerm = term;
  }

  /**
   * Records the configuration after the conf change entry at `index` was applied, and syncs it
   * before returning (one fdatasync on the loop; conf changes are rare). The state machine applies
   * the entries after it next, and may sync its own files at once (flaredb does): had the
   * configuration waited for the next Ready's sync, a power loss in between would leave the machine
   * past the change with the old configuration here, and a restart applies nothing at or below the
   * machine's index again.
   */
  setConfState(cs: ConfState, index: bigint, extra?: { key: string; value: Uint8Array }): void {
    this.db.transaction(() => {
      this.setMeta("confState", encodeConfState(cs));
      this.setMeta("confIndex", Buffer.from(String(index)));
      if (extra !== undefined) this.setMeta(extra.key, extra.value);
    })();
    this.writeSeq++;
    this.conf = cs;
    this.confIdx = index;
    this.confSeq = this.writeSeq;
    this.syncNow();
  }

  /** The transaction that recorded the current configuration (see `confStateDurable`). */
  private confSeq = 0;

  /** Whether the configuration recorded last is covered by a completed sync. */
  confStateDurable(): boolean {
    return this.walFd === null || this.syncedSeq >= this.confSeq;
  }

  /** Makes every transaction written so far durable before returning: an fdatasync on the loop. */
  private syncNow(): void {
    if (this.walFd === null || this.syncedSeq >= this.writeSeq) return;
    const covered = this.writeSeq;
    fdatasyncSync(this.walFd);
    if (covered > this.syncedSeq) this.syncedSeq = covered;
  }

  /** Application metadata kept alongside the log (the service layer's membership table). */
  getAppMeta(key: string): Uint8Array | undefined {
    return this.getMeta(`app:${key}`);
  }

  setAppMeta(key: string, value: Uint8Array): void {
    this.setMeta(`app:${key}`, value);
    this.writeSeq++;
  }

  /**
   * Stores a locally made snapshot at `index` (<= last) and discards entries up to
   * `index - keepTail`, in one transaction.
   */
  createSnapshot(index: bigint, confState: ConfState, data: Uint8Array, keepTail: bigint): Snapshot {
    const term = this.storeSnapshot(index, confState, data, null, keepTail);
    return { metadata: { index, term, confState }, data };
  }

  /**
   * Like `createSnapshot`, for data already in the file `name` from `writeSnapshotFile`: the
   * database records only the file's name. The file replaced is deleted once this is synced.
   */
  createSnapshotFromFile(index: bigint, confState: ConfState, name: string, keepTail: bigint): void {
    this.storeSnapshot(index, confState, EMPTY, name, keepTail);
  }

  /**
   * Records a snapshot at `index` whose data is the state machine's own files, already durable at
   * `index` (StateMachine.persist), and compacts the log behind it as `createSnapshot` does: what
   * etcd does with its backend, instead of serializing the whole state at every interval. `snapshot()`
   * then asks for an image (`onSnapshotWanted`) when a follower needs one.
   */
  createSnapshotMarker(index: bigint, confState: ConfState, keepTail: bigint): void {
    this.storeSnapshot(index, confState, EMPTY, null, keepTail, true);
  }

  private storeSnapshot(
    index: bigint,
    confState: ConfState,
    data: Uint8Array,
    file: string | null,
    keepTail: bigint,
    inMachine = false,
  ): bigint {
    const term = this.term(index);
    const compactTo = index - keepTail;
    // A tail of entries stays after the snapshot so that slightly lagging followers catch up from
    // the log instead of by snapshot.
    const compactTerm = compactTo > this.snapIndex ? this.term(compactTo) : 0n;
    // The transaction also moves fields in memory; a failed one (the member carries on: the next
    // interval retries) must leave them as the database still has them.
    const before = {
      snapIndex: this.snapIndex,
      snapTerm: this.snapTerm,
      obsolete: this.obsoleteFiles.length,
    };
    try {
      this.db.transaction(() => {
        this.stmts.setSnap.run(index, term, Buffer.from(encodeConfState(confState)), toBuffer(data));
        this.releaseSnapshotFile();
        if (file !== null) this.setMeta(SNAP_FILE_KEY, Buffer.from(file));
        if (inMachine) this.setMeta(SNAP_IN_MACHINE_KEY, Buffer.from([1]));
        if (compactTo > this.snapIndex) {
          this.setCompacted(compactTo, compactTerm);
          this.segments.compactTo(compactTo);
        }
      })();
    } catch (err) {
      this.snapIndex = before.snapIndex;
      this.snapTerm = before.snapTerm;
      this.obsoleteFiles.length = before.obsolete;
      // The segments as the database still has them (a drop in the failed transaction was taken back).
      this.segments.reload(this.snapIndex);
      throw err;
    }
    this.writeSeq++;
    this.tail.dropUpTo(this.snapIndex);
    this.imageSent = inMachine;
    return term;
  }

  /**
   * Writes a hard state still held in memory, closes the database (SQLite checkpoints and syncs
   * the WAL) and then the WAL descriptor, once any fsync in flight has finished with it.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.hardDirty) this.db.transaction(() => this.writeHardStateIfDirty())();
    this.checkpointer?.close();
    this.db.close();
    const fd = this.walFd;
    this.walFd = null;
    if (fd === null) return;
    const closeFd = () => closeSync(fd);
    if (this.syncing === null) closeFd();
    else this.syncing.then(closeFd, closeFd);
  }
}

/** The bytes as a Buffer without a copy when they already are one (entries usually are). */
function toBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function cmp(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function encodeHardState(hs: HardState): Uint8Array {
  return Buffer.from(`${hs.term},${hs.vote},${hs.commit}`);
}

function decodeHardState(b: Uint8Array): HardState {
  const [term, vote, commit] = Buffer.from(b).toString().split(",");
  return { term: BigInt(term ?? "0"), vote: BigInt(vote ?? "0"), commit: BigInt(commit ?? "0") };
}
