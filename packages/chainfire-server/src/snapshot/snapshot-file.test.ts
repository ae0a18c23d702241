import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { MvccStore } from "../mvcc/store.js";
import { putRequest } from "../mvcc/messages.js";
import { entriesFor } from "../testing/commands.js";
import {
  checkSnapshotFile,
  copyImage,
  SnapshotFileError,
  snapshotStatus,
  StreamedSnapshotCheck,
} from "./snapshot-file.js";

const dir = mkdtempSync(join(tmpdir(), "chainfire-snapshot-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest();

/** A store image of `keys` keys with 2-KB values (about 2.1 KB a key in the file). */
function storeImage(keys: number): Buffer {
  const store = new MvccStore({ path: ":memory:" });
  const cmds = Array.from({ length: keys }, (_, i) => ({
    put: putRequest({ key: Buffer.from(`key${i}`), value: Buffer.alloc(2000, i % 256) }),
  }));
  store.applyBatch(entriesFor(cmds, 1n, 1_000_000));
  const image = Buffer.from(store.snapshot());
  store.close();
  return image;
}

/** The code a SnapshotFileError thrown by `fn` has. */
function codeOf(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof SnapshotFileError) return err.code;
    throw err;
  }
  return "none";
}

describe("snapshot files read in pieces", () => {
  // Over two of the 4-MiB pieces the file is read in, so the hash and the copy cross piece ends.
  const image = storeImage(5000);
  const file = join(dir, "store.snapshot");
  writeFileSync(file, Buffer.concat([image, sha256(image)]));

  it("checks the trailing sha256 of an image longer than one piece, and copies it into a database to open", () => {
    // Proves status and restore read what `snapshot save` wrote: the hash over every piece, and a
    // copy that opens as the store's database with every key, whose CRC-32 is the image's.
    expect(image.length).toBeGreaterThan(8 * 1024 * 1024);
    const progress: number[] = [];
    const checked = checkSnapshotFile(file, false, (done) => progress.push(done));
    expect(checked).toMatchObject({ imageBytes: image.length, hashChecked: true, bolt: false });
    expect(progress.at(-1)).toBe(image.length);
    expect(progress.length).toBeGreaterThan(2);

    const copy = join(dir, "copy.db");
    expect(copyImage(checked, copy)).toBe(crc32(image) >>> 0);
    const db = new Database(copy, { readonly: true });
    expect(db.prepare("SELECT COUNT(*) FROM kv").pluck().get()).toBe(5000);
    expect(db.pragma("journal_mode", { simple: true })).toBe("delete");
    db.close();

    const status = snapshotStatus(checked);
    expect(status).toMatchObject({ revision: 5001n, totalKeys: 5000n, totalSizeBytes: BigInt(image.length) });
    expect(status.hash).toBe(crc32(image) >>> 0);
  });

  it("copies a member's WAL-mode image into a rollback-journal database, reporting the image's CRC-32", () => {
    // Proves the header patch: a member's image says WAL (bytes 18 and 19 are 2), which a copy
    // opened without its -wal would not be; the copy says rollback journal, and the CRC reported
    // is that of the image as saved, which Maintenance.Hash answered.
    const wal = Buffer.from(image);
    wal[18] = 2;
    wal[19] = 2;
    const path = join(dir, "wal.snapshot");
    writeFileSync(path, Buffer.concat([wal, sha256(wal)]));
    const copy = join(dir, "wal-copy.db");
    expect(copyImage(checkSnapshotFile(path), copy)).toBe(crc32(wal) >>> 0);
    const head = readFileSync(copy).subarray(0, 20);
    expect([head[18], head[19]]).toEqual([1, 1]);
    const db = new Database(copy, { readonly: true });
    expect(db.prepare("SELECT COUNT(*) FROM kv").pluck().get()).toBe(5000);
    db.close();
  });

  it("refuses a file with one byte changed, one cut short, and one with no hash unless told", () => {
    // Proves a damaged file is refused before anything acts on it, each with its own code.
    const damaged = Buffer.concat([image, sha256(image)]);
    damaged.writeUInt8(damaged.readUInt8(6 * 1024 * 1024) ^ 0xff, 6 * 1024 * 1024);
    writeFileSync(join(dir, "damaged"), damaged);
    expect(codeOf(() => checkSnapshotFile(join(dir, "damaged")))).toBe("SNAPSHOT_CORRUPT");
    writeFileSync(join(dir, "short"), readFileSync(file).subarray(0, image.length - 100));
    expect(codeOf(() => checkSnapshotFile(join(dir, "short")))).toBe("SNAPSHOT_TRUNCATED");
    writeFileSync(join(dir, "bare"), image);
    expect(codeOf(() => checkSnapshotFile(join(dir, "bare")))).toBe("SNAPSHOT_TRUNCATED");
    expect(checkSnapshotFile(join(dir, "bare"), true)).toMatchObject({
      imageBytes: image.length,
      hashChecked: false,
    });
    expect(codeOf(() => checkSnapshotFile(join(dir, "missing")))).toBe("SNAPSHOT_UNREADABLE");
  });

  it("checks a streamed snapshot whatever the pieces it arrives in, the trailer split or not", () => {
    // Proves `snapshot save` checks the hash however the server cut its messages: the last 32
    // bytes may arrive alone (as etcd sends them), split over two messages, or with the image.
    const whole = Buffer.concat([image, sha256(image)]);
    const cuts = [
      [32 * 1024],
      [whole.length - 32],
      [whole.length - 20],
      [whole.length - 40, whole.length - 7],
      [1, 2, 3],
    ];
    for (const at of cuts) {
      const check = new StreamedSnapshotCheck("test");
      let from = 0;
      for (const to of [...at, whole.length]) {
        check.update(whole.subarray(from, to));
        from = to;
      }
      expect(() => check.finish()).not.toThrow();
    }
    const bad = new StreamedSnapshotCheck("test");
    bad.update(Buffer.concat([image, Buffer.alloc(32)]));
    expect(codeOf(() => bad.finish())).toBe("SNAPSHOT_CORRUPT");
    const cut = new StreamedSnapshotCheck("test");
    cut.update(whole.subarray(0, whole.length - 1));
    expect(codeOf(() => cut.finish())).toBe("SNAPSHOT_TRUNCATED");
  });
});
