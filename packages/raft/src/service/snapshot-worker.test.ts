import { existsSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { SnapshotWorker } from "./snapshot-worker.js";

const dir = mkdtempSync(join(tmpdir(), "raft-snapworker-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** How many of this process's descriptors (worker threads' included) are open on `path`. */
function openOn(path: string): number {
  const target = realpathSync(path);
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === target) n++;
    } catch {
      // closed since the listing
    }
  }
  return n;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A WAL-mode database with its applied index at `applied`, and its open writer connection. */
function database(name: string, applied: number): { path: string; db: Database.Database } {
  const path = join(dir, name);
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.exec("CREATE TABLE applied (idx INTEGER NOT NULL)");
  db.prepare("INSERT INTO applied VALUES (?)").run(applied);
  return { path, db };
}

const appliedSql = "SELECT idx FROM applied";

describe("SnapshotWorker", () => {
  it("has closed its connection when suspend returns, even with a snapshot being made, and resume opens one again", async () => {
    // Proves what a restore relies on: once suspend returns and the writer closes, no descriptor
    // of the file is left open (SQLite keeps a closed connection's descriptor until the last
    // connection to the file in the process closes), and snapshots work again afterwards from
    // exactly one new connection.
    const { path, db } = database("a.db", 7);
    const worker = new SnapshotWorker({ path, appliedSql });
    await worker.start();
    expect(openOn(path)).toBe(2); // the writer's connection and the worker's
    const job = worker.begin(7n);
    expect(job?.index).toBe(7n);
    const failed = expect(job?.image).rejects.toThrow(/closed/);
    expect(worker.suspend()).toBe(true);
    db.close();
    expect(openOn(path)).toBe(0);
    await failed;

    const reopened = new Database(path);
    worker.resume();
    await until("the new worker to be ready", () => worker.isReady);
    const again = worker.begin(7n);
    expect(
      Buffer.from((await again?.image) ?? [])
        .subarray(0, 15)
        .toString(),
    ).toBe("SQLite format 3");
    expect(openOn(path)).toBe(2);
    expect(worker.close()).toBe(true);
    reopened.close();
    expect(openOn(path)).toBe(0);
  });

  it("reports a connection closed when none was ever opened", () => {
    // Proves close and suspend answer true for a worker never started, or one that could not open.
    const { path, db } = database("b.db", 1);
    expect(new SnapshotWorker({ path, appliedSql }).close()).toBe(true);
    const unused = new SnapshotWorker({ path, appliedSql });
    expect(unused.suspend()).toBe(true);
    unused.resume(); // nothing to start again
    expect(openOn(path)).toBe(1); // the writer's
    const missing = new SnapshotWorker({ path: join(dir, "missing.db"), appliedSql });
    void missing.start().catch(() => {});
    expect(missing.close()).toBe(true);
    db.close();
  });

  it("says when its worker could not start, so that the caller makes images itself", async () => {
    // Proves a store whose worker cannot open the file learns it (and stops waiting for images a
    // worker would make): the worker exits before it is ready.
    const worker = new SnapshotWorker({ path: join(dir, "never-there.db"), appliedSql });
    expect(worker.startFailed).toBe(false);
    await expect(worker.start()).rejects.toThrow();
    await until("the failed start to be known", () => worker.startFailed);
    expect(worker.beginFile(1n, join(dir, "never.image"))).toBeUndefined();
    expect(worker.close()).toBe(true);
  });
});

describe("SnapshotWorker file images", () => {
  /** Rows of 1 KB, `count` of them: about 1 KB a row in the file. */
  function fill(db: Database.Database, count: number): void {
    db.exec("CREATE TABLE IF NOT EXISTS rows (v BLOB)");
    const insert = db.prepare("INSERT INTO rows VALUES (?)");
    db.transaction(() => {
      for (let i = 0; i < count; i++) insert.run(Buffer.alloc(1000, i % 256));
    })();
  }

  it("writes the view pinned at the index, while the writer goes on between the steps", async () => {
    // Proves a file image is the state at the index it was begun at: the copy takes several steps
    // (12 MB is three steps of 1,024 pages), and rows the writer adds meanwhile are not in it.
    const { path, db } = database("file-a.db", 5);
    fill(db, 12_000);
    const worker = new SnapshotWorker({ path, appliedSql });
    await worker.start();
    const file = join(dir, "file-a.image");
    const job = worker.beginFile(5n, file);
    expect(job?.index).toBe(5n);
    let written = false;
    void job?.written.then(() => {
      written = true;
    });
    let added = 0;
    while (!written) {
      fill(db, 50);
      db.prepare("UPDATE applied SET idx = idx + 1").run();
      added += 50;
      await new Promise((r) => setImmediate(r));
    }
    await job?.written;
    expect(added).toBeGreaterThan(50); // the writer wrote between steps
    const image = new Database(file, { readonly: true });
    expect(image.prepare("SELECT COUNT(*) FROM rows").pluck().get()).toBe(12_000);
    expect(image.prepare(appliedSql).pluck().get()).toBe(5);
    expect(image.pragma("integrity_check", { simple: true })).toBe("ok");
    image.close();
    expect(worker.close()).toBe(true);
    db.close();
  });

  it("fails a file job at another index, and one the worker is closed under, leaving no file", async () => {
    // Proves a file job's failures leave nothing behind, and that a close does not wait for a
    // long copy: it stops at the next step.
    const { path, db } = database("file-b.db", 3);
    fill(db, 12_000);
    const worker = new SnapshotWorker({ path, appliedSql });
    await worker.start();
    const wrong = join(dir, "file-b-wrong.image");
    await expect(worker.beginFile(4n, wrong)?.written).rejects.toThrow(/index 3, expected 4/);
    expect(existsSync(wrong)).toBe(false);

    const file = join(dir, "file-b.image");
    const job = worker.beginFile(3n, file);
    const failed = expect(job?.written).rejects.toThrow(/closed/);
    expect(worker.close()).toBe(true);
    await failed;
    await until("the stopped copy's file to be removed", () => !existsSync(file));
    db.close();
    expect(openOn(path)).toBe(0);
  });
});
