// flaredb end to end: three `flaredb` processes on loopback (default Raft timings), a lean HTTP/2
// gRPC client (@photoncloud/daemon/bench) in this process sending to the leader. Single-row INSERT at
// 1/16/64 in flight, 100-row batched INSERTs, and point SELECT at each consistency level; throughput,
// latency percentiles and CPU microseconds per operation of each member and of the client. Every
// answer is checked: a benchmark that counts errors as operations measures nothing.
//
// FLAREDB_BENCH_DAEMON_NODE_ARGS: extra node arguments for the members, space-separated (e.g.
// `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them; profiles are written when they stop).
// FLAREDB_BENCH_IN_FLIGHT (default 1,16,64): the single-row INSERT concurrency levels.
// FLAREDB_BENCH_INSERT_ONLY=1: stop after the single-row INSERT figures (short comparison runs).
// FLAREDB_BENCH_H2LOAD_MS (default 3000): how long each single-row INSERT level runs under h2load
// (nghttp2's load generator in C, used when it is installed; 0 leaves it out). The same statement is
// sent every time; the rows the table gained and the leader's gRPC status counters are checked.

import {
  closedLoop,
  type CpuTargets,
  cpuMicrosPerOp,
  grpcHandledTotals,
  H2GrpcClient,
  h2loadAvailable,
  type LoadResult,
  runH2Load,
  sampleCpu,
} from "@photoncloud/daemon/bench";
import {
  Consistency,
  ExecuteRequest,
  type ExecuteResponse,
  FlareDBServiceService,
  type Statement,
} from "../src/gen/flaredb/v1/flaredb.js";
import { type Member, st, TestCluster } from "../test/cluster-harness.js";

export interface Figure extends LoadResult {
  workload: string;
  inFlight: number;
  unit: string;
  /** CPU µs per operation: one entry per member (by name, the leader marked) and `client`. */
  cpuMicrosPerOp: Record<string, number>;
}

function daemonNodeArgs(): string[] {
  const raw = process.env.FLAREDB_BENCH_DAEMON_NODE_ARGS ?? "";
  return raw.split(/\s+/).filter((a) => a.length > 0);
}

/** FLAREDB_BENCH_IN_FLIGHT: the single-row INSERT concurrency levels, comma-separated (default 1,16,64). */
function insertInFlight(): number[] {
  const raw = process.env.FLAREDB_BENCH_IN_FLIGHT ?? "1,16,64";
  const levels = raw.split(",").map((x) => Number(x.trim()));
  if (levels.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`FLAREDB_BENCH_IN_FLIGHT must be positive integers separated by commas, got ${raw}`);
  }
  return levels;
}

/** Every statement of the answer affected `rows` rows and none failed. */
function checkExecute(res: ExecuteResponse, statements: number, rowsEach: bigint): void {
  if (res.results.length !== statements) {
    throw new Error(`Execute answered ${res.results.length} results for ${statements} statements`);
  }
  for (const r of res.results) {
    if (r.error !== undefined) throw new Error(`statement failed: ${r.error.code}: ${r.error.message}`);
    if (r.rowsAffected !== rowsEach)
      throw new Error(`statement affected ${r.rowsAffected} rows, not ${rowsEach}`);
  }
}

