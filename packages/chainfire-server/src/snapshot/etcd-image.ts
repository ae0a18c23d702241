// etcd's snapshot files in chainfire's tools: `snapshot status` reports on one as etcdctl does,
// and `snapshot restore` turns one into the store image a chainfire member starts from, so a
// cluster moves from etcd 3.4 to chainfire with `etcdctl snapshot save` and `chainfirectl
// snapshot restore`. The image is etcd's bbolt database: the "key" bucket holds one entry per key
// change (its revision, main and sub, as the entry's key; a trailing "t" marks a deletion), the
// "lease" bucket the leases, and "meta" the compaction. Members, alarms and Raft state are left
// behind: a restore starts a new cluster, as etcd's does. etcd's users and roles have no place
// here: a file with authentication enabled is restored only when the operator says to drop it.
import { mvccpb } from "@photoncloud/chainfire-api";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import crc32c from "crc-32/crc32c.js";
import { Backend } from "../mvcc/backend.js";
import { BoltImage } from "./bolt.js";
import {
  readImage,
  type SnapshotFile,
  SnapshotFileError,
  type SnapshotStatus,
  snapshotStatus,
} from "./snapshot-file.js";

/** The status of a snapshot file of either kind: chainfire's, or etcd's as etcdctl reports it. */
export function anySnapshotStatus(file: SnapshotFile): SnapshotStatus {
  return file.bolt ? etcdImageStatus(readImage(file), file.path) : snapshotStatus(file);
}

/** etcd's revision key: 8 bytes main, "_", 8 bytes sub (big-endian), and "t" for a deletion. */
const REVISION_BYTES = 17;
const TOMBSTONE_MARK = 0x74; // "t"

interface Revision {
  readonly main: bigint;
  readonly sub: bigint;
  readonly tombstone: boolean;
}

function revisionOf(key: Buffer, path: string): Revision {
  const tombstone = key.length === REVISION_BYTES + 1 && key[REVISION_BYTES] === TOMBSTONE_MARK;
  if ((key.length !== REVISION_BYTES && !tombstone) || key[8] !== 0x5f)
    throw new SnapshotFileError(
      "SNAPSHOT_CORRUPT",
      `${path}: the key bucket holds ${key.toString("hex")}, not an etcd revision`,
    );
  return { main: key.readBigInt64BE(0), sub: key.readBigInt64BE(9), tombstone };
}

/**
 * The compaction from etcd's "meta" bucket (-1: none): the scheduled one when it is later than the
 * finished one, since etcd resumes an unfinished compaction when it starts on such a file (the
 * snapshot may hold its history half deleted). Rows it would still delete stay, below the mark,
 * where no read or watch reaches them.
 */
function compaction(bolt: BoltImage): bigint {
  let compacted = -1n;
  for (const { key, value } of bolt.bucket("meta")) {
    const name = key.toString();
    if ((name === "finishedCompactRev" || name === "scheduledCompactRev") && value.length >= 8) {
      const revision = value.readBigInt64BE(0);
      if (revision > compacted) compacted = revision;
    }
  }
  return compacted;
}

/** Whether etcd's authentication was enabled (its "auth" bucket's authEnabled). */
function etcdAuthEnabled(bolt: BoltImage): boolean {
  for (const { key, value } of bolt.bucket("auth"))
    if (key.toString() === "authEnabled") return value.length > 0 && value[0] === 1;
  return false;
}

/** What `etcdctl snapshot status` prints for the image: its hash, revision, entries and size. */
export function etcdImageStatus(image: Buffer, path: string): SnapshotStatus {
  const bolt = new BoltImage(image, path);
  // etcd's hash: CRC-32C over each bucket's name and then its keys and values, in key order.
  let hash = 0;
  let revision = 0n;
  let totalKeys = 0n;
  for (const name of bolt.bucketNames()) {
    hash = crc32c.buf(name, hash);
    const isKeys = name.toString() === "key";
    for (const { key, value } of bolt.bucket(name)) {
      hash = crc32c.buf(value, crc32c.buf(key, hash));
      if (isKeys) revision = revisionOf(key, path).main;
      totalKeys++;
    }
  }
  return {
    hash: hash >>> 0,
    revision,
    compactRevision: compaction(bolt),
    totalKeys,
    totalSizeBytes: bolt.sizeBytes,
  };
}

