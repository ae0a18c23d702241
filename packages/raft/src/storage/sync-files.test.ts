import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openFiles } from "@photoncloud/daemon/testing";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it, vi } from "vitest";
import {
  discardInterruptedReplace,
  replaceDatabaseFile,
  rollbackJournalCopy,
  WalFileSync,
  writeDatabaseFile,
} from "./sync-files.js";

/** For each WAL removed: whether the staged image was then whole on disk beside it. */
const walRemovals = vi.hoisted(() => [] as { wal: string; stagedWhole: boolean }[]);
const staged = vi.hoisted(() => ({ image: new Uint8Array() as Uint8Array<ArrayBufferLike> }));
/** A path whose opening fails (as when the process is out of descriptors), while set. */
const failing = vi.hoisted(() => ({ path: "" }));
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    openSync: (path: string, ...rest: [flags?: string]) => {
      if (path === failing.path)
        throw Object.assign(new Error(`EMFILE: too many open files, open '${path}'`), { code: "EMFILE" });
      return fs.openSync(path, ...rest);
    },
    rmSync: (path: string, options?: import("node:fs").RmOptions) => {
      if (path.endsWith("-wal")) {
        const staging = `${path.slice(0, -"-wal".length)}.restore`;
        const stagedWhole = fs.existsSync(staging) && fs.readFileSync(staging).equals(staged.image);
        walRemovals.push({ wal: path, stagedWhole });
      }
      fs.rmSync(path, options);
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), "raft-syncfiles-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** How many of this process's descriptors are open on `path` (named as /proc names it: resolved). */
function openOn(path: string): number {
  const target = realpathSync(path);
  return openFiles().filter((f) => f === target).length;
}

describe("WalFileSync", () => {
  it("syncs an open WAL-mode database as often as asked, also while a sync is running, until closed", async () => {
    // Proves the owner's usage: syncs overlap freely, close waits for them, and a sync after close
    // is an error rather than a silent success.
    const path = join(dir, "a.db");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE t (k)");
    const files = new WalFileSync(path);
    for (let i = 0; i < 5; i++) {
      db.exec(`INSERT INTO t VALUES (${i})`);
      await Promise.all([files.sync(), files.sync()]);
    }
    // The connection holds the WAL open too; the syncer adds one descriptor on it and one on the folder.
    expect(openOn(`${path}-wal`)).toBe(2);
    expect(openOn(dir)).toBe(1);
    const running = files.sync();
    files.close();
    expect(openOn(dir)).toBe(1);
    await running;
    expect(openOn(`${path}-wal`)).toBe(1);
    expect(openOn(dir)).toBe(0);
    await expect(files.sync()).rejects.toThrow(/closed/);
    db.close();
  });

  it("lets go of the WAL's descriptor when the folder cannot be opened, and opens both at the next sync", async () => {
    // Proves a failed open leaks nothing: the sync fails with the folder's error, only the
    // connection's own descriptor stays on the WAL, and the next sync opens both and succeeds.
    const path = join(dir, "i.db");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE t (k); INSERT INTO t VALUES (1)");
    const files = new WalFileSync(path);
    failing.path = dir;
    await expect(files.sync()).rejects.toThrow(/EMFILE/);
    failing.path = "";
    expect(openOn(`${path}-wal`)).toBe(1);
    expect(openOn(dir)).toBe(0);
    await files.sync();
    expect(openOn(`${path}-wal`)).toBe(2);
    expect(openOn(dir)).toBe(1);
    files.close();
    expect(openOn(dir)).toBe(0);
    db.close();
  });

  it("refuses a database that has no WAL, naming the file", async () => {
    // Proves a database in rollback-journal mode is not taken as synced.
    const path = join(dir, "b.db");
    const db = new Database(path);
    db.exec("CREATE TABLE t (k)");
    await expect(new WalFileSync(path).sync()).rejects.toThrow(`${path}-wal does not exist`);
    expect(openOn(dir)).toBe(0);
    db.close();
  });
});

describe("writeDatabaseFile", () => {
  it("writes the whole image as a database SQLite opens", () => {
    // Proves a restored image lands byte for byte.
    const source = new Database(":memory:");
    source.exec("CREATE TABLE t (k); INSERT INTO t VALUES ('restored')");
    const image = source.serialize();
    source.close();
    const path = join(dir, "c.db");
    writeDatabaseFile(path, image);
    expect(readFileSync(path).equals(image)).toBe(true);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT k FROM t").pluck().get()).toBe("restored");
    db.close();
  });
});

