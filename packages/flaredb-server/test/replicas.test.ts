import { afterAll, describe, expect, it } from "vitest";
import type { ApplyEntry } from "@photoncloud/raft";
import { dumpBody } from "../src/sql/backup.js";
import { SeededPrng } from "../src/sql/determinism.js";
import { Command } from "../src/gen/flaredb/v1/command.js";
import { SqlStateMachine } from "../src/sql/state-machine.js";
import {
  cleanupDirs,
  decode,
  entry,
  execCommand,
  normalizedImage,
  rows,
  stmt,
  tempMachine,
} from "./helpers.js";

afterAll(cleanupDirs);

const schema = [
  "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token BLOB, score INTEGER, created TEXT DEFAULT CURRENT_TIMESTAMP, day TEXT DEFAULT (date('now')), r INTEGER DEFAULT (random()))",
  "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER, at TEXT, note TEXT, noise INTEGER)",
  "CREATE TRIGGER items_ins AFTER INSERT ON items BEGIN INSERT INTO audit(item, at, note, noise) VALUES (new.id, CURRENT_TIMESTAMP || ' ' || CURRENT_TIME, 'ins;' || CURRENT_DATE, random()); END",
  "CREATE TABLE picks (id INTEGER PRIMARY KEY, name TEXT, picked_at REAL)",
];

/** A randomized workload from `seed`: inserts, updates, deletes, non-deterministic functions, failing transactions. */
function workload(seed: bigint, count: number): ApplyEntry[] {
  const rnd = new SeededPrng(seed);
  const pick = (n: number) => rnd.nextUint32() % n;
  const out: ApplyEntry[] = [];
  let index = 0n;
  let time = 1_700_000_000_000;
  const push = (cmd: Uint8Array) => {
    time += 1 + pick(5000);
    out.push(entry(++index, cmd, time, rnd.nextInt64()));
  };
  for (const s of schema) push(execCommand([stmt(s)]));
  for (let i = 0; i < count; i++) {
    const name = `n${pick(40)}`;
    switch (pick(7)) {
      case 0:
        push(
          execCommand([
            stmt(
              "INSERT INTO items(name, token, score) VALUES (?, randomblob(8), abs(random()) % 1000)",
              name,
            ),
          ]),
        );
        break;
      case 1:
        push(
          execCommand([
            stmt(
              "UPDATE items SET score = score + ?, created = datetime('now', '+1 day') WHERE name = ?",
              BigInt(pick(9)),
              name,
            ),
          ]),
        );
        break;
      case 2:
        push(execCommand([stmt("DELETE FROM items WHERE name = ?", name)]));
        break;
      case 3:
        // ORDER BY random() chooses the same rows on every member.
        push(
          execCommand([
            stmt(
              "INSERT INTO picks(name, picked_at) SELECT name, julianday('now') FROM items ORDER BY random() LIMIT 2",
            ),
          ]),
        );
        break;
      case 4:
        // A transaction whose second statement violates UNIQUE: nothing of it may apply anywhere.
        push(
          execCommand(
            [
              stmt("INSERT INTO items(name) VALUES (?)", `tx${i}`),
              stmt("INSERT INTO items(name) VALUES (?)", `tx${i}`),
            ],
            true,
          ),
        );
        break;
      case 5:
        push(
          execCommand([
            stmt("INSERT OR IGNORE INTO items(name, score) VALUES (?, unixepoch())", name),
            stmt("UPDATE items SET token = randomblob(4) WHERE id = last_insert_rowid()"),
            stmt("INSERT INTO items(name) VALUES (NULL)"),
          ]),
        );
        break;
      default:
        push(
          execCommand([
            stmt(
              "INSERT INTO picks(name, picked_at) VALUES (strftime('%Y-%m-%d %H:%M:%f'), ?)",
              rnd.nextUint32() / 7,
            ),
          ]),
        );
    }
  }
  return out;
}

