import { afterAll, describe, expect, it, vi } from "vitest";
import { Command } from "../src/gen/flaredb/v1/command.js";
import { dumpBody, verifyBackup } from "../src/sql/backup.js";
import type { SqlStateMachine } from "../src/sql/state-machine.js";
import { applySql, cleanupDirs, decode, entry, rows, tempMachine } from "./helpers.js";

afterAll(cleanupDirs);

function populated(): SqlStateMachine {
  const sm = tempMachine();
  const results = applySql(
    sm,
    "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, i INTEGER, r REAL, s TEXT, b BLOB, n, at TEXT DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID",
    "CREATE TABLE g (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL)",
    "CREATE TABLE plain (x)",
    "INSERT INTO t(i, r, s, b, n) VALUES (9223372036854775807, 1.0, 'it''s -- ; \"q\"', x'00ff10', NULL)",
    "INSERT INTO t(i, r, s, b, n) VALUES (-9223372036854775808, 0.1, 'ünïcødé', randomblob(16), 2.5e-300)",
    "DELETE FROM t WHERE id = 1",
    "INSERT INTO kv VALUES ('b', 2), ('a', 1)",
    "INSERT INTO g(a) VALUES (21)",
    "INSERT INTO plain VALUES (1), (2), (3)",
    "DELETE FROM plain WHERE x = 2",
    "CREATE INDEX t_s ON t(s)",
    "CREATE VIEW v AS SELECT s FROM t",
    "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO plain VALUES (new.id); END",
  );
  for (const r of results) expect(r.execute?.results[0]?.error).toBeUndefined();
  return sm;
}

function restoreInto(sm: SqlStateMachine, backup: Buffer) {
  const index = sm.appliedIndex() + 1n;
  return decode(sm.applyBatch([entry(index, Command.encode({ restore: { backup } }).finish())])[0]);
}

describe("backup and restore", () => {
  for (const format of ["sql", "sqlite"] as const) {
    it(`${format} backup restored into a fresh machine gives an identical dump`, () => {
      // Proves restore reproduces data, schema, AUTOINCREMENT counters, rowids and the schema history.
      const source = populated();
      const { bytes, facts } = source.backup(format);
      expect(facts.appliedIndex).toBe(source.appliedIndex());
      const target = tempMachine();
      const r = restoreInto(target, bytes);
      expect(r.error).toBeUndefined();
      expect(r.restored?.contentSha256).toBe(facts.contentSha256);
      const sourceDump = dumpBody(source.database);
      const targetDump = dumpBody(target.database);
      // The target's history has one more line: the RESTORE itself.
      expect(targetDump.replace(/INSERT INTO "_flaredb_schema_history".*'RESTORE'.*\n/, "")).toBe(sourceDump);
      expect(target.schemaHistory(0n, 100).at(-1)?.kind).toBe("RESTORE");
      expect(rows(target, "SELECT i, b FROM t")).toEqual(rows(source, "SELECT i, b FROM t"));
      // AUTOINCREMENT continues after the restored counter; the trigger came back too.
      applySql(target, "INSERT INTO t(i) VALUES (1)");
      expect(rows(target, "SELECT max(id) FROM t")).toEqual([[3n]]);
      expect(rows(target, "SELECT count(*) FROM plain WHERE x = 3")).toEqual([[2n]]);
      source.close();
      target.close();
    });
  }

  it("refuses corrupted and truncated backups before changing anything", () => {
    // Proves the checksum is verified first, for both formats, on apply as well as by verifyBackup.
    const source = populated();
    const target = tempMachine();
    applySql(target, "CREATE TABLE keep (a)");
    const windowBackup = target.backup("sql").facts;
    const begin = Command.encode({
      maintenanceBegin: {
        backupAppliedIndex: windowBackup.appliedIndex,
        backupContentSha256: windowBackup.contentSha256,
        reason: "",
      },
    }).finish();
    target.applyBatch([entry(target.appliedIndex() + 1n, begin)]);
    const before = dumpBody(target.database);
    for (const format of ["sql", "sqlite"] as const) {
      const { bytes } = source.backup(format);
      const flipped = Buffer.from(bytes);
      flipped[Math.floor(flipped.length / 3)]! ^= 0x01;
      const truncated = bytes.subarray(0, bytes.length - 40);
      for (const bad of [flipped, truncated, Buffer.from("not a backup")]) {
        expect(() => verifyBackup(bad)).toThrow(/backup refused/);
        const r = restoreInto(target, bad);
        expect(r.error?.code).toBe("FLAREDB_BACKUP_CORRUPT");
      }
    }
    expect(dumpBody(target.database)).toBe(before);
    source.close();
    target.close();
  });

  it("refuses restore over a database with tables outside a maintenance window", () => {
    // Proves restore cannot silently replace live data.
    const source = populated();
    const target = tempMachine();
    applySql(target, "CREATE TABLE live (a)");
    const r = restoreInto(target, source.backup("sql").bytes);
    expect(r.error?.code).toBe("FLAREDB_RESTORE_NOT_EMPTY");
    expect(rows(target, "SELECT name FROM sqlite_schema WHERE name = 'live'")).toEqual([["live"]]);
    source.close();
    target.close();
  });

  it("Raft snapshot and restore move the whole state, including the applied index", () => {
    // Proves snapshot() is a consistent image and restore() installs it with the given index.
    const source = populated();
    const image = source.snapshot();
    const target = tempMachine();
    applySql(target, "CREATE TABLE doomed (a)");
    target.restore(image, 99n);
    expect(target.appliedIndex()).toBe(99n);
    expect(dumpBody(target.database)).toBe(dumpBody(source.database));
    applySql(target, "INSERT INTO plain VALUES (7)");
    expect(target.appliedIndex()).toBe(100n);
    source.close();
    target.close();
  });

  it("takes a Raft snapshot off the event loop, exactly at the applied index it began at", async () => {
    // Proves the worker's image is the state when beginSnapshot was called, although statements
    // are applied while it is produced, and that a restore restarts the worker on the new file.
    const source = populated();
    await source.startSnapshotWorker();
    expect(source.snapshotsOffLoop).toBe(true);
    const expected = dumpBody(source.database);
    const job = source.beginSnapshot();
    expect(job.index).toBe(source.appliedIndex());
    applySql(source, "INSERT INTO plain VALUES (1234)");
    const target = tempMachine();
    target.restore(await job.image, job.index);
    expect(dumpBody(target.database)).toBe(expected);
    expect(target.appliedIndex()).toBe(job.index);
    // After its own restore, the source's next off-loop snapshot is of the restored file.
    source.restore(target.snapshot(), job.index);
    await vi.waitFor(() => expect(source.snapshotsOffLoop).toBe(true), { timeout: 20_000 });
    const again = source.beginSnapshot();
    const third = tempMachine();
    third.restore(await again.image, again.index);
    expect(dumpBody(third.database)).toBe(expected);
    for (const sm of [source, target, third]) sm.close();
  });
});