describe("rollbackJournalCopy", () => {
  it("makes a WAL-mode database's image open in memory, with the same rows, leaving the image as it was", () => {
    // Proves what an in-memory restore relies on: SQLite refuses the WAL-mode image itself in memory.
    const path = join(dir, "wal-image.db");
    const source = new Database(path);
    source.pragma("journal_mode = WAL");
    source.exec("CREATE TABLE t (k); INSERT INTO t VALUES ('kept')");
    const image = source.serialize();
    source.close();
    const before = Buffer.from(image);
    expect([image[18], image[19]]).toEqual([2, 2]);
    const refused = new Database(Buffer.from(image));
    expect(() => refused.prepare("SELECT k FROM t").get()).toThrow(/unable to open/);
    refused.close();
    const copy = rollbackJournalCopy(image);
    expect(Buffer.from(image).equals(before)).toBe(true);
    expect([copy[18], copy[19]]).toEqual([1, 1]);
    expect(copy.subarray(20).equals(before.subarray(20))).toBe(true);
    const db = new Database(copy);
    expect(db.prepare("SELECT k FROM t").pluck().get()).toBe("kept");
    db.close();
  });

  it("copies anything that is not an SQLite image unchanged", () => {
    const other = Buffer.alloc(200, 7);
    const copy = rollbackJournalCopy(other);
    expect(copy.equals(other)).toBe(true);
    expect(copy).not.toBe(other);
  });
});

describe("replaceDatabaseFile", () => {
  it("puts the new image in place of a WAL-mode database and leaves neither its WAL nor the staging file", () => {
    // Proves a restore: the old database's WAL (holding a row not yet checkpointed) is not replayed
    // onto the new image, nothing is left beside the file, and the image was staged whole before
    // the WAL was removed (what discardInterruptedReplace relies on after a crash).
    const path = join(dir, "d.db");
    const old = new Database(path);
    old.pragma("journal_mode = WAL");
    old.pragma("wal_autocheckpoint = 0");
    old.exec("CREATE TABLE t (k); INSERT INTO t VALUES ('old')");
    const source = new Database(":memory:");
    source.exec("CREATE TABLE t (k); INSERT INTO t VALUES ('new')");
    const image = source.serialize();
    source.close();
    // The old connection's file and WAL, as a crash would leave them (a copy: closing would checkpoint).
    const crashed = join(dir, "e.db");
    writeDatabaseFile(crashed, readFileSync(path));
    writeDatabaseFile(`${crashed}-wal`, readFileSync(`${path}-wal`));
    old.close();
    staged.image = image;
    replaceDatabaseFile(crashed, image);
    // A crash once the old WAL is gone finds the whole image staged beside the file.
    expect(walRemovals).toEqual([{ wal: `${crashed}-wal`, stagedWhole: true }]);
    expect(readdirSync(dir).filter((f) => f.startsWith("e.db"))).toEqual(["e.db"]);
    const db = new Database(crashed, { readonly: true });
    expect(db.prepare("SELECT k FROM t").pluck().all()).toEqual(["new"]);
    db.close();
  });
});

describe("discardInterruptedReplace", () => {
  /** A database file holding one row, as a restore would find it. */
  function oldDatabase(path: string): void {
    const db = new Database(path);
    db.exec("CREATE TABLE t (k); INSERT INTO t VALUES ('old')");
    db.close();
  }

  it("removes the file, its WAL and -shm and the staged image left by a crash in the middle of a restore", () => {
    // Proves both shapes a crash leaves: the staged image half written with the old WAL still
    // there, and the staged image whole with the WAL removed; the database then opens empty.
    for (const [name, withWal] of [["f.db", true] as const, ["g.db", false] as const]) {
      const path = join(dir, name);
      oldDatabase(path);
      if (withWal) {
        writeFileSync(`${path}-wal`, "frames");
        writeFileSync(`${path}-shm`, "index");
      }
      writeFileSync(`${path}.restore`, withWal ? "half an ima" : readFileSync(path));
      expect(discardInterruptedReplace(path)).toBe(true);
      expect(readdirSync(dir).filter((f) => f.startsWith(name))).toEqual([]);
      const db = new Database(path);
      expect(db.prepare("SELECT count(*) FROM sqlite_schema").pluck().get()).toBe(0);
      db.close();
    }
  });

  it("leaves a database alone when no restore was interrupted", () => {
    // Proves an ordinary start keeps the file (and says so).
    const path = join(dir, "h.db");
    oldDatabase(path);
    expect(discardInterruptedReplace(path)).toBe(false);
    expect(discardInterruptedReplace(join(dir, "never-created.db"))).toBe(false);
    expect(existsSync(path)).toBe(true);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT k FROM t").pluck().all()).toEqual(["old"]);
    db.close();
  });
});