export async function clusterBench(rows: number, report: (f: Figure) => void): Promise<void> {
  // The daemon's default snapshot interval (the test harness snapshots more often).
  const cluster = await TestCluster.start({
    heartbeatMs: 100,
    electionMs: 1000,
    snapshotCount: 100_000,
    nodeArgs: daemonNodeArgs(),
  });
  const leader: Member = cluster.members[await cluster.waitForLeader()]!;
  const client = new H2GrpcClient(`127.0.0.1:${leader.clientPort}`);
  try {
    const targets: Record<string, number | "self"> = {};
    for (const m of cluster.members) targets[m === leader ? `${m.name} (leader)` : m.name] = m.proc!.pid!;
    targets.client = "self";
    const execute = client.unary(FlareDBServiceService.execute, { deadlineMs: 30_000 });
    const query = client.serverStream(FlareDBServiceService.query, { deadlineMs: 30_000 });
    const run = async (
      workload: string,
      unit: string,
      count: number,
      inFlight: number,
      op: (i: number) => Promise<unknown>,
      scale = 1,
    ) => {
      const before = sampleCpu(targets as CpuTargets);
      const r = await closedLoop(count, inFlight, op);
      const cpu = cpuMicrosPerOp(before, sampleCpu(targets as CpuTargets), count * scale);
      report({
        workload,
        inFlight,
        unit,
        ...r,
        ops: count * scale,
        perSecond: r.perSecond * scale,
        cpuMicrosPerOp: cpu,
      });
    };

    checkExecute(
      await execute({
        statements: [
          st(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP)",
          ),
        ],
        transaction: false,
      }),
      1,
      0n,
    );
    const insert = async (i: number) => {
      const statements: Statement[] = [st("INSERT INTO t(name, n) VALUES (?, ?)", `row ${i}`, BigInt(i))];
      checkExecute(await execute({ statements, transaction: false }), 1, 1n);
    };
    await closedLoop(200, 16, insert); // warm-up: session, prepared statements, JIT
    for (const inFlight of insertInFlight()) {
      const count = inFlight === 1 ? Math.min(rows, 1000) : rows;
      await run("single-row INSERT", "rows/s", count, inFlight, insert);
    }

    const h2loadMs = Number(process.env.FLAREDB_BENCH_H2LOAD_MS ?? 3000);
    if (h2loadMs > 0 && h2loadAvailable()) {
      const countRows = async () => {
        const pages = await query({
          statement: st("SELECT count(*) FROM t"),
          consistency: Consistency.CONSISTENCY_LINEARIZABLE,
          freshnessMs: 0n,
          pageRows: 0,
        });
        return pages[0]?.rows[0]?.values[0]?.intValue ?? -1n;
      };
      const path = "/flaredb.v1.FlareDBService/Execute";
      const request = ExecuteRequest.encode({
        statements: [st("INSERT INTO t(name, n) VALUES (?, ?)", "h2load row", 0n)],
        transaction: false,
      }).finish();
      const metricsUrl = `http://127.0.0.1:${leader.metricsPort}/metrics`;
      const members = Object.fromEntries(Object.entries(targets).filter(([name]) => name !== "client"));
      for (const inFlight of insertInFlight()) {
        const rows0 = await countRows();
        const handled0 = await grpcHandledTotals([metricsUrl], path);
        const before = sampleCpu(members as CpuTargets);
        const r = await runH2Load({
          target: `http://127.0.0.1:${leader.clientPort}`,
          path,
          request,
          inFlight,
          durationMs: h2loadMs,
        });
        const cpu = cpuMicrosPerOp(before, sampleCpu(members as CpuTargets), r.succeeded);
        cpu.client = r.cpuMicros / r.succeeded;
        const gained = (await countRows()) - rows0;
        const handled = await grpcHandledTotals([metricsUrl], path);
        const ok = handled.ok - handled0.ok;
        const calls = handled.all - handled0.all;
        if (r.failed > 0 || calls !== ok || ok < r.succeeded || gained < BigInt(r.succeeded))
          throw new Error(
            `h2load INSERT @${inFlight}: ${r.succeeded} answered (${r.failed} failed by HTTP), the leader ` +
              `answered ${ok} of ${calls} calls OK and the table gained ${gained} rows`,
          );
        report({
          workload: "single-row INSERT [h2load]",
          inFlight,
          unit: "rows/s",
          ops: r.succeeded,
          seconds: r.seconds,
          perSecond: r.perSecond,
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
          cpuMicrosPerOp: cpu,
        });
      }
    }

    if (process.env.FLAREDB_BENCH_INSERT_ONLY === "1") return;

    const batch = async (i: number) => {
      const statements = Array.from({ length: 100 }, (_, k) =>
        st("INSERT INTO t(name, n) VALUES (?, ?)", `batch ${i}.${k}`, BigInt(k)),
      );
      checkExecute(await execute({ statements, transaction: true }), 100, 1n);
    };
    const batches = Math.max(20, Math.floor(rows / 50));
    await run("100-row batched INSERT (one transaction)", "rows/s", batches, 16, batch, 100);

    const levels = [
      ["NONE", Consistency.CONSISTENCY_NONE],
      ["WEAK", Consistency.CONSISTENCY_WEAK],
      ["LINEARIZABLE", Consistency.CONSISTENCY_LINEARIZABLE],
      ["STRONG", Consistency.CONSISTENCY_STRONG],
    ] as const;
    for (const [name, consistency] of levels) {
      const select = async (i: number) => {
        const id = BigInt(1 + (i % 1000));
        const pages = await query({
          statement: st("SELECT name, n FROM t WHERE id = ?", id),
          consistency,
          freshnessMs: 0n,
          pageRows: 0,
        });
        const found = pages.reduce((n, p) => n + p.rows.length, 0);
        if (found !== 1) throw new Error(`point SELECT of id ${id} returned ${found} rows`);
      };
      const count = consistency === Consistency.CONSISTENCY_STRONG ? Math.min(rows, 3000) : rows;
      await run(`point SELECT ${name}`, "queries/s", count, 16, select);
    }
  } finally {
    await client.close();
    await cluster.stop();
  }
}
