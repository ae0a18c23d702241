// Three flaredb processes on loopback, peer traffic through cuttable proxies: deterministic replicas
// under a randomized workload, bad input refused with nothing applied, the schema guard and its
// ledger, and the consistency levels across an honest partition of the leader.

import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runFlaredbctl } from "../src/bin/flaredbctl.js";
import type { Statement } from "../src/gen/flaredb/v1/flaredb.js";
import {
  BackupFormat,
  Consistency,
  failure,
  type Member,
  st,
  TestCluster,
  until,
  unaryCall,
} from "./cluster-harness.js";

let cluster: TestCluster;
/** Set after each test, so writers of a test that failed or timed out stop instead of running on. */
let abortWorkload = false;

beforeAll(async () => {
  cluster = await TestCluster.start({ partitionable: true });
}, 120_000);

afterEach(() => {
  abortWorkload = true;
});

afterAll(async () => {
  const crashes = cluster?.crashes() ?? [];
  await cluster?.stop();
  expect(crashes).toEqual([]);
}, 60_000);

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

/** Sends a write to a random member (followers forward), retrying while there is no leader. */
async function write(statements: Statement[], transaction = false) {
  return until("a write to be accepted", async () => {
    try {
      return await cluster.execute(pick(cluster.members), statements, transaction);
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED) return undefined;
      throw err;
    }
  });
}

const errorCode = (err: { metadata?: { get(k: string): unknown[] } }) =>
  String(err.metadata?.get("x-photon-error-code")[0] ?? "");

function workloadStep(n: number): { statements: Statement[]; transaction: boolean } {
  const choice = n % 7;
  switch (choice) {
    case 0:
    case 1:
      return {
        statements: [st("INSERT INTO items(name, payload) VALUES (?, randomblob(8))", `item-${n}`)],
        transaction: false,
      };
    case 2:
      return {
        statements: [
          st(
            "UPDATE items SET r = random(), touched = CURRENT_TIMESTAMP WHERE id = (SELECT id FROM items ORDER BY random() LIMIT 1)",
          ),
        ],
        transaction: false,
      };
    case 3:
      return {
        statements: [
          st(
            "INSERT INTO picks(item_id, at, jd) SELECT id, strftime('%Y-%m-%d %H:%M:%f', 'now'), julianday('now') FROM items ORDER BY random() LIMIT 2",
          ),
        ],
        transaction: false,
      };
    case 4:
      // A failing transaction: applies nothing on any member, but goes through the log.
      return {
        statements: [
          st("INSERT INTO items(name) VALUES ('never')"),
          st("INSERT INTO missing_table VALUES (1)"),
        ],
        transaction: true,
      };
    case 5:
      return {
        statements: [
          st("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 1)"),
          st("INSERT INTO items(name) VALUES (hex(randomblob(4)))"),
        ],
        transaction: true,
      };
    default:
      return {
        statements: [
          st(
            "UPDATE items SET name = name || '-' || abs(random() % 10), day = date('now', '+1 day') WHERE id % 5 = ?",
            BigInt(n % 5),
          ),
        ],
        transaction: false,
      };
  }
}

async function dumps(members: readonly Member[]) {
  return Promise.all(
    members.map((m) => cluster.backup(m, BackupFormat.BACKUP_FORMAT_SQL, Consistency.CONSISTENCY_NONE)),
  );
}

