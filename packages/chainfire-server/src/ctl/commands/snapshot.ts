// `snapshot save|status|restore`. save streams Maintenance.Snapshot from ONE member into
// <file>.part, checks the trailing sha256 and only then renames it into place, so a file at the
// given path is always a whole, verified snapshot.
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { ServiceError } from "@grpc/grpc-js";
import type { etcd } from "@photoncloud/chainfire-api";
import { syncFolder } from "@photoncloud/raft";
import cliProgress from "cli-progress";
import { isBoltImage } from "../../snapshot/bolt.js";
import { anySnapshotStatus } from "../../snapshot/etcd-image.js";
import {
  checkSnapshotFile,
  isSqliteHeader,
  SnapshotFileError,
  StreamedSnapshotCheck,
} from "../../snapshot/snapshot-file.js";
import { type Connection, type Endpoint, fromGrpc } from "../connection.js";
import { badArgument, CtlError } from "../errors.js";
import { type CtlIo, humanBytes, type OutputFormat, renderTable, toJson } from "../format.js";

interface Progress {
  update(doneBytes: number, totalBytes: number): void;
  stop(): void;
}

/** A byte-progress bar on stderr when it is a terminal; silent otherwise (scripts, pipes, tests). */
export function progressBar(io: CtlIo, label: string): Progress {
  if (!io.stderrIsTty) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {doneSize} / {totalSize}`,
      hideCursor: true,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(doneBytes, totalBytes) {
      const payload = { doneSize: humanBytes(doneBytes), totalSize: humanBytes(totalBytes) };
      if (!started) bar.start(totalBytes, doneBytes, payload);
      else bar.update(doneBytes, payload);
      started = true;
    },
    stop: () => (started ? bar.stop() : undefined),
  };
}

/**
 * Streams Maintenance.Snapshot from `endpoint` into the new file `partial`, checking the trailing
 * sha256 as the pieces arrive; the file is durable when this resolves. Nothing is held in memory
 * but the pieces in flight.
 */
function receive(conn: Connection, io: CtlIo, endpoint: Endpoint, partial: string): Promise<void> {
  const progress = progressBar(io, "snapshot");
  const what = `snapshot from ${endpoint.address}`;
  const check = new StreamedSnapshotCheck(what);
  let fd: number;
  try {
    fd = openSync(partial, "w", 0o600);
  } catch (err) {
    throw badArgument(`cannot write snapshot to ${partial}: ${(err as Error).message}`);
  }
  let receivedBytes = 0;
  return new Promise<void>((resolve, reject) => {
    const stream = conn.clients(endpoint).maintenance.snapshot({}, conn.metadata());
    let failed = false;
    const fail = (err: Error) => {
      failed = true;
      progress.stop();
      stream.cancel();
      reject(err);
    };
    stream.on("data", (res: etcd.SnapshotResponse) => {
      if (failed) return;
      const blob = Buffer.from(res.blob.buffer, res.blob.byteOffset, res.blob.byteLength);
      try {
        for (let done = 0; done < blob.length; ) done += writeSync(fd, blob, done);
      } catch (err) {
        fail(badArgument(`cannot write snapshot to ${partial}: ${(err as Error).message}`));
        return;
      }
      check.update(blob);
      receivedBytes += blob.length;
      progress.update(receivedBytes, receivedBytes + Number(res.remainingBytes));
    });
    stream.on("error", (err: ServiceError) => {
      if (failed) return;
      progress.stop();
      reject(fromGrpc(err, endpoint));
    });
    stream.on("end", () => {
      if (failed) return;
      progress.stop();
      try {
        // Refuse to leave a bad file behind: the stream's own trailer must match its content.
        check.finish();
        fsyncSync(fd);
        resolve();
      } catch (err) {
        reject(err);
      }
    });
  }).finally(() => closeSync(fd));
}

export async function snapshotSave(conn: Connection, io: CtlIo, file: string): Promise<void> {
  if (conn.endpoints.length !== 1) {
    throw badArgument(
      `snapshot save takes exactly one endpoint (got ${conn.endpoints.length}); pick one member`,
    );
  }
  const endpoint = await conn.primary();
  const partial = `${file}.part`;
  try {
    await receive(conn, io, endpoint, partial);
    renameSync(partial, file);
    // The name too: a power loss after "saved" must not take the file away.
    syncFolder(dirname(file));
  } catch (err) {
    rmSync(partial, { force: true });
    if (err instanceof CtlError || err instanceof SnapshotFileError) throw err;
    throw badArgument(`cannot write snapshot to ${file}: ${(err as Error).message}`);
  }
  io.out(`Snapshot saved at ${file}`);
}

export function snapshotStatusCommand(io: CtlIo, format: OutputFormat, file: string): void {
  const s = anySnapshotStatus(checkSnapshotFile(file, isBareImage(file)));
  if (format === "json") {
    io.out(
      // etcdctl's own field names for this one.
      toJson(
        { hash: s.hash, revision: s.revision, totalKey: s.totalKeys, totalSize: s.totalSizeBytes },
        new Set(["totalKey", "totalSize"]),
      ),
    );
    return;
  }
  const row = [
    // As etcdctl prints it (%x): no leading zeros.
    s.hash.toString(16),
    String(s.revision),
    String(s.totalKeys),
    humanBytes(s.totalSizeBytes),
  ];
  if (format === "table") io.out(renderTable(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], [row]));
  else io.out(row.join(", "));
}

/**
 * Whether `file` is a bare database with no sha256 after it: etcd's member/snap/db (bbolt) or a
 * member's mvcc.db (SQLite). etcdctl's status reads such a copy, and so does this one (restore
 * still asks for --skip-hash-check).
 */
function isBareImage(file: string): boolean {
  try {
    const fd = openSync(file, "r");
    try {
      const head = Buffer.alloc(100);
      readSync(fd, head, 0, head.length, 0);
      return (isSqliteHeader(head) || isBoltImage(head)) && fstatSync(fd).size % 512 === 0;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
