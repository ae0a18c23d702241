// flaredb benchmark: the local reference (better-sqlite3, WAL, synchronous=FULL, one row per commit),
// how fast one member's state machine applies committed entries, and a 3-member cluster end to end
// (bench/cluster-bench.ts). Prints figures; asserts nothing.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { formatCpuPerOp } from "@photoncloud/daemon/bench";
import type { ApplyEntry } from "@photoncloud/raft";
import { Command } from "../src/gen/flaredb/v1/command.js";
import { SqlStateMachine } from "../src/sql/state-machine.js";
import { clusterBench } from "./cluster-bench.js";

const dir = mkdtempSync(join(tmpdir(), "flaredb-bench-"));
const rowsPerRun = Number(process.env.FLAREDB_BENCH_ROWS ?? 5000);

function rate(count: number, started: bigint): number {
  return count / (Number(process.hrtime.bigint() - started) / 1e9);
}

function localReference(): number {
  const db = new Database(join(dir, "reference.sqlite"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)");
  const insert = db.prepare("INSERT INTO t(name, n) VALUES (?, ?)");
  const count = Math.min(rowsPerRun, 2000);
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) insert.run(`row ${i}`, i); // autocommit: one fsync per row
  const r = rate(count, started);
  db.close();
  return r;
}

function insertEntries(sm: SqlStateMachine, count: number, rowsPerEntry: number): ApplyEntry[] {
  const out: ApplyEntry[] = [];
  let index = sm.appliedIndex();
  for (let i = 0; i < count; i++) {
    const statements = Array.from({ length: rowsPerEntry }, (_, k) => ({
      sql: "INSERT INTO t(name, n, at) VALUES (?, ?, CURRENT_TIMESTAMP)",
      positional: [{ textValue: `row ${i}.${k}` }, { intValue: BigInt(i) }],
      named: [],
    }));
    const command = Command.encode({ execute: { statements, transaction: rowsPerEntry > 1 } }).finish();
    out.push({ index: ++index, term: 1n, timestampMs: 1_700_000_000_000 + i, seed: BigInt(i), command });
  }
  return out;
}

function machine(name: string): SqlStateMachine {
  const sm = new SqlStateMachine({ path: join(dir, `${name}.sqlite`) });
  const create = Command.encode({
    execute: {
      statements: [
        {
          sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, at TEXT)",
          positional: [],
          named: [],
        },
      ],
      transaction: false,
    },
  }).finish();
  sm.applyBatch([{ index: 1n, term: 1n, timestampMs: 0, seed: 0n, command: create }]);
  return sm;
}

function applyRate(batchEntries: number, rowsPerEntry: number): number {
  const sm = machine(`apply-${batchEntries}-${rowsPerEntry}`);
  const count = Math.max(batchEntries, Math.floor(rowsPerRun / rowsPerEntry));
  const entries = insertEntries(sm, count, rowsPerEntry);
  const started = process.hrtime.bigint();
  for (let i = 0; i < entries.length; i += batchEntries) sm.applyBatch(entries.slice(i, i + batchEntries));
  const r = rate(count, started);
  sm.close();
  return r;
}

function pointSelectRate(): number {
  const sm = machine("select");
  sm.applyBatch(insertEntries(sm, 1000, 1).map((e, i) => ({ ...e, index: BigInt(i + 2) })));
  const count = 20_000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    sm.withLocalContext(() =>
      sm.queryRows({
        sql: "SELECT name, n FROM t WHERE id = ?",
        positional: [{ intValue: BigInt(1 + (i % 1000)) }],
        named: [],
      }),
    );
  }
  const r = rate(count, started);
  sm.close();
  return r;
}

try {
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const reference = localReference();
  console.log(`local reference (WAL, synchronous=FULL, 1 row/commit): ${fmt(reference)} commits/s`);
  for (const batch of [1, 16, 64, 256]) {
    console.log(
      `state machine, single-row INSERT entries, ${batch} entries/applyBatch: ${fmt(applyRate(batch, 1))} entries/s`,
    );
  }
  console.log(
    `state machine, 100-row transaction entries, 16 entries/applyBatch: ${fmt(applyRate(16, 100) * 100)} rows/s`,
  );
  console.log(`state machine, local point SELECT (prepared, cached): ${fmt(pointSelectRate())} queries/s`);
  console.log("3-member cluster (3 flaredb processes on loopback, client sends to the leader):");
  await clusterBench(rowsPerRun, (f) => {
    const ratio = f.workload.startsWith("single-row INSERT")
      ? ` (${(f.perSecond / reference).toFixed(2)}× reference)`
      : "";
    console.log(
      `  ${f.workload}, ${f.inFlight} in flight, ${f.ops} ops: ${fmt(f.perSecond)} ${f.unit}${ratio}, p50 ${f.p50Ms.toFixed(2)} ms, p99 ${f.p99Ms.toFixed(2)} ms`,
    );
    console.log(`    CPU µs/op: ${formatCpuPerOp(f.cpuMicrosPerOp)}`);
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
