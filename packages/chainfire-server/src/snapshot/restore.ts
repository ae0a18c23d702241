// Offline restore (like etcdutl's): turns one snapshot file into the data directory of one member
// of a NEW cluster. Every member of the new cluster restores the same file; the state machine image
// is kept (revisions continue) while the Raft side starts afresh: applied_index is reset to 0 and no
// raft/ directory is written, so the daemon bootstraps a new log, cluster ID and member IDs from its
// restore's --initial-cluster / --initial-cluster-token, recorded beside the image (RESTORED_FOR_FILE).
// Every check runs before anything is written; the directory appears whole or not at all.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { type DaemonUrl, parseUrlList, processExists } from "@photoncloud/daemon";
import {
  advertiseIssues,
  type MemberInfo,
  parseInitialCluster as parseMemberList,
  rollbackJournalCopy,
  syncFolder,
} from "@photoncloud/raft";
import Database from "better-sqlite3";
import { etcdImageStatus, etcdImageToStore } from "./etcd-image.js";
import {
  checkSnapshotFile,
  copyImage,
  databaseStatus,
  type ProgressListener,
  readImage,
  type SnapshotFile,
  type SnapshotStatus,
  withImageDatabase,
} from "./snapshot-file.js";

export const MVCC_DB_FILE = "mvcc.db";
/**
 * The membership a restore was made for (name, initial cluster, advertised peer URLs, token), which
 * the member's first start bootstraps from, as etcd's restore writes its membership into the data
 * dir: a member then started with only --name (etcd's recovery steps) still joins the restored
 * cluster, not a cluster of its own.
 */
export const RESTORED_FOR_FILE = "restored-for.json";

export interface RestoredFor {
  readonly name: string;
  readonly initialCluster: string;
  readonly initialAdvertisePeerUrls: string[];
  readonly initialClusterToken: string;
}

export interface RestoreOptions {
  name: string;
  dataDir: string;
  initialCluster: string;
  initialAdvertisePeerUrls: string;
  initialClusterToken: string;
  skipHashCheck?: boolean;
  /** Restore an etcd snapshot with authentication enabled, leaving its users and roles behind. */
  dropEtcdAuth?: boolean;
  /** Hashing then writing, as one 0..2×image-size scale. */
  onProgress?: ProgressListener;
}

export type RestoreErrorCode = "BAD_RESTORE_ARGUMENT" | "DATA_DIR_EXISTS";

export class RestoreError extends Error {
  constructor(
    readonly code: RestoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "RestoreError";
  }
}

/**
 * `name=url[,name=url]` (a name may repeat for several URLs) → name → URLs, checked as the daemon
 * checks --initial-cluster at the restored member's first start (a URL listed twice, a port out of
 * range): a restore the daemon would refuse to start from is refused here, before anything is written.
 */
export function parseInitialCluster(text: string): Map<string, string[]> {
  let members: MemberInfo[];
  try {
    members = parseMemberList(text, "restore");
  } catch (err) {
    throw new RestoreError("BAD_RESTORE_ARGUMENT", (err as Error).message);
  }
  return new Map(members.map((m) => [m.name, [...m.peerUrls]]));
}

/** The URLs this member advertises to its peers, as the daemon checks them. */
function advertisedUrls(text: string): string[] {
  let urls: DaemonUrl[];
  try {
    urls = parseUrlList(text);
  } catch (err) {
    throw new RestoreError(
      "BAD_RESTORE_ARGUMENT",
      `--initial-advertise-peer-urls: ${(err as Error).message}`,
    );
  }
  const unreachable = advertiseIssues(urls)[0];
  if (unreachable !== undefined) throw new RestoreError("BAD_RESTORE_ARGUMENT", unreachable.message);
  return urls.map((u) => u.href);
}

function checkArguments(opts: RestoreOptions): Map<string, string[]> {
  const cluster = parseInitialCluster(opts.initialCluster);
  const own = cluster.get(opts.name);
  if (!own) {
    throw new RestoreError(
      "BAD_RESTORE_ARGUMENT",
      `--name "${opts.name}" is not in --initial-cluster (${[...cluster.keys()].join(", ")})`,
    );
  }
  const advertised = advertisedUrls(opts.initialAdvertisePeerUrls);
  if ([...advertised].sort().join(",") !== [...own].sort().join(",")) {
    throw new RestoreError(
      "BAD_RESTORE_ARGUMENT",
      `--initial-advertise-peer-urls (${advertised.join(",")}) must equal ${opts.name}'s URLs in --initial-cluster (${own.join(",")})`,
    );
  }
  if (opts.initialClusterToken === "") {
    throw new RestoreError("BAD_RESTORE_ARGUMENT", "--initial-cluster-token must not be empty");
  }
  if (existsSync(opts.dataDir) && readdirSync(opts.dataDir).length > 0) {
    throw new RestoreError(
      "DATA_DIR_EXISTS",
      `--data-dir ${opts.dataDir} already exists and is not empty; restore only into a new directory`,
    );
  }
  return cluster;
}

