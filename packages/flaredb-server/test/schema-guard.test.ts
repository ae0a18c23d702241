import { afterAll, describe, expect, it } from "vitest";
import { Command } from "../src/gen/flaredb/v1/command.js";
import type { SqlStateMachine } from "../src/sql/state-machine.js";
import { applySql, cleanupDirs, decode, entry, rows, tempMachine } from "./helpers.js";

afterAll(cleanupDirs);

const setup = [
  "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, extra TEXT)",
  "CREATE INDEX users_name ON users(name)",
  "CREATE VIEW user_names AS SELECT name FROM users",
  "CREATE TRIGGER users_t AFTER INSERT ON users BEGIN SELECT 1; END",
  "CREATE TABLE old (a)",
];
const destructive: [string, string][] = [
  ["DROP VIEW user_names", "DROP VIEW"],
  ["DROP TRIGGER users_t", "DROP TRIGGER"],
  ["DROP INDEX users_name", "DROP INDEX"],
  ["ALTER TABLE users DROP COLUMN name", "ALTER TABLE DROP COLUMN"],
  ["ALTER TABLE users RENAME COLUMN extra TO more", "ALTER TABLE RENAME COLUMN"],
  ["ALTER TABLE users RENAME TO people", "ALTER TABLE RENAME"],
  ["DROP TABLE old", "DROP TABLE"],
  ["REINDEX", "REINDEX"],
];

function propose(sm: SqlStateMachine, command: Command) {
  const index = sm.appliedIndex() + 1n;
  return decode(
    sm.applyBatch([entry(index, Command.encode(command).finish(), 1_700_000_000_000 + Number(index))])[0],
  );
}

function openWindow(sm: SqlStateMachine) {
  const { facts } = sm.backup("sql");
  return propose(sm, {
    maintenanceBegin: {
      backupAppliedIndex: facts.appliedIndex,
      backupContentSha256: facts.contentSha256,
      reason: "cleanup",
    },
  });
}

