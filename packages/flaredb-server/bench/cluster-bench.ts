// flaredb end to end: three `flaredb` processes on loopback (default Raft timings), a gRPC client in
// this process sending to the leader. Single-row INSERT at 1/16/64 in flight, 100-row batched
// INSERTs, and point SELECT at each consistency level; throughput and latency percentiles.

import { Consistency, type Member, st, TestCluster } from "../test/cluster-harness.js";

export interface Figure {
  workload: string;
  inFlight: number;
  ops: number;
  perSecond: number;
  unit: string;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `op` `count` times with `inFlight` concurrent callers; returns throughput and latencies. */
async function measure(count: number, inFlight: number, op: (i: number) => Promise<unknown>) {
  const latencies: number[] = [];
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        const i = next++;
        const t0 = process.hrtime.bigint();
        await op(i);
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { perSecond: count / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

export async function clusterBench(rows: number, report: (f: Figure) => void): Promise<void> {
  const cluster = await TestCluster.start({ heartbeatMs: 100, electionMs: 1000 });
  try {
    const leader: Member = cluster.members[await cluster.waitForLeader()]!;
    await cluster.execute(leader, [
      st("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP)"),
    ]);
    const insert = (i: number) =>
      cluster.execute(leader, [st("INSERT INTO t(name, n) VALUES (?, ?)", `row ${i}`, BigInt(i))]);
    await measure(200, 16, insert); // warm-up: connections, prepared statements, JIT
    for (const inFlight of [1, 16, 64]) {
      const count = inFlight === 1 ? Math.min(rows, 1000) : rows;
      const r = await measure(count, inFlight, insert);
      report({ workload: "single-row INSERT", inFlight, ops: count, unit: "rows/s", ...r });
    }
    const batch = (i: number) =>
      cluster.execute(
        leader,
        Array.from({ length: 100 }, (_, k) =>
          st("INSERT INTO t(name, n) VALUES (?, ?)", `batch ${i}.${k}`, BigInt(k)),
        ),
        true,
      );
    const batches = Math.max(20, Math.floor(rows / 50));
    const b = await measure(batches, 16, batch);
    report({
      workload: "100-row batched INSERT (one transaction)",
      inFlight: 16,
      ops: batches * 100,
      unit: "rows/s",
      ...b,
      perSecond: b.perSecond * 100,
    });
    const levels = [
      ["NONE", Consistency.CONSISTENCY_NONE],
      ["WEAK", Consistency.CONSISTENCY_WEAK],
      ["LINEARIZABLE", Consistency.CONSISTENCY_LINEARIZABLE],
      ["STRONG", Consistency.CONSISTENCY_STRONG],
    ] as const;
    for (const [name, level] of levels) {
      const select = (i: number) =>
        cluster.query(leader, st("SELECT name, n FROM t WHERE id = ?", BigInt(1 + (i % 1000))), level);
      const count = level === Consistency.CONSISTENCY_STRONG ? Math.min(rows, 3000) : rows;
      const r = await measure(count, 16, select);
      report({ workload: `point SELECT ${name}`, inFlight: 16, ops: count, unit: "queries/s", ...r });
    }
  } finally {
    await cluster.stop();
  }
}
