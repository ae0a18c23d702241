import { existsSync, mkdtempSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it, vi } from "vitest";
import { WalCheckpointer } from "./wal-checkpointer.js";

const dir = mkdtempSync(join(tmpdir(), "raft-walckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("WalCheckpointer", () => {
  it("keeps the WAL small from a worker thread while the writer never checkpoints itself", async () => {
    // Proves the background checkpoints: 16 MB go through the WAL, yet it stays a fraction of that
    // (each completed checkpoint lets the writer restart it), and everything reaches the database.
    const path = join(dir, "a.db");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
    const checkpointer = new WalCheckpointer(db, { intervalMs: 5, writerPagesMax: 1_000_000 });
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const value = Buffer.alloc(4000, 7);
    const pageBytes = db.pragma("page_size", { simple: true }) as number;
    const pagesBytes = () => (db.pragma("page_count", { simple: true }) as number) * pageBytes;
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 100; i++) insert.run(value);
      // The worker copies this round's pages into the database file between the writer's commits,
      // and a checkpoint that copied every frame ends by setting the file to the database's size;
      // the writer's next commit then starts the WAL over. (A condition on the file alone: the
      // worker may already have copied the round before it ends.)
      await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThanOrEqual(pagesBytes()), {
        timeout: 20_000,
      });
    }
    // The file keeps its largest size when the WAL starts over: a few rounds, never all forty.
    expect(statSync(`${path}-wal`).size).toBeLessThan(4 << 20);
    checkpointer.close();
    db.close();
    const reopened = new Database(path, { readonly: true });
    expect(reopened.prepare("SELECT count(*) FROM t").pluck().get()).toBe(4000);
    reopened.close();
  });

  it("closes its connection first, also while its thread is still starting", async () => {
    // Proves the writer's close comes last, as SQLite expects of the last connection: it then
    // checkpoints and removes the WAL file.
    for (const settle of [false, true]) {
      const path = join(dir, `b-${settle}.db`);
      const db = new Database(path);
      db.pragma("journal_mode = WAL");
      db.exec("CREATE TABLE t (k)");
      const checkpointer = new WalCheckpointer(db, { intervalMs: 5 });
      db.exec("INSERT INTO t VALUES (1)");
      if (settle)
        await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(4096), { timeout: 20_000 });
      expect(checkpointer.close()).toBe(true);
      db.close();
      expect(existsSync(`${path}-wal`)).toBe(false);
    }
  });

  it("says whether its connection closed before the deadline", () => {
    // Proves a caller that is about to replace the database's files learns when the worker may
    // still hold a connection: with a deadline of 0 ms the thread has not even started when close
    // gives up; with the default deadline close returns once the connection is closed.
    const path = join(dir, "d.db");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE t (k)");
    const late = new WalCheckpointer(db, { intervalMs: 5, closeTimeoutMs: 0 });
    expect(late.close()).toBe(false);
    const prompt = new WalCheckpointer(db, { intervalMs: 5 });
    expect(prompt.close()).toBe(true);
    expect(prompt.close()).toBe(true);
    db.close();
  });

  it("reports a failure instead of losing the background checkpoints silently", async () => {
    // Proves the owner hears of it: the worker cannot open a database whose file has been moved.
    const path = join(dir, "c.db");
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE t (k)");
    renameSync(path, join(dir, "c-moved.db"));
    const errors: string[] = [];
    const checkpointer = new WalCheckpointer(db, { intervalMs: 5, onError: (m) => errors.push(m) });
    await vi.waitFor(() => expect(errors).toHaveLength(1), { timeout: 20_000 });
    expect(errors[0]).toMatch(/unable to open database file|SQLITE_CANTOPEN/);
    expect(checkpointer.close()).toBe(true);
    db.close();
  });
});
