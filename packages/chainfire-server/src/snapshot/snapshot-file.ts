// The snapshot file as `snapshot save` writes it and etcd's tools expect it: the state machine image
// (a SQLite database, the MVCC store's image; or etcd's bbolt database) followed by the sha256 of the
// image, 32 bytes. Everything that reads a snapshot file goes through `checkSnapshotFile`, which
// refuses a corrupt or truncated file before any caller acts on it. Files are read in pieces, never
// whole: a chainfire image is copied into a database file of its own (`copyImage`) to be opened.
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  fstatSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { constants } from "node:buffer";
import { crc32 } from "node:zlib";
import Database from "better-sqlite3";
import { storedCompaction } from "../mvcc/store.js";
import { isBoltImage } from "./bolt.js";
import { type SnapshotErrorCode, SnapshotFileError } from "./snapshot-error.js";

export const SHA256_BYTES = 32;
/** SQLite images are whole pages (multiples of 512), so a trailing hash leaves exactly 32 over. */
const PAGE_GRANULE_BYTES = 512;

export { type SnapshotErrorCode, SnapshotFileError };

/** Reports how far a long step (hashing, writing) has gone; drives the CLI's progress bar. */
export type ProgressListener = (doneBytes: number, totalBytes: number) => void;

/** A snapshot file `checkSnapshotFile` accepted. */
export interface SnapshotFile {
  readonly path: string;
  /** Bytes of the image: the file without its trailing sha256. */
  readonly imageBytes: number;
  /** True when a trailing sha256 was present and matched. */
  readonly hashChecked: boolean;
  /** etcd's bbolt database rather than a chainfire image. */
  readonly bolt: boolean;
}

const PIECE_BYTES = 4 * 1024 * 1024;

/** Reads bytes [0, `length`) of the open file `fd` a piece at a time, in order. */
function* piecesOf(fd: number, length: number): Generator<Buffer> {
  const piece = Buffer.allocUnsafe(Math.min(PIECE_BYTES, Math.max(length, 1)));
  for (let position = 0; position < length; ) {
    const n = readSync(fd, piece, 0, Math.min(piece.length, length - position), position);
    if (n === 0) throw new Error(`the file ended at ${position} bytes, before ${length}`);
    position += n;
    yield piece.subarray(0, n);
  }
}

/** Whether `totalBytes` is an image plus its trailer, and how many of them are the image. */
function imageBytesOf(
  totalBytes: number,
  what: string,
  skipHashCheck: boolean,
): { image: number; trailer: boolean } {
  const remainder = totalBytes % PAGE_GRANULE_BYTES;
  const trailer = remainder === SHA256_BYTES;
  if (!trailer && !skipHashCheck) {
    throw new SnapshotFileError(
      "SNAPSHOT_TRUNCATED",
      `${what}: ${totalBytes} bytes is not an image plus its 32-byte sha256 (truncated or not a snapshot file); ` +
        "a database copied without a hash needs --skip-hash-check",
    );
  }
  if (!trailer && remainder !== 0) {
    throw new SnapshotFileError(
      "SNAPSHOT_TRUNCATED",
      `${what}: ${totalBytes} bytes is not a whole database image (truncated)`,
    );
  }
  return { image: trailer ? totalBytes - SHA256_BYTES : totalBytes, trailer };
}

function hashMismatch(what: string, expected: Buffer, actual: Buffer): SnapshotFileError {
  return new SnapshotFileError(
    "SNAPSHOT_CORRUPT",
    `${what}: sha256 mismatch (file says ${expected.toString("hex").slice(0, 16)}…, content is ${actual.toString("hex").slice(0, 16)}…): the snapshot is corrupt`,
  );
}

function unreadable(path: string, err: unknown): SnapshotFileError {
  return new SnapshotFileError(
    "SNAPSHOT_UNREADABLE",
    `cannot read snapshot ${path}: ${(err as Error).message}`,
  );
}

/**
 * Checks the file at `path` is an image and its sha256 (the hash read through in pieces);
 * `skipHashCheck` accepts a bare database copy.
 */
