import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { WalFileSync, writeDatabaseFile } from "./sync-files.js";

const dir = mkdtempSync(join(tmpdir(), "raft-syncfiles-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    const running = files.sync();
    files.close();
    await running;
    await expect(files.sync()).rejects.toThrow(/closed/);
    db.close();
  });

  it("refuses a database that has no WAL, naming the file", async () => {
    // Proves a database in rollback-journal mode is not taken as synced.
    const path = join(dir, "b.db");
    const db = new Database(path);
    db.exec("CREATE TABLE t (k)");
    await expect(new WalFileSync(path).sync()).rejects.toThrow(`${path}-wal does not exist`);
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