describe("schema guard", () => {
  it("accepts additive DDL online and records it in the history", () => {
    // Proves new tables, nullable/defaulted columns, indexes, views and triggers apply online.
    const sm = tempMachine();
    const results = applySql(
      sm,
      ...setup,
      "ALTER TABLE users ADD COLUMN email TEXT",
      "ALTER TABLE users ADD COLUMN n INTEGER NOT NULL DEFAULT 0",
    );
    for (const r of results) expect(r.execute?.results[0]?.error).toBeUndefined();
    const history = sm.schemaHistory(0n, 100);
    expect(history.map((h) => [h.raftIndex, h.kind, h.maintenance, h.destructive])).toEqual([
      [1n, "CREATE TABLE", false, false],
      [2n, "CREATE INDEX", false, false],
      [3n, "CREATE VIEW", false, false],
      [4n, "CREATE TRIGGER", false, false],
      [5n, "CREATE TABLE", false, false],
      [6n, "ALTER TABLE ADD COLUMN", false, false],
      [7n, "ALTER TABLE ADD COLUMN", false, false],
    ]);
    expect(history[5]!.statement).toBe("ALTER TABLE users ADD COLUMN email TEXT");
    expect(history[0]!.appliedAtMs).toBe(1_700_000_000_001n);
    sm.close();
  });

  it("refuses each destructive kind online with FAILED_PRECONDITION-style code and the way through", () => {
    // Proves DROP (table/index/view/trigger), DROP COLUMN, renames and REINDEX are refused and change nothing.
    const sm = tempMachine();
    applySql(sm, ...setup);
    const before = sm.backup("sql").facts.contentSha256;
    for (const [sql, kind] of destructive) {
      const [r] = applySql(sm, sql);
      const error = r!.execute?.results[0]?.error;
      expect(error?.code, sql).toBe("FLAREDB_SCHEMA_DESTRUCTIVE_DDL");
      expect(error?.message).toContain(`${kind} is refused outside a maintenance window`);
      expect(error?.message).toContain("flaredbctl maintenance begin --backup <file>");
    }
    expect(sm.backup("sql").facts.contentSha256).toBe(before);
    expect(sm.schemaHistory(0n, 100)).toHaveLength(setup.length);
    sm.close();
  });

  it("accepts each destructive kind inside a maintenance window opened against a fresh backup", () => {
    // Proves the window is the way through and that the ledger marks maintenance DDL.
    const sm = tempMachine();
    applySql(sm, ...setup);
    const opened = openWindow(sm);
    expect(opened.maintenance?.open).toBe(true);
    for (const [sql] of destructive) {
      const [r] = applySql(sm, sql);
      expect(r!.execute?.results[0]?.error, sql).toBeUndefined();
    }
    expect(propose(sm, { maintenanceEnd: {} }).maintenance?.open).toBe(false);
    const [after] = applySql(sm, "DROP TABLE people");
    expect(after!.execute?.results[0]?.error?.code).toBe("FLAREDB_SCHEMA_DESTRUCTIVE_DDL");
    const ledger = sm
      .schemaHistory(BigInt(setup.length), 100)
      .map((h) => [h.kind, h.maintenance, h.destructive]);
    expect(ledger).toEqual([
      ["MAINTENANCE BEGIN", true, false],
      ...destructive.map(([, kind]) => [kind, true, true]),
      ["MAINTENANCE END", true, false],
    ]);
    expect(rows(sm, "SELECT name FROM sqlite_schema WHERE name IN ('old', 'users', 'people')")).toEqual([
      ["people"],
    ]);
    sm.close();
  });

  it("refuses to open a window against a stale backup, and a second window", () => {
    // Proves "fresh backup" is checked against the live content, on apply.
    const sm = tempMachine();
    applySql(sm, ...setup);
    const { facts } = sm.backup("sql");
    applySql(sm, "INSERT INTO users(name) VALUES ('late write')");
    const stale = propose(sm, {
      maintenanceBegin: {
        backupAppliedIndex: facts.appliedIndex,
        backupContentSha256: facts.contentSha256,
        reason: "",
      },
    });
    expect(stale.error?.code).toBe("FLAREDB_MAINTENANCE_STALE_BACKUP");
    expect(stale.error?.message).toMatch(/take a new backup/);
    expect(sm.maintenanceState().open).toBe(false);
    expect(openWindow(sm).maintenance?.open).toBe(true);
    expect(openWindow(sm).error?.code).toBe("FLAREDB_MAINTENANCE_ALREADY_OPEN");
    propose(sm, { maintenanceEnd: {} });
    expect(propose(sm, { maintenanceEnd: {} }).error?.code).toBe("FLAREDB_MAINTENANCE_NOT_OPEN");
    sm.close();
  });

  it("a transaction containing refused DDL applies nothing", () => {
    // Proves all-or-nothing holds when the guard refuses a later statement.
    const sm = tempMachine();
    applySql(sm, ...setup);
    const index = sm.appliedIndex() + 1n;
    const cmd = Command.encode({
      execute: {
        transaction: true,
        statements: [
          { sql: "INSERT INTO users(name) VALUES ('x')", positional: [], named: [] },
          { sql: "CREATE TABLE fresh (a)", positional: [], named: [] },
          { sql: "DROP TABLE old", positional: [], named: [] },
        ],
      },
    }).finish();
    const r = decode(sm.applyBatch([entry(index, cmd)])[0]);
    expect(r.error?.code).toBe("FLAREDB_SCHEMA_DESTRUCTIVE_DDL");
    expect(r.error?.statementIndex).toBe(2);
    expect(rows(sm, "SELECT count(*) FROM users")).toEqual([[0n]]);
    expect(rows(sm, "SELECT count(*) FROM sqlite_schema WHERE name = 'fresh'")).toEqual([[0n]]);
    expect(sm.schemaHistory(0n, 100)).toHaveLength(setup.length);
    expect(sm.appliedIndex()).toBe(index);
    sm.close();
  });
});