/** Applies `entries` in batches whose sizes come from `batchSeed` (members batch differently). */
function applyInBatches(sm: SqlStateMachine, entries: ApplyEntry[], batchSeed: bigint): Uint8Array[] {
  const rnd = new SeededPrng(batchSeed);
  const results: Uint8Array[] = [];
  for (let i = 0; i < entries.length; ) {
    const size = 1 + (rnd.nextUint32() % 17);
    results.push(...sm.applyBatch(entries.slice(i, i + size)));
    i += size;
  }
  return results;
}

describe("replicas", () => {
  for (const seed of [1n, 2n, 3n]) {
    it(`three members fed the same entries end byte-identical (workload seed ${seed})`, () => {
      // Proves determinism of random(), randomblob(), 'now', CURRENT_*, defaults, triggers, ORDER BY random() and failing transactions.
      const entries = workload(seed, 300);
      const members = [tempMachine("a"), tempMachine("b"), tempMachine("c")];
      const results = members.map((m, i) => applyInBatches(m, entries, BigInt(i) * 7919n + seed));
      const dumps = members.map((m) => dumpBody(m.database));
      expect(dumps[0]).toContain(
        'INSERT INTO "items"(_rowid_, "id", "name", "token", "score", "created", "day", "r") VALUES(',
      );
      expect(dumps[1]).toBe(dumps[0]);
      expect(dumps[2]).toBe(dumps[0]);
      const images = members.map(normalizedImage);
      expect(images[1]!.equals(images[0]!)).toBe(true);
      expect(images[2]!.equals(images[0]!)).toBe(true);
      expect(results[1]).toEqual(results[0]);
      expect(results[2]).toEqual(results[0]);
      for (const m of members) expect(m.appliedIndex()).toBe(BigInt(entries.length));
      // The workload really exercised the paths: defaults, trigger rows, picks, failed transactions.
      const audit = rows(members[0]!, "SELECT count(*), count(DISTINCT noise) FROM audit");
      expect(Number(audit[0]![0])).toBeGreaterThan(10);
      expect(rows(members[0]!, "SELECT count(*) FROM items WHERE created IS NULL OR r IS NULL")).toEqual([
        [0n],
      ]);
      expect(rows(members[0]!, "SELECT count(*) FROM items WHERE name LIKE 'tx%'")).toEqual([[0n]]);
      const failures = results[0]!.map(decode).filter((r) => r.error?.code === "FLAREDB_SQL_CONSTRAINT");
      expect(failures.length).toBeGreaterThan(0);
      for (const m of members) m.close();
    });
  }

  it("a member that restarts mid-stream ends identical and resumes at its durable applied index", () => {
    // Proves the applied index is durable with the data and per-entry state (changes(), last_insert_rowid()) does not leak across restarts.
    const entries = workload(9n, 200);
    const steady = tempMachine("steady");
    applyInBatches(steady, entries, 1n);
    let restarted = tempMachine("restarted");
    const half = 97;
    applyInBatches(restarted, entries.slice(0, half), 2n);
    restarted.close();
    restarted = new SqlStateMachine({ path: restarted.path });
    expect(restarted.appliedIndex()).toBe(BigInt(half));
    expect(() => restarted.applyBatch(entries.slice(half - 1, half))).toThrow(/out of order/);
    applyInBatches(restarted, entries.slice(half), 3n);
    expect(dumpBody(restarted.database)).toBe(dumpBody(steady.database));
    steady.close();
    restarted.close();
  });

  it("the entry's timestamp and seed drive 'now', CURRENT_TIMESTAMP and random()", () => {
    // Proves the values come from the entry, not from the member's clock or randomness.
    const sm = tempMachine();
    const t = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
    sm.applyBatch([
      entry(
        1n,
        execCommand([stmt("CREATE TABLE t (a TEXT DEFAULT CURRENT_TIMESTAMP, b TEXT, c INTEGER, d TEXT)")]),
        t,
        7n,
      ),
      entry(
        2n,
        execCommand([
          stmt(
            "INSERT INTO t(b, c, d) VALUES (datetime('now'), random(), CURRENT_DATE || 'T' || CURRENT_TIME)",
          ),
        ]),
        t,
        7n,
      ),
    ]);
    const [row] = rows(sm, "SELECT a, b, c, d FROM t");
    expect(row![0]).toBe("2030-01-02 03:04:05");
    expect(row![1]).toBe("2030-01-02 03:04:05");
    expect(row![2]).toBe(new SeededPrng(7n).nextInt64());
    expect(row![3]).toBe("2030-01-02T03:04:05");
    sm.close();
  });

  it("a read through the log (STRONG) returns the same rows on every member, ORDER BY random() included", () => {
    // Proves query results computed inside apply are identical across members, and bounded.
    const members = [tempMachine("q1"), tempMachine("q2"), tempMachine("q3")];
    const setup = [
      entry(1n, execCommand([stmt("CREATE TABLE n (x INTEGER)")])),
      entry(
        2n,
        execCommand([
          stmt(
            "INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c",
          ),
        ]),
      ),
    ];
    const q = Command.encode({
      query: {
        statement: stmt("SELECT x, random(), datetime('now') FROM n ORDER BY random() LIMIT 5"),
        consistency: 4,
        freshnessMs: 0n,
        pageRows: 0,
      },
    }).finish();
    const results = members.map((m) => {
      m.applyBatch(setup);
      return decode(m.applyBatch([entry(3n, q, 1_800_000_000_000, 99n)])[0]);
    });
    expect(results[0]!.query?.rows).toHaveLength(5);
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
    for (const m of members) m.close();
  });

  it("refuses a result beyond the row bound instead of holding it in memory", () => {
    // Proves resultRowsMax bounds reads, with a message saying how to narrow the query.
    const sm = new SqlStateMachine({ path: tempMachine("bound").path, resultRowsMax: 10 });
    sm.applyBatch([
      entry(1n, execCommand([stmt("CREATE TABLE n (x INTEGER)")])),
      entry(
        2n,
        execCommand([
          stmt(
            "INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 11) SELECT x FROM c",
          ),
        ]),
      ),
    ]);
    expect(() => sm.withLocalContext(() => sm.queryRows(stmt("SELECT x FROM n")))).toThrow(
      /more than 10 rows; add LIMIT/,
    );
    expect(sm.withLocalContext(() => sm.queryRows(stmt("SELECT x FROM n LIMIT 10")).rows)).toHaveLength(10);
    sm.close();
  });

  it("without a transaction a failing statement is undone alone and reported in its result", () => {
    // Proves per-statement results: earlier and later statements of the batch still apply.
    const sm = tempMachine();
    const [r] = sm
      .applyBatch([
        entry(
          1n,
          execCommand([
            stmt("CREATE TABLE u (a TEXT UNIQUE)"),
            stmt("INSERT INTO u VALUES ('x')"),
            stmt("INSERT INTO u VALUES ('x'), ('y')"),
            stmt("INSERT INTO u VALUES ('z')"),
          ]),
        ),
      ])
      .map(decode);
    expect(r!.execute?.results.map((x) => x.error?.code ?? "ok")).toEqual([
      "ok",
      "ok",
      "FLAREDB_SQL_CONSTRAINT",
      "ok",
    ]);
    expect(r!.execute?.results[2]?.error?.statementIndex).toBe(2);
    expect(rows(sm, "SELECT a FROM u ORDER BY a")).toEqual([["x"], ["z"]]);
    sm.close();
  });

  it("a lone statement that fails half-way is undone entirely, and the next entry applies", () => {
    // Proves the entry's savepoint undoes a lone failing statement: OR FAIL keeps the rows a failing
    // statement wrote before the conflict unless something rolls them back.
    const sm = tempMachine();
    const results = sm
      .applyBatch([
        entry(1n, execCommand([stmt("CREATE TABLE u (a TEXT UNIQUE)")])),
        entry(2n, execCommand([stmt("INSERT INTO u VALUES ('x')")])),
        entry(3n, execCommand([stmt("INSERT OR FAIL INTO u VALUES ('p'), ('q'), ('x')")])),
        entry(4n, execCommand([stmt("INSERT INTO u VALUES ('z')")])),
      ])
      .map(decode);
    expect(results.map((r) => r.execute?.results[0]?.error?.code ?? "ok")).toEqual([
      "ok",
      "ok",
      "FLAREDB_SQL_CONSTRAINT",
      "ok",
    ]);
    expect(rows(sm, "SELECT a FROM u ORDER BY a")).toEqual([["x"], ["z"]]);
    sm.close();
  });

  it("'now' results are shared within an entry but keep the exact text of strftime's format", () => {
    // Proves the per-entry cache of date functions over 'now' never mixes up different calls.
    const sm = tempMachine();
    const t = Date.UTC(2030, 5, 6, 7, 8, 9);
    sm.applyBatch([
      entry(1n, execCommand([stmt("CREATE TABLE t (a TEXT, b TEXT, c TEXT, d TEXT, e TEXT)")])),
      entry(
        2n,
        execCommand([
          stmt(
            "INSERT INTO t VALUES (strftime('now'), strftime('NOW'), date('now'), datetime('NOW'), time())",
          ),
        ]),
        t,
        1n,
      ),
    ]);
    expect(rows(sm, "SELECT a, b, c, d, e FROM t")).toEqual([
      ["now", "NOW", "2030-06-06", "2030-06-06 07:08:09", "07:08:09"],
    ]);
    sm.close();
  });

  it("a cached statement re-evaluates 'now' and random() for each entry", () => {
    // Proves statement caching never freezes the first entry's time or randomness.
    const sm = tempMachine();
    const insert = execCommand([stmt("INSERT INTO t VALUES (datetime('now'), CURRENT_TIMESTAMP, random())")]);
    sm.applyBatch([
      entry(1n, execCommand([stmt("CREATE TABLE t (a TEXT, b TEXT, c INTEGER)")])),
      entry(2n, insert, Date.UTC(2031, 0, 1), 1n),
      entry(3n, insert, Date.UTC(2032, 0, 1), 2n),
    ]);
    sm.applyBatch([entry(4n, insert, Date.UTC(2033, 0, 1), 3n)]);
    const got = rows(sm, "SELECT a, b, c FROM t ORDER BY rowid");
    expect(got.map((r) => [r[0], r[1]])).toEqual([
      ["2031-01-01 00:00:00", "2031-01-01 00:00:00"],
      ["2032-01-01 00:00:00", "2032-01-01 00:00:00"],
      ["2033-01-01 00:00:00", "2033-01-01 00:00:00"],
    ]);
    expect(got.map((r) => r[2])).toEqual([1n, 2n, 3n].map((seed) => new SeededPrng(seed).nextInt64()));
    sm.close();
  });

  it("refuses time-zone dependent modifiers and total_changes()", () => {
    // Proves statements that cannot be made deterministic are refused with the rule named.
    const sm = tempMachine();
    const [a, b] = [
      decode(sm.applyBatch([entry(1n, execCommand([stmt("SELECT datetime('now', 'localtime')")]))])[0]),
      decode(sm.applyBatch([entry(2n, execCommand([stmt("SELECT total_changes()")]))])[0]),
    ];
    expect(a.execute?.results[0]?.error?.code).toBe("FLAREDB_NONDETERMINISTIC");
    expect(a.execute?.results[0]?.error?.message).toMatch(/time zone/);
    expect(b.execute?.results[0]?.error?.code).toBe("FLAREDB_NONDETERMINISTIC");
    sm.close();
  });
});
