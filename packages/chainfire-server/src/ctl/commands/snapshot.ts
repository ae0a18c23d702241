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
import { readSnapshotFile, verifySnapshotBytes } from "../../snapshot/snapshot-file.js";
import { type Connection, type Endpoint, fromGrpc } from "../connection.js";
import { badArgument } from "../errors.js";
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

function receive(conn: Connection, io: CtlIo, endpoint: Endpoint): Promise<Buffer> {
  const progress = progressBar(io, "snapshot");
  const chunks: Buffer[] = [];
  let receivedBytes = 0;
  return new Promise<Buffer>((resolve, reject) => {
    const stream = conn.clients(endpoint).maintenance.snapshot({}, conn.metadata());
    stream.on("data", (res: etcd.SnapshotResponse) => {
      chunks.push(Buffer.from(res.blob));
      receivedBytes += res.blob.length;
      progress.update(receivedBytes, receivedBytes + Number(res.remainingBytes));
    });
    stream.on("error", (err: ServiceError) => {
      progress.stop();
      reject(fromGrpc(err, endpoint));
    });
    stream.on("end", () => {
      progress.stop();
      resolve(Buffer.concat(chunks));
    });
  });
}

export async function snapshotSave(conn: Connection, io: CtlIo, file: string): Promise<void> {
  if (conn.endpoints.length !== 1) {
    throw badArgument(
      `snapshot save takes exactly one endpoint (got ${conn.endpoints.length}); pick one member`,
    );
  }
  const endpoint = await conn.primary();
  const bytes = await receive(conn, io, endpoint);
  // Refuse to leave a bad file behind: the stream's own trailer must match its content.
  verifySnapshotBytes(bytes, `snapshot from ${endpoint.address}`);
  const partial = `${file}.part`;
  try {
    const fd = openSync(partial, "w", 0o600);
    try {
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(partial, file);
    // The name too: a power loss after "saved" must not take the file away.
    syncFolder(dirname(file));
  } catch (err) {
    rmSync(partial, { force: true });
    throw badArgument(`cannot write snapshot to ${file}: ${(err as Error).message}`);
  }
  io.out(`Snapshot saved at ${file}`);
}

export function snapshotStatusCommand(io: CtlIo, format: OutputFormat, file: string): void {
  const s = anySnapshotStatus(readSnapshotFile(file, isRawBoltFile(file)), file);
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
 * Whether `file` is a bare bbolt database (etcd's member/snap/db) with no sha256 after it:
 * etcdctl's status reads such a copy, and so does this one (restore still asks for
 * --skip-hash-check).
 */
function isRawBoltFile(file: string): boolean {
  try {
    const fd = openSync(file, "r");
    try {
      const head = Buffer.alloc(24);
      readSync(fd, head, 0, head.length, 0);
      return isBoltImage(head) && fstatSync(fd).size % 512 === 0;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