/** etcd's leasepb.Lease: ID (1), TTL (2), RemainingTTL (3), all int64. */
function decodeLease(
  key: Buffer,
  value: Buffer,
  path: string,
): { id: bigint; ttl: bigint; remaining: bigint } {
  const lease = { id: 0n, ttl: 0n, remaining: 0n };
  try {
    const reader = new BinaryReader(value);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (wireType !== 0) {
        reader.skip(wireType);
        continue;
      }
      const v = BigInt(reader.int64().toString());
      if (field === 1) lease.id = v;
      else if (field === 2) lease.ttl = v;
      else if (field === 3) lease.remaining = v;
    }
  } catch (err) {
    throw new SnapshotFileError(
      "SNAPSHOT_CORRUPT",
      `${path}: lease ${key.toString("hex")} holds no etcd lease (${(err as Error).message})`,
    );
  }
  if (lease.id === 0n)
    throw new SnapshotFileError("SNAPSHOT_CORRUPT", `${path}: lease ${key.toString("hex")} has ID 0`);
  return lease;
}

/**
 * The chainfire store image holding what etcd's image holds: every kept revision of every key,
 * the leases, the current revision and the compaction. Throws SnapshotFileError for an image that
 * is not sound.
 */
export function etcdImageToStore(image: Buffer, path: string, dropAuth = false): Buffer {
  const bolt = new BoltImage(image, path);
  // chainfire has no etcd authentication: restored, the data would answer every client.
  if (etcdAuthEnabled(bolt) && !dropAuth)
    throw new SnapshotFileError(
      "SNAPSHOT_AUTH",
      `${path}: etcd authentication is enabled in this snapshot (users, roles, permissions), and chainfire does not implement it: restored, the keys would be open to every client. Give --drop-etcd-auth to restore without it, or run etcdctl auth disable on etcd and save again`,
    );
  const backend = new Backend(":memory:", 0);
  try {
    let revision = 1n;
    const compacted = compaction(bolt);
    backend.transaction(() => {
      for (const { key, value } of bolt.bucket("key")) {
        const rev = revisionOf(key, path);
        let kv: mvccpb.KeyValue;
        try {
          kv = mvccpb.KeyValue.decode(value);
        } catch (err) {
          throw new SnapshotFileError(
            "SNAPSHOT_CORRUPT",
            `${path}: revision ${rev.main}.${rev.sub} holds no etcd key-value (${(err as Error).message})`,
          );
        }
        backend.putRow(
          rev.tombstone
            ? {
                main: rev.main,
                sub: rev.sub,
                key: Buffer.from(kv.key),
                create_rev: 0n,
                version: 0n,
                lease: 0n,
                value: null,
                tombstone: 1n,
              }
            : {
                main: rev.main,
                sub: rev.sub,
                key: Buffer.from(kv.key),
                create_rev: kv.createRevision,
                version: kv.version,
                lease: kv.lease,
                value: Buffer.from(kv.value),
                tombstone: 0n,
              },
        );
        if (rev.main > revision) revision = rev.main;
      }
      for (const { key, value } of bolt.bucket("lease")) {
        const lease = decodeLease(key, value, path);
        backend.putLease(lease.id, lease.ttl, lease.remaining);
      }
      // As etcd's store at start: the revision is at least the compaction's.
      backend.setMetaValue("current_revision", revision > compacted ? revision : compacted);
      backend.setMetaValue("compacted_revision", compacted);
      backend.setMetaValue("applied_index", 0n);
    });
    return backend.serialize();
  } finally {
    backend.close();
  }
}
