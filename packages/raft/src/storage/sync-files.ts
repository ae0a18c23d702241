// Makes an open WAL-mode SQLite database durable from libuv's thread pool, without blocking the
// event loop. A commit with synchronous=NORMAL reaches the WAL but is not synced; a checkpoint syncs
// the database file before SQLite lets the WAL start over, so the frames not yet synced in the
// database file are all still in the WAL. Syncing the WAL (and the folder, for files created since
// the last sync) therefore makes every transaction committed before the call survive a power loss.
//
// The WAL's descriptor is opened once and kept. The database file itself is never opened here:
// closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
// included (see SQLite's "How To Corrupt An SQLite Database File", section 2.2). SQLite locks only
// the database file and its `-shm`, never the `-wal` or the folder.
import {
  closeSync,
  existsSync,
  fdatasync,
  fsync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { RaftError } from "../core/errors.js";

const fdatasyncAsync = promisify(fdatasync);
const fsyncAsync = promisify(fsync);

export class WalFileSync {
  private wal: number | null = null;
  private folder: number | null = null;
  /** Syncs running in the thread pool: the descriptors are closed only after the last one. */
  private running = 0;
  private closed = false;

  /** `path` is the database file of a connection open in WAL mode. */
  constructor(readonly path: string) {}

  /** Resolves once every transaction committed before the call is durable. */
  async sync(): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: its files are closed, nothing more can be synced`);
    if (this.wal === null) this.open();
    this.running++;
    try {
      await fdatasyncAsync(this.wal as number);
      await fsyncAsync(this.folder as number);
    } finally {
      this.running--;
      if (this.closed && this.running === 0) this.closeDescriptors();
    }
  }

  /** Lets go of the descriptors (after the syncs still running). Call before the database is replaced. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.running === 0) this.closeDescriptors();
  }

  /** Opens both descriptors or neither: a failed open leaks nothing and is tried again next sync. */
  private open(): void {
    let wal: number;
    try {
      wal = openSync(`${this.path}-wal`, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      throw new Error(
        `${this.path}-wal does not exist while the database is open: it is not in WAL mode, or its WAL was removed`,
      );
    }
    let folder: number;
    try {
      folder = openSync(dirname(this.path), "r");
    } catch (err) {
      closeSync(wal);
      throw err;
    }
    this.wal = wal;
    this.folder = folder;
  }

  private closeDescriptors(): void {
    for (const fd of [this.wal, this.folder]) if (fd !== null) closeSync(fd);
    this.wal = null;
    this.folder = null;
  }
}

/**
 * A copy of a database image that SQLite can open in memory. A WAL-mode database's image says so in
 * header bytes 18-19 and SQLite cannot open such an image in memory; the copy is marked
 * rollback-journal (1, 1), with identical pages. Anything that is not an SQLite image is copied as it
 * is (opening it then fails as it would have).
 */
export function rollbackJournalCopy(image: Uint8Array): Buffer {
  const copy = Buffer.from(image);
  if (copy.length >= 100 && copy.subarray(0, 16).toString("latin1") === "SQLite format 3\u0000") {
    copy[18] = 1;
    copy[19] = 1;
  }
  return copy;
}

/**
 * Writes a new database file at `path` (no connection may have it open) and makes it durable: its
 * content, and its name in the folder.
 */
export function writeDatabaseFile(path: string, content: Uint8Array): void {
  const fd = openSync(path, "w");
  try {
    let done = 0;
    while (done < content.byteLength) done += writeSync(fd, content, done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  syncFolder(dirname(path));
}

/**
 * Replaces the database file at `path` (every connection to it closed) with `content`, durably:
 *
 * 1. the new file is written and synced beside it as `<path>.restore`, and its name made durable;
 * 2. the old file's WAL and shared-memory index are removed (a WAL left behind would be replayed
 *    onto the new image), and the removals made durable before the rename can be;
 * 3. the new file is renamed over the old one, and the folder synced.
 *
 * `<path>.restore` therefore exists, on disk, from before the old WAL is touched until the rename:
 * whenever a crash has left the old file without its WAL (which may have held committed
 * transactions not yet checkpointed), or the staged file half written, the staged file is there
 * too, and `discardInterruptedReplace` at the next start discards both. A crash never pairs the
 * new image with the old WAL.
 */
export function replaceDatabaseFile(path: string, content: Uint8Array): void {
  const staging = `${path}.restore`;
  writeDatabaseFile(staging, content);
  renameOverDatabase(staging, path);
}

/**
 * `replaceDatabaseFile` with the content read from the file `source`, from byte `offset` to its
 * end, a piece at a time: an image of any size, without holding it in memory.
 */
export function replaceDatabaseFileFrom(path: string, source: string, offset: number): void {
  const staging = `${path}.restore`;
  const from = openSync(source, "r");
  try {
    const to = openSync(staging, "w");
    try {
      const piece = Buffer.allocUnsafe(COPY_PIECE_BYTES);
      for (let at = offset, written = 0; ; ) {
        const n = readSync(from, piece, 0, piece.length, at);
        if (n === 0) break;
        for (let done = 0; done < n; ) done += writeSync(to, piece, done, n - done, written + done);
        at += n;
        written += n;
      }
      fsyncSync(to);
    } finally {
      closeSync(to);
    }
  } finally {
    closeSync(from);
  }
  syncFolder(dirname(path));
  renameOverDatabase(staging, path);
}

const COPY_PIECE_BYTES = 4 * 1024 * 1024;

/**
 * Steps 2 and 3 of `replaceDatabaseFile`: the complete, synced file `staged` (beside `path`)
 * replaces the database file at `path`, every connection to which is closed. The old file's WAL
 * and `-shm` are removed durably first, then the rename is made durable.
 */
export function renameOverDatabase(staged: string, path: string): void {
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  syncFolder(dirname(path));
  renameSync(staged, path);
  syncFolder(dirname(path));
}

/**
 * Call at start-up, before any connection opens the database file at `path`: finishes what a
 * crash in the middle of `replaceDatabaseFile` left. When `<path>.restore` exists, the old file
 * may be without its WAL (so possibly without transactions it had committed, or inconsistent) and
 * the staged file may be incomplete; neither is trusted. The file, its WAL, its `-shm` and the
 * staged file are all removed, so the machine opens empty at applied index 0; the staged file is
 * removed last, so a crash during this leaves it for the next start to do again. Returns whether
 * it discarded anything.
 *
 * Starting empty is what lets the Raft layer bring the machine back: a restore is the install of a
 * snapshot the node stored whole (with its data) and synced before calling `restore`, so at the
 * next start the node sees the machine behind that snapshot, installs it again and then applies
 * the log after it (RaftNode's recovery of an interrupted install). Completing the rename instead
 * would need proof that the staged file is whole, and would still leave the machine at the image's
 * own applied index, which the node also repairs by installing the snapshot again.
 */
export function discardInterruptedReplace(path: string): boolean {
  const staging = `${path}.restore`;
  if (!existsSync(staging)) return false;
  for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
  syncFolder(dirname(path));
  rmSync(staging);
  syncFolder(dirname(path));
  return true;
}

/** Makes the folder's entries (files created, renamed or removed in it) durable. */
export function syncFolder(path: string): void {
  syncFile(path);
}

/** Makes a file's content (or a folder's entries) durable. */
export function syncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * A database file not replaced because a connection to it (a worker thread's: snapshots or
 * background checkpoints) was still open after its close deadline. That connection would go on
 * reading, checkpointing into and finally closing files that are no longer the database's, while
 * the new file's WAL and `-shm` are created under the same names. The machine is left closed and
 * nothing on disk has changed; the member stops, and at restart the Raft layer installs the
 * snapshot it stored again.
 */
export class DatabaseStillOpenError extends RaftError {
  readonly code = "RAFT_DATABASE_STILL_OPEN";
  constructor(readonly path: string) {
    super(
      `${path} was not replaced: a worker thread still had it open after its close deadline; ` +
        "restart the member to install the snapshot again",
    );
  }
}