describe("flaredb cluster (3 processes)", () => {
  it("keeps replicas byte-identical under a randomized non-deterministic workload", async () => {
    // Proves determinism end to end: random(), randomblob(), 'now', CURRENT_* defaults, triggers and ORDER BY random() give identical dumps on every member.
    await write(
      [
        st(
          "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, r INTEGER DEFAULT (random()), payload BLOB, created TEXT DEFAULT CURRENT_TIMESTAMP, day TEXT DEFAULT CURRENT_DATE, touched TEXT)",
        ),
        st(
          "CREATE TABLE audit (id INTEGER PRIMARY KEY, item_id INTEGER, at TEXT, tag INTEGER, stamp TEXT DEFAULT (CURRENT_TIME))",
        ),
        st(
          "CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN INSERT INTO audit(item_id, at, tag) VALUES (new.id, datetime('now'), random()); END",
        ),
        st("CREATE TABLE picks (id INTEGER PRIMARY KEY, item_id INTEGER, at TEXT, jd REAL)"),
      ],
      true,
    );
    let next = 0;
    let failed = false;
    const writers = Array.from({ length: 8 }, async () => {
      while (next < 240 && !failed && !abortWorkload) {
        const n = next++;
        const step = workloadStep(n);
        await write(step.statements, step.transaction).catch((err: Error) => {
          // Step kind 4 is the transaction that must fail (and apply nothing).
          if (n % 7 === 4 && /FLAREDB_SQL_EXECUTION: statement 1: no such table/.test(err.message)) return;
          failed = true;
          throw err;
        });
      }
    });
    await Promise.all(writers);
    const applied = await cluster.waitConverged();
    const all = await dumps(cluster.members);
    for (const d of all) {
      // The machine's index is its last SQL entry's: the empty entry a newly elected leader appends
      // (elections happen on a loaded machine) moves only the Raft layer's.
      expect(d.info.appliedIndex).toBe(all[0]!.info.appliedIndex);
      expect(d.info.appliedIndex).toBeLessThanOrEqual(applied);
      expect(d.bytes.equals(all[0]!.bytes)).toBe(true);
    }
    // The workload really exercised randomness: many distinct values, identical everywhere.
    const distinct = await cluster.query(
      cluster.members[0]!,
      st("SELECT count(DISTINCT r), count(DISTINCT tag) FROM items, audit"),
      Consistency.CONSISTENCY_NONE,
    );
    expect(Number(distinct.rows[0]![0]!.intValue)).toBeGreaterThan(10);
    expect(all[0]!.bytes.toString()).not.toContain("'never'");
  }, 180_000);

  it("refuses bad input with a clear error and applies nothing", async () => {
    // Proves syntax errors, parameter mismatches, several statements in one, oversize requests and writes sent to Query change nothing.
    await cluster.waitConverged();
    const contentBefore = (await dumps(cluster.members)).map((d) => d.info.contentSha256);
    const m = pick(cluster.members);
    const syntax = await failure(cluster.execute(m, [st("INSERT INTO items(name VALUES ('x')")]));
    expect(syntax.code).toBe(status.INVALID_ARGUMENT);
    expect(syntax.details).toMatch(/FLAREDB_SQL_SYNTAX/);
    const params = await failure(cluster.execute(m, [st("INSERT INTO items(name) VALUES (?)", "a", "b")]));
    expect(params.code).toBe(status.INVALID_ARGUMENT);
    expect(params.details).toMatch(/FLAREDB_PARAMETER_MISMATCH.*/);
    const multiple = await failure(
      cluster.execute(m, [st("INSERT INTO items(name) VALUES ('a'); INSERT INTO items(name) VALUES ('b')")]),
    );
    expect(multiple.details).toMatch(/FLAREDB_MULTIPLE_STATEMENTS: .*expected one statement, found 2/);
    const oversize = await failure(
      cluster.execute(m, [st("INSERT INTO items(name) VALUES (?)", "x".repeat(2 * 1024 * 1024))]),
    );
    expect(oversize.code).toBe(status.RESOURCE_EXHAUSTED);
    const writeInQuery = await failure(
      cluster.query(m, st("DELETE FROM items"), Consistency.CONSISTENCY_STRONG),
    );
    expect(writeInQuery.code).toBe(status.INVALID_ARGUMENT);
    expect(writeInQuery.details).toMatch(/FLAREDB_WRITE_IN_QUERY: .*send writes with Execute/);
    expect(errorCode(writeInQuery)).toBe("FLAREDB_WRITE_IN_QUERY");
    // (The applied index may still move: a new leader's empty entry. The content must not.)
    expect((await dumps(cluster.members)).map((d) => d.info.contentSha256)).toEqual(contentBefore);
  }, 180_000);

  it("refuses destructive DDL online, accepts it in a maintenance window, and records the ledger", async () => {
    // Proves the additive-first guard over the network and that every member holds the same schema history.
    await write(
      [
        st("CREATE TABLE g (a INTEGER, keep TEXT)"),
        st("ALTER TABLE g ADD COLUMN b TEXT"),
        st("CREATE INDEX g_a ON g(a)"),
      ],
      true,
    );
    const destructive = [
      "ALTER TABLE g RENAME COLUMN a TO a2",
      "ALTER TABLE g DROP COLUMN b",
      "ALTER TABLE g RENAME TO g2",
      "DROP TABLE g",
    ];
    for (const sql of destructive) {
      const err = await failure(cluster.execute(pick(cluster.members), [st(sql)], true));
      expect(err.code, sql).toBe(status.FAILED_PRECONDITION);
      expect(err.details).toMatch(/FLAREDB_SCHEMA_DESTRUCTIVE_DDL/);
      expect(err.details).toMatch(/maintenance begin --backup/);
    }
    const leader = cluster.members[await cluster.waitForLeader()]!;
    const backup = await cluster.backup(
      leader,
      BackupFormat.BACKUP_FORMAT_SQL,
      Consistency.CONSISTENCY_LINEARIZABLE,
    );
    await unaryCall(
      (md, o, cb) =>
        leader.db.maintenanceBegin(
          {
            backupAppliedIndex: backup.info.appliedIndex,
            backupContentSha256: backup.info.contentSha256,
            reason: "rename and drop g",
          },
          md,
          o,
          cb,
        ),
      20_000,
    );
    for (const sql of [
      "ALTER TABLE g RENAME COLUMN a TO a2",
      "ALTER TABLE g DROP COLUMN b",
      "ALTER TABLE g RENAME TO g2",
      "DROP TABLE g2",
    ]) {
      await write([st(sql)], true);
    }
    await unaryCall((md, o, cb) => leader.db.maintenanceEnd({}, md, o, cb), 20_000);
    await write([st("CREATE TABLE g (a INTEGER)")], true);
    const again = await failure(cluster.execute(pick(cluster.members), [st("DROP TABLE g")], true));
    expect(again.code).toBe(status.FAILED_PRECONDITION);

    const histories = await Promise.all(
      cluster.members.map((m) =>
        unaryCall<{
          changes: { kind: string; maintenance: boolean; destructive: boolean; statement: string }[];
        }>((md, o, cb) => m.db.schemaHistory({ afterIndex: 0n, limit: 0 }, md, o, cb), 20_000),
      ),
    );
    for (const h of histories) expect(h).toEqual(histories[0]);
    const g = histories[0]!.changes
      .filter((c) => !c.kind.startsWith("MAINTENANCE") && /\bg2?\b/.test(c.statement))
      .map((c) => [c.kind, c.maintenance, c.destructive]);
    expect(g).toEqual([
      ["CREATE TABLE", false, false],
      ["ALTER TABLE ADD COLUMN", false, false],
      ["CREATE INDEX", false, false],
      ["ALTER TABLE RENAME COLUMN", true, true],
      ["ALTER TABLE DROP COLUMN", true, true],
      ["ALTER TABLE RENAME", true, true],
      ["DROP TABLE", true, true],
      ["CREATE TABLE", false, false],
    ]);
    expect(histories[0]!.changes.map((c) => c.kind)).toEqual(
      expect.arrayContaining(["MAINTENANCE BEGIN", "MAINTENANCE END"]),
    );
  }, 180_000);

  it("flaredbctl reports every endpoint, lists members with their client URLs and transfers leadership", async () => {
    // Proves the flaredb.v1.Cluster binding end to end through the CLI: endpoint status, member list, leader transfer.
    const endpoints = cluster.members.map((m) => `127.0.0.1:${m.clientPort}`).join(",");
    const ctl = async (...args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runFlaredbctl(["node", "flaredbctl", "--endpoints", endpoints, ...args], {
        out: (t) => out.push(t),
        err: (t) => err.push(t),
      });
      return { code, out: out.join("\n"), err: err.join("\n") };
    };
    const status = await ctl("-w", "json", "endpoint", "status");
    expect(status.code, status.err).toBe(0);
    const rows = JSON.parse(status.out) as { isLeader: boolean; version: string }[];
    expect(rows).toHaveLength(3);
    expect(rows.filter((r) => r.isLeader)).toHaveLength(1);
    expect(rows.every((r) => r.version === "0.1.0")).toBe(true);
    // Each member publishes its client URLs through the log once a leader is known.
    const members = await until("every member's client URL in the member list", async () => {
      const r = await ctl("-w", "json", "member", "list");
      const list = JSON.parse(r.out).members as { name: string; clientUrls: string[] }[];
      return list.every((m) => m.clientUrls.length > 0) ? list : undefined;
    });
    expect(members.map((m) => m.name).sort()).toEqual(["n1", "n2", "n3"]);
    const leader = await cluster.waitForLeader();
    const target = cluster.members.find((m) => m.index !== leader)!;
    const moved = await ctl("leader", "transfer", target.name);
    expect(moved.code, moved.err).toBe(0);
    expect(await cluster.waitForLeader()).toBe(target.index);
    const notLeader = await failure(
      cluster.query(cluster.members[leader]!, st("SELECT 1"), Consistency.CONSISTENCY_WEAK),
    );
    expect(notLeader.details).toMatch(
      new RegExp(`FLAREDB_NOT_LEADER: .*\\(leader: http://127\\.0\\.0\\.1:${target.clientPort}\\)`),
    );
  }, 180_000);

  it("serves each consistency level as documented across a partition of the leader", async () => {
    // Proves WEAK is refused by a partitioned old leader once it knows, NONE's freshness bound, and LINEARIZABLE never stale.
    await write(
      [st("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)"), st("INSERT INTO kv VALUES ('x', 1)")],
      true,
    );
    await cluster.waitConverged();
    const leaderIndex = await cluster.waitForLeader();
    const old = cluster.members[leaderIndex]!;
    const others = cluster.members.filter((m) => m !== old);
    const read = (m: Member, c: Consistency, o = {}) =>
      cluster.query(m, st("SELECT v FROM kv WHERE k = 'x'"), c, o).then((r) => r.rows[0]?.[0]?.intValue);
    expect(await read(old, Consistency.CONSISTENCY_WEAK)).toBe(1n);
    const notLeader = await failure(read(others[0]!, Consistency.CONSISTENCY_WEAK));
    expect(notLeader.code).toBe(status.UNAVAILABLE);
    expect(notLeader.details).toMatch(/FLAREDB_NOT_LEADER/);

    cluster.partition(old);
    // A linearizable read issued on the old leader right after the cut must not answer with what it has.
    const earlyLinearizable = read(old, Consistency.CONSISTENCY_LINEARIZABLE, { deadlineMs: 4000 }).then(
      (v) => ({ value: v }),
      (err: { code: number }) => ({ error: err.code }),
    );
    const newLeader = cluster.members[await cluster.waitForLeader(others)]!;
    expect(newLeader).not.toBe(old);
    await cluster.execute(newLeader, [st("UPDATE kv SET v = 2 WHERE k = 'x'")]);
    expect(await read(newLeader, Consistency.CONSISTENCY_LINEARIZABLE)).toBe(2n);

    const weak = await until("the old leader to refuse WEAK reads", async () => {
      const r = await read(old, Consistency.CONSISTENCY_WEAK).then(
        () => undefined,
        (err: { details: string }) => err,
      );
      return r;
    });
    expect(weak.details).toMatch(/FLAREDB_NOT_LEADER/);
    // NONE serves its (stale) local state; with a freshness bound it refuses once contact is lost.
    expect(await read(old, Consistency.CONSISTENCY_NONE)).toBe(1n);
    const stale = await failure(read(old, Consistency.CONSISTENCY_NONE, { freshnessMs: 300 }));
    expect(stale.details).toMatch(/FLAREDB_STALE_READ/);
    const early = await earlyLinearizable;
    expect(early).not.toEqual({ value: 1n });
    const late = await read(old, Consistency.CONSISTENCY_LINEARIZABLE, { deadlineMs: 2000 }).then(
      (v) => ({ value: v }),
      () => ({ value: "refused" }),
    );
    expect(late.value).not.toBe(1n);

    cluster.heal();
    const healed = await until("the old leader to serve the new value linearizably", async () => {
      const v = await read(old, Consistency.CONSISTENCY_LINEARIZABLE, { deadlineMs: 3000 }).catch(
        () => undefined,
      );
      if (v === 1n) throw new Error("a linearizable read returned the stale value 1");
      return v;
    });
    expect(healed).toBe(2n);
    await cluster.waitConverged();
  }, 180_000);
});
