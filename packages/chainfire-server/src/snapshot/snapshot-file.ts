// The snapshot file as `snapshot save` writes it and etcd's tools expect it: the state machine image
// (a SQLite database, the MVCC store's `snapshot()`) followed by the sha256 of the image, 32 bytes.
// Everything that reads a snapshot file goes through `readSnapshotFile`, which refuses a corrupt or
// truncated file before any caller acts on it.
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { crc32 } from "node:zlib";
import { rollbackJournalCopy } from "@photoncloud/raft";
import Database from "better-sqlite3";
import { storedCompaction } from "../mvcc/store.js";

export const SHA256_BYTES = 32;
/** SQLite images are whole pages (multiples of 512), so a trailing hash leaves exactly 32 over. */
const PAGE_GRANULE_BYTES = 512;

export type SnapshotErrorCode =
  | "SNAPSHOT_CORRUPT"
  | "SNAPSHOT_TRUNCATED"
  | "SNAPSHOT_UNREADABLE"
  | "SNAPSHOT_AUTH";

export class SnapshotFileError extends Error {
  constructor(
    readonly code: SnapshotErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "SnapshotFileError";
  }
}

export interface SnapshotImage {
  /** The SQLite image without the trailer. */
  readonly image: Buffer;
  /** True when a trailing sha256 was present and matched. */
  readonly hashChecked: boolean;
}

/** Splits image and trailer and checks the sha256; `skipHashCheck` accepts a bare database copy. */
/** Reports how far a long step (hashing, writing) has gone; drives the CLI's progress bar. */
export type ProgressListener = (doneBytes: number, totalBytes: number) => void;

const HASH_CHUNK_BYTES = 4 * 1024 * 1024;

function sha256(image: Buffer, onProgress?: ProgressListener): Buffer {
  const hash = createHash("sha256");
  for (let offset = 0; offset < image.length; offset += HASH_CHUNK_BYTES) {
    hash.update(image.subarray(offset, offset + HASH_CHUNK_BYTES));
    onProgress?.(Math.min(offset + HASH_CHUNK_BYTES, image.length), image.length);
  }
  return hash.digest();
}

export function verifySnapshotBytes(
  bytes: Buffer,
  path: string,
  skipHashCheck = false,
  onProgress?: ProgressListener,
): SnapshotImage {
  const remainder = bytes.length % PAGE_GRANULE_BYTES;
  const hasTrailer = remainder === SHA256_BYTES;
  if (!hasTrailer && !skipHashCheck) {
    throw new SnapshotFileError(
      "SNAPSHOT_TRUNCATED",
      `${path}: ${bytes.length} bytes is not an image plus its 32-byte sha256 (truncated or not a snapshot file); ` +
        "a database copied without a hash needs --skip-hash-check",
    );
  }
  if (!hasTrailer && remainder !== 0) {
    throw new SnapshotFileError(
      "SNAPSHOT_TRUNCATED",
      `${path}: ${bytes.length} bytes is not a whole database image (truncated)`,
    );
  }
  const image = hasTrailer ? bytes.subarray(0, bytes.length - SHA256_BYTES) : bytes;
  if (hasTrailer && !skipHashCheck) {
    const expected = bytes.subarray(bytes.length - SHA256_BYTES);
    const actual = sha256(image, onProgress);
    if (!actual.equals(expected)) {
      throw new SnapshotFileError(
        "SNAPSHOT_CORRUPT",
        `${path}: sha256 mismatch (file says ${expected.toString("hex").slice(0, 16)}…, content is ${actual.toString("hex").slice(0, 16)}…): the snapshot is corrupt`,
      );
    }
  }
  return { image, hashChecked: hasTrailer && !skipHashCheck };
}

export function readSnapshotFile(
  path: string,
  skipHashCheck = false,
  onProgress?: ProgressListener,
): SnapshotImage {
  let bytes: Buffer;
  try {
    if (!statSync(path).isFile()) throw new Error("not a regular file");
    bytes = readFileSync(path);
  } catch (err) {
    throw new SnapshotFileError(
      "SNAPSHOT_UNREADABLE",
      `cannot read snapshot ${path}: ${(err as Error).message}`,
    );
  }
  return verifySnapshotBytes(bytes, path, skipHashCheck, onProgress);
}

export interface SnapshotStatus {
  /** CRC-32 of the image (what Maintenance.Hash answered when the snapshot was taken). */
  hash: number;
  revision: bigint;
  compactRevision: bigint;
  totalKeys: bigint;
  totalSizeBytes: bigint;
}

/** Opens the image read-only in memory, checks it is a whole, sane MVCC database, and runs `fn`. */
export function withImageDatabase<T>(image: Buffer, path: string, fn: (db: Database.Database) => T): T {
  let db: Database.Database;
  try {
    db = new Database(rollbackJournalCopy(image));
  } catch (err) {
    throw new SnapshotFileError(
      "SNAPSHOT_CORRUPT",
      `${path}: not a chainfire snapshot (${(err as Error).message})`,
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
        `${path}: not a chainfire MVCC image (integrity: ${String(check)})`,
      );
    }
    return fn(db);
  } catch (err) {
    if (err instanceof SnapshotFileError) throw err;
    throw new SnapshotFileError("SNAPSHOT_CORRUPT", `${path}: unreadable image (${(err as Error).message})`);
  } finally {
    db.close();
  }
}

export function snapshotStatus(snapshot: SnapshotImage, path: string): SnapshotStatus {
  return withImageDatabase(snapshot.image, path, (db) => {
    const meta = db.prepare("SELECT value FROM meta WHERE name = ?").safeIntegers().pluck();
    // A key is live when its newest row is not a tombstone (one row per key per revision).
    const liveKeys = db
      .prepare("SELECT COUNT(*) FROM (SELECT tombstone, MAX(main) FROM kv GROUP BY key) WHERE tombstone = 0")
      .safeIntegers()
      .pluck()
      .get() as bigint;
    return {
      hash: crc32(snapshot.image) >>> 0,
      revision: (meta.get("current_revision") as bigint | undefined) ?? 0n,
      compactRevision: storedCompaction((name) => meta.get(name) as bigint | undefined),
      totalKeys: liveKeys,
      totalSizeBytes: BigInt(snapshot.image.length),
    };
  });
}