export function checkSnapshotFile(
  path: string,
  skipHashCheck = false,
  onProgress?: ProgressListener,
): SnapshotFile {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw unreadable(path, err);
  }
  try {
    let size: number;
    const head = Buffer.alloc(24);
    try {
      const stat = fstatSync(fd);
      if (!stat.isFile()) throw new Error("not a regular file");
      size = stat.size;
      readSync(fd, head, 0, head.length, 0);
    } catch (err) {
      throw unreadable(path, err);
    }
    const { image, trailer } = imageBytesOf(size, path, skipHashCheck);
    if (!trailer) refuseUncheckpointedWal(path);
    if (trailer && !skipHashCheck) {
      const hash = createHash("sha256");
      let done = 0;
      try {
        for (const piece of piecesOf(fd, image)) {
          hash.update(piece);
          done += piece.length;
          onProgress?.(done, image);
        }
      } catch (err) {
        throw unreadable(path, err);
      }
      const expected = Buffer.alloc(SHA256_BYTES);
      readSync(fd, expected, 0, SHA256_BYTES, image);
      const actual = hash.digest();
      if (!actual.equals(expected)) throw hashMismatch(path, expected, actual);
    }
    return { path, imageBytes: image, hashChecked: trailer && !skipHashCheck, bolt: isBoltImage(head) };
  } finally {
    closeSync(fd);
  }
}

/**
 * A bare store file (a member's mvcc.db) may not hold what was last committed to it: in WAL mode,
 * commits sit in `<file>-wal` until a checkpoint copies them in, and a member stopped by kill -9
 * or a power loss leaves them there. Restoring the file alone would silently lose them (etcd's
 * bbolt file has no such side file), so a non-empty WAL beside it is refused.
 */
function refuseUncheckpointedWal(path: string): void {
  let walBytes = 0;
  try {
    walBytes = statSync(`${path}-wal`).size;
  } catch {
    return;
  }
  if (walBytes === 0) return;
  throw new SnapshotFileError(
    "SNAPSHOT_INCOMPLETE",
    `${path}-wal (${walBytes} bytes) holds writes not yet in ${path}: start and stop the member that ` +
      "wrote it cleanly (or take `chainfirectl snapshot save` from a running member) and use that file",
  );
}

/** The image of a checked file, in memory: etcd's images, which are read whole. */
export function readImage(file: SnapshotFile): Buffer {
  if (file.imageBytes > constants.MAX_LENGTH) {
    throw new SnapshotFileError(
      "SNAPSHOT_UNREADABLE",
      `${file.path}: an etcd image of ${file.imageBytes} bytes is more than the ${constants.MAX_LENGTH} this reads at once; compact and defragment etcd, then save again`,
    );
  }
  const image = Buffer.allocUnsafe(file.imageBytes);
  const fd = openSync(file.path, "r");
  try {
    let at = 0;
    for (const piece of piecesOf(fd, file.imageBytes)) {
      piece.copy(image, at);
      at += piece.length;
    }
  } catch (err) {
    throw unreadable(file.path, err);
  } finally {
    closeSync(fd);
  }
  return image;
}

/**
 * Copies a checked file's image into `target`, a new file (mode 0600; made durable unless
 * `durable` is false), as a rollback-journal database (the store switches it to WAL when it opens
 * it), and returns the CRC-32 of the image as it is in the file (what Maintenance.Hash answered
 * when it was taken).
 */
export function copyImage(
  file: SnapshotFile,
  target: string,
  onProgress?: ProgressListener,
  durable = true,
): number {
  let source: number;
  try {
    source = openSync(file.path, "r");
  } catch (err) {
    throw unreadable(file.path, err);
  }
  let crc = 0;
  // A failure on the copy's side (a full disk, a read-only folder) names the copy, not the snapshot.
  const onTarget = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new CopyWriteError(`cannot write ${target}: ${(err as Error).message}`);
    }
  };
  try {
    const out = onTarget(() => openSync(target, "wx", 0o600));
    try {
      let at = 0;
      for (const piece of piecesOf(source, file.imageBytes)) {
        crc = crc32(piece, crc);
        if (at === 0 && isSqliteHeader(piece)) {
          piece[18] = 1;
          piece[19] = 1;
        }
        for (let written = 0; written < piece.length; ) {
          written += onTarget(() => writeSync(out, piece, written, piece.length - written, at + written));
        }
        at += piece.length;
        onProgress?.(at, file.imageBytes);
      }
      if (durable) onTarget(() => fsyncSync(out));
    } finally {
      closeSync(out);
    }
  } catch (err) {
    rmSync(target, { force: true });
    if (err instanceof SnapshotFileError || err instanceof CopyWriteError) throw err;
    throw unreadable(file.path, err);
  } finally {
    closeSync(source);
  }
  return crc >>> 0;
}