/** Makes a store's database the start of a new cluster: Raft position 0, the old members' alarms gone. */
function freshen(db: Database.Database): void {
  db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES ('applied_index', 0)").run();
  db.prepare("DELETE FROM meta WHERE name LIKE 'alarm:%'").run();
}

/** An image in memory (one made from etcd's), made fresh. */
function freshImage(image: Buffer): Buffer {
  const db = new Database(rollbackJournalCopy(image));
  try {
    freshen(db);
    // A rollback-journal image: the daemon switches it to WAL when it opens it.
    return db.serialize();
  } finally {
    db.close();
  }
}

/**
 * Writes the store's database for the new member at `target`: a chainfire image is copied there
 * a piece at a time, checked and made fresh in place; an etcd image is converted in memory.
 * Returns the snapshot's status.
 */
function writeStore(
  file: SnapshotFile,
  target: string,
  opts: RestoreOptions,
  onProgress: ProgressListener,
): SnapshotStatus {
  if (file.bolt) {
    const image = readImage(file);
    const status = etcdImageStatus(image, file.path);
    writeImage(
      target,
      freshImage(etcdImageToStore(image, file.path, opts.dropEtcdAuth === true)),
      onProgress,
    );
    return status;
  }
  const hash = copyImage(file, target, onProgress);
  const status = withImageDatabase(target, file.path, false, (db) => {
    const before = databaseStatus(db, hash, file.imageBytes);
    freshen(db);
    return before;
  });
  // What closing the database wrote (the rollback journal's commit) is made durable too.
  const fd = openSync(target, "r+");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return status;
}

const WRITE_CHUNK_BYTES = 4 * 1024 * 1024;

function writeImage(path: string, image: Buffer, onProgress: ProgressListener): void {
  const fd = openSync(path, "wx", 0o600);
  try {
    for (let offset = 0; offset < image.length; offset += WRITE_CHUNK_BYTES) {
      const chunk = image.subarray(offset, offset + WRITE_CHUNK_BYTES);
      writeSync(fd, chunk, 0, chunk.length, offset);
      onProgress(offset + chunk.length, image.length);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface RestoreResult {
  status: SnapshotStatus;
  dataDir: string;
  members: Map<string, string[]>;
}

/** Staging dirs of restores into `target` that were interrupted (their process is gone). */
function removeAbandonedStaging(target: string): void {
  const prefix = `.${basename(target)}.restoring-`;
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processExists(pid)) continue;
    rmSync(join(dirname(target), name), { recursive: true, force: true });
  }
}

export function restoreSnapshot(file: string, opts: RestoreOptions): RestoreResult {
  const members = checkArguments(opts);
  const progress = opts.onProgress;
  const snapshot = checkSnapshotFile(file, opts.skipHashCheck === true, (done, total) =>
    progress?.(done, total * 2),
  );
  const target = resolve(opts.dataDir);
  // Build beside the target and rename, so an interrupted restore never leaves a half data dir.
  const staging = join(dirname(target), `.${basename(target)}.restoring-${process.pid}`);
  removeAbandonedStaging(target);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  let status: SnapshotStatus;
  try {
    status = writeStore(snapshot, join(staging, MVCC_DB_FILE), opts, (done, total) =>
      progress?.(total + done, total * 2),
    );
    const restoredFor: RestoredFor = {
      name: opts.name,
      initialCluster: opts.initialCluster,
      initialAdvertisePeerUrls: opts.initialAdvertisePeerUrls.split(",").map((u) => u.trim()),
      initialClusterToken: opts.initialClusterToken,
    };
    writeImage(
      join(staging, RESTORED_FOR_FILE),
      Buffer.from(`${JSON.stringify(restoredFor, null, 2)}\n`),
      () => {},
    );
    // The image's folder entry, then the data dir's name, are made durable: after a power loss the
    // data dir is there whole or not at all.
    syncFolder(staging);
    // rename(2) takes the place of an empty directory only: one filled since the check above (a
    // daemon started on it meanwhile) is refused, never removed.
    try {
      renameSync(staging, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST")
        throw new RestoreError(
          "DATA_DIR_EXISTS",
          `--data-dir ${opts.dataDir} was filled while the restore ran; restore only into a new directory`,
        );
      throw new RestoreError(
        "BAD_RESTORE_ARGUMENT",
        `--data-dir ${opts.dataDir}: cannot put the restored data dir in place (${(err as Error).message})`,
      );
    }
    syncFolder(dirname(target));
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  return { status, dataDir: target, members };
}