/** The copy of a snapshot could not be written (the snapshot itself is fine). */
export class CopyWriteError extends Error {
  override readonly name = "CopyWriteError";
}

/** Whether `bytes` (at least the first 100 of a file) open an SQLite database. */
export function isSqliteHeader(bytes: Buffer): boolean {
  return bytes.length >= 100 && bytes.subarray(0, 16).toString("latin1") === "SQLite format 3\u0000";
}

/**
 * Checks what a client sends as a snapshot: its length, and its sha256 over everything but the
 * last 32 bytes, fed a piece at a time as the pieces arrive (`update`), then `finish`.
 */
export class StreamedSnapshotCheck {
  private readonly hash: Hash = createHash("sha256");
  /** The last bytes seen, which may be the trailer: hashed once more bytes follow them. */
  private held = Buffer.alloc(0);
  private total = 0;

  constructor(private readonly what: string) {}

  update(piece: Buffer): void {
    this.total += piece.length;
    const joined = this.held.length === 0 ? piece : Buffer.concat([this.held, piece]);
    const cut = Math.max(0, joined.length - SHA256_BYTES);
    if (cut > 0) this.hash.update(joined.subarray(0, cut));
    this.held = Buffer.from(joined.subarray(cut));
  }

  /** Throws SnapshotFileError unless what was fed is an image and its sha256. */
  finish(): void {
    imageBytesOf(this.total, this.what, false);
    const actual = this.hash.digest();
    if (!actual.equals(this.held)) throw hashMismatch(this.what, this.held, actual);
  }
}

export interface SnapshotStatus {
  /** CRC-32 of the image (what Maintenance.Hash answered when the snapshot was taken). */
  hash: number;
  revision: bigint;
  compactRevision: bigint;
  totalKeys: bigint;
  totalSizeBytes: bigint;
}

/**
 * Opens the database file `dbPath` (a copied image), checks it is a whole, sane MVCC database,
 * and runs `fn`; `what` names the snapshot in errors.
 */
export function withImageDatabase<T>(
  dbPath: string,
  what: string,
  readonly: boolean,
  fn: (db: Database.Database) => T,
): T {
  let db: Database.Database;
  try {
    db = new Database(dbPath, { readonly, fileMustExist: true });
  } catch (err) {
    throw new SnapshotFileError(
      "SNAPSHOT_CORRUPT",
      `${what}: not a chainfire snapshot (${(err as Error).message})`,
    );
  }
  try {
    const check = db.pragma("quick_check", { simple: true });
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
      .pluck()
      .all() as string[];
    if (check !== "ok" || !["kv", "meta", "lease"].every((t) => tables.includes(t))) {
      throw new SnapshotFileError(
        "SNAPSHOT_CORRUPT",
        `${what}: not a chainfire MVCC image (integrity: ${String(check)})`,
      );
    }
    return fn(db);
  } catch (err) {
    if (err instanceof SnapshotFileError) throw err;
    throw new SnapshotFileError("SNAPSHOT_CORRUPT", `${what}: unreadable image (${(err as Error).message})`);
  } finally {
    db.close();
  }
}

/** The status of a chainfire image, from its database `db`; `hash` is the image's CRC-32. */
export function databaseStatus(db: Database.Database, hash: number, imageBytes: number): SnapshotStatus {
  const meta = db.prepare("SELECT value FROM meta WHERE name = ?").safeIntegers().pluck();
  // A key is live when its newest row is not a tombstone (one row per key per revision).
  const liveKeys = db
    .prepare("SELECT COUNT(*) FROM (SELECT tombstone, MAX(main) FROM kv GROUP BY key) WHERE tombstone = 0")
    .safeIntegers()
    .pluck()
    .get() as bigint;
  return {
    hash,
    revision: (meta.get("current_revision") as bigint | undefined) ?? 0n,
    compactRevision: storedCompaction((name) => meta.get(name) as bigint | undefined),
    totalKeys: liveKeys,
    totalSizeBytes: BigInt(imageBytes),
  };
}

/** The status of a chainfire image: read from a copy of it in the system's temporary folder. */
export function snapshotStatus(file: SnapshotFile): SnapshotStatus {
  const dir = mkdtempSync(join(tmpdir(), "chainfire-snapshot-status-"));
  try {
    const copy = join(dir, "image.db");
    const hash = copyImage(file, copy, undefined, false);
    return withImageDatabase(copy, file.path, true, (db) => databaseStatus(db, hash, file.imageBytes));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
