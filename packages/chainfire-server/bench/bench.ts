// 3-member benchmark: put, linearizable range and serializable range throughput and p50/p99 latency
// at 16, 128 and 256 requests in flight (256-byte values) against a 3-member chainfire and, when
// `etcd` is on PATH, a 3-member etcd started the same way (same flags, same machine, same run);
// prints chainfire/etcd ratios. In-flight requests are spread evenly over the three members, as
// etcd's own benchmark tool does with several endpoints.
//
// Both clusters run side by side for the whole run and each row is measured on one, then the other
// (see runSuites), so the ratios compare figures taken a few seconds apart. Every measurement starts
// with the page cache written back (sync), so one cluster's writes do not land in the other's turn.
// The whole list of rows is run BENCH_ROUNDS times (default 3) and each row's figures pool its
// rounds: one 3-s window's p99 rests on its slowest 1% (a few hundred requests, often a single
// stall), and the same row's ratio to etcd moved by up to 0.3 between single-round runs. The
// per-round ratios are printed beside the pooled ones.
//
// Env: BENCH_DURATION_MS (per measurement, default 3000), BENCH_WARM_UP_MS (untimed puts before the
// first measurement, default 10000: V8 is still compiling the daemons' hot paths for several seconds
// at these rates, and a daemon's steady state is what the figures are for; etcd gets the same; with
// h2load, a second of each workload under h2load follows), BENCH_KINDS ("chainfire,etcd"),
// BENCH_WORKLOADS (a comma-separated subset of put,range-linearizable,range-serializable),
// BENCH_IN_FLIGHT (comma-separated levels, default 16,128,256), CHAINFIRE_BENCH_DAEMON_NODE_ARGS
// (the Node.js arguments for the chainfire daemons, split on spaces, in place of CHAINFIRE_NODE_ARGS,
// the ones the dev cluster uses: e.g. "" for none, or "--cpu-prof --cpu-prof-dir=/tmp/prof"; when
// set, the members are stopped with SIGTERM so that exit-time output is written), BENCH_H2LOAD ("0"
// leaves out the h2load table), BENCH_ROUNDS (passes over all the rows, default 3),
// BENCH_CLIENT_PROCESSES ("1", the default: the grpc-js load runs in one process per member, each
// with its share of the requests in flight; "0": all of it from this process, see grpc-load.ts).
//
// When h2load (nghttp2's load generator in C) is installed, every workload also runs under it: one
// h2load per member with a third of the requests in flight each, one fixed request each (puts to one
// key, ranges of one key). The Node.js client above spends more CPU per request than etcd does serving
// it, on the same two cores; h2load spends ~10 µs. h2load does not read gRPC statuses: each run is
// checked on the members' grpc_server_handled_total counters (and puts on the revision they made).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { type ChainfireClients, createClients } from "@photoncloud/chainfire-api";
import { CHAINFIRE_NODE_ARGS } from "@photoncloud/daemon";
import {
  grpcHandledTotals,
  type H2LoadResult,
  h2loadAvailable,
  percentile,
  processCpuMicros,
  runH2Load,
} from "@photoncloud/daemon/bench";
import { etcd as etcdpb } from "@photoncloud/chainfire-api";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import {
  ALL_WORKLOADS,
  closedLoop,
  LoadProcesses,
  operation,
  unary,
  VALUE,
  type Workload,
} from "./grpc-load.js";
import { Cluster, type ClusterKind, hasBinary, type ClusterMember, PACKAGE_DIR } from "./cluster.js";
import { storeBench } from "./store-bench.js";

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const WARM_UP_MS = Number(process.env.BENCH_WARM_UP_MS ?? 10_000);
if (!Number.isInteger(WARM_UP_MS) || WARM_UP_MS < 0) {
  throw new Error(
    `BENCH_WARM_UP_MS: "${process.env.BENCH_WARM_UP_MS}" is not a whole number of milliseconds`,
  );
}
const IN_FLIGHT = listEnv("BENCH_IN_FLIGHT", ["16", "128", "256"]).map((v) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_IN_FLIGHT: "${v}" is not a positive integer`);
  return n;
});
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  throw new Error(`BENCH_ROUNDS: "${process.env.BENCH_ROUNDS}" is not a positive integer`);
}
const CLIENT_PROCESSES = process.env.BENCH_CLIENT_PROCESSES ?? "1";
if (CLIENT_PROCESSES !== "0" && CLIENT_PROCESSES !== "1") {
  throw new Error(
    `BENCH_CLIENT_PROCESSES: "${CLIENT_PROCESSES}" is not "0" (load from this process) or "1" (one load process per member)`,
  );
}
const WORKLOADS = listEnv("BENCH_WORKLOADS", [...ALL_WORKLOADS]).map((w) => {
  if (!(ALL_WORKLOADS as readonly string[]).includes(w)) {
    throw new Error(`BENCH_WORKLOADS: "${w}" is not one of ${ALL_WORKLOADS.join(", ")}`);
  }
  return w as Workload;
});
// Unset: the arguments chainfire runs with (CHAINFIRE_NODE_ARGS); set, even empty: exactly these.
const DAEMON_NODE_ARGS =
  process.env.CHAINFIRE_BENCH_DAEMON_NODE_ARGS === undefined
    ? [...CHAINFIRE_NODE_ARGS]
    : process.env.CHAINFIRE_BENCH_DAEMON_NODE_ARGS.split(" ").filter((a) => a !== "");

function listEnv(name: string, fallback: string[]): string[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  return raw.split(",").map((v) => v.trim());
}

/** What one measurement of one row on one cluster saw. */
interface Sample {
  /** Requests completed. */
  ops: number;
  seconds: number;
  /** Latency of each completed request, ms. */
  latenciesMs: readonly number[];
  errors: number;
  /** CPU seconds the three server processes spent (all threads, user + system). */
  serverCpuSeconds: number;
  /** The same for the leader's process alone (0 when the leader is not known). */
  leaderCpuSeconds: number;
  /** CPU seconds the grpc-js load processes spent (undefined for other clients). */
  clientCpuSeconds?: number;
}

interface Result {
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU time the three server processes spent per completed request (all threads, user + system). */
  serverCpuUsPerOp: number;
  /** The same for the leader's process alone (0 when the leader is not known). */
  leaderCpuUsPerOp: number;
  /** CPU time the grpc-js load processes spent per completed request (undefined when not measured). */
  clientCpuUsPerOp: number | undefined;
}

/**
 * One row's figures over all its rounds: requests and seconds summed, percentiles of every
 * request's latency pooled, so a p99 rests on all rounds' requests instead of one 3-s window's.
 */
function summarize(samples: readonly Sample[]): Result {
  const ops = samples.reduce((n, s) => n + s.ops, 0);
  const seconds = samples.reduce((n, s) => n + s.seconds, 0);
  const latencies = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
  const perOp = (cpu: number) => (cpu * 1e6) / Math.max(1, ops);
  return {
    opsPerSecond: ops / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors: samples.reduce((n, s) => n + s.errors, 0),
    serverCpuUsPerOp: perOp(samples.reduce((n, s) => n + s.serverCpuSeconds, 0)),
    leaderCpuUsPerOp: perOp(samples.reduce((n, s) => n + s.leaderCpuSeconds, 0)),
    clientCpuUsPerOp: samples.every((s) => s.clientCpuSeconds !== undefined)
      ? perOp(samples.reduce((n, s) => n + (s.clientCpuSeconds ?? 0), 0))
      : undefined,
  };
}

/**
 * CPU seconds used so far by these processes (all threads, user + system). On a shared, loaded
 * machine throughput mostly measures the scheduler's share each process gets (a Go server with many
 * runnable threads gets more than a single-threaded Node.js one); CPU per request does not.
 */
function cpuSeconds(pids: readonly number[]): number {
  let micros = 0;
  for (const pid of pids) micros += processCpuMicros(pid);
  return micros / 1e6;
}

/**
 * One row's measurement on one cluster: `inFlight` closed-loop workers spread over the members,
 * in this process or in the suite's load processes (BENCH_CLIENT_PROCESSES).
 */
async function measure(s: Suite, workload: Workload, inFlight: number, durationMs: number): Promise<Sample> {
  const cpuBefore = cpuSeconds(s.pids);
  const leaderCpuBefore = s.leaderPid === undefined ? 0 : cpuSeconds([s.leaderPid]);
  const clientCpuBefore = s.loaders === undefined ? 0 : cpuSeconds(s.loaders.pids);
  const result =
    s.loaders === undefined
      ? await closedLoop(
          s.clients.map((c) => operation(workload, c)),
          inFlight,
          Date.now() + durationMs,
        )
      : await s.loaders.run(workload, inFlight, durationMs);
  return {
    ops: result.latenciesMs.length,
    seconds: result.seconds,
    latenciesMs: result.latenciesMs,
    errors: result.errors,
    serverCpuSeconds: cpuSeconds(s.pids) - cpuBefore,
    leaderCpuSeconds: s.leaderPid === undefined ? 0 : cpuSeconds([s.leaderPid]) - leaderCpuBefore,
    ...(s.loaders === undefined ? {} : { clientCpuSeconds: cpuSeconds(s.loaders.pids) - clientCpuBefore }),
  };
}

/** One running cluster under measurement; both kinds run side by side, loaded one at a time. */
interface Suite {
  readonly kind: ClusterKind;
  readonly cluster: Cluster;
  readonly clients: ChainfireClients[];
  readonly pids: number[];
  readonly leaderPid: number | undefined;
  readonly dir: string;
  /** The grpc-js load's processes, one per member (BENCH_CLIENT_PROCESSES=1). */
  readonly loaders: LoadProcesses | undefined;
  /** Each row's samples, one per round. */
  readonly results: Map<string, Sample[]>;
}

async function startSuite(kind: ClusterKind): Promise<Suite> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${kind}-`));
  const cluster = await Cluster.start({ kind, dir, nodeArgs: DAEMON_NODE_ARGS });
  const clients = cluster.members.map((m) => createClients(m.endpoint));
  const pids = cluster.members.map((m) => m.process!.pid!);
  const leaderPid = await findLeaderPid(clients, pids);
  const loaders =
    CLIENT_PROCESSES === "1" ? new LoadProcesses(cluster.members.map((m) => m.endpoint)) : undefined;
  return { kind, cluster, clients, pids, leaderPid, dir, loaders, results: new Map() };
}

async function stopSuite(s: Suite): Promise<void> {
  for (const c of s.clients) c.close();
  s.loaders?.close();
  if (process.env.CHAINFIRE_BENCH_DAEMON_NODE_ARGS && s.kind === "chainfire")
    await s.cluster.stopGracefully();
  else s.cluster.stop();
  rmSync(s.dir, { recursive: true, force: true });
}

/**
 * Every row is measured on each cluster back to back (the order alternating from row to row), so
 * that a machine whose speed drifts over the minutes of a run (other tenants of the host, thermal
 * limits) weighs on both sides of a ratio alike. The idle cluster meanwhile only sends heartbeats.
 */
async function runSuites(suites: readonly Suite[]): Promise<void> {
  // Untimed warm-up that also fills the key space, so reads find values and JITs are warm.
  for (const s of suites) {
    await measure(s, "put", 16, WARM_UP_MS);
    // h2load's requests take paths of their own through a server (its header encoding, one
    // connection per member): they are warmed up too, a second per workload, so the first h2load row
    // does not measure V8 compiling them.
    if (H2LOAD && WARM_UP_MS > 0) {
      for (const workload of WORKLOADS) {
        await measureH2Load(workload, s.cluster.members, s.clients[0]!, 16, s.pids, s.leaderPid, 1000);
      }
    }
  }
  const rows: { name: string; run: (s: Suite) => Promise<Sample> }[] = [];
  for (const inFlight of IN_FLIGHT) {
    for (const workload of WORKLOADS) {
      rows.push({
        name: `${workload}@${inFlight}`,
        run: (s) => measure(s, workload, inFlight, DURATION_MS),
      });
    }
  }
  if (H2LOAD) {
    for (const inFlight of IN_FLIGHT) {
      for (const workload of WORKLOADS) {
        rows.push({
          name: `${workload}@${inFlight} [h2load]`,
          run: (s) =>
            measureH2Load(workload, s.cluster.members, s.clients[0]!, inFlight, s.pids, s.leaderPid),
        });
      }
    }
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, r] of rows.entries()) {
      const order = (i + round) % 2 === 0 ? suites : [...suites].reverse();
      for (const s of order) {
        settleDisk();
        const sample = await r.run(s);
        s.results.set(r.name, [...(s.results.get(r.name) ?? []), sample]);
      }
    }
  }
}

/**
 * Writes back every dirty page before a measurement. Without it, the pages the cluster measured just
 * before wrote (its WAL, its backend) are written back by the kernel during the next measurement, on
 * the same disk, and slow that cluster's fsyncs: whichever cluster goes second in a row pays for the
 * first one's writes.
 */
function settleDisk(): void {
  spawnSync("sync", { stdio: "ignore" });
}

const H2LOAD = process.env.BENCH_H2LOAD !== "0" && h2loadAvailable();

const h2loadRequest: Record<Workload, { path: string; bytes: Uint8Array }> = {
  put: {
    path: "/etcdserverpb.KV/Put",
    bytes: etcdpb.PutRequest.encode(putRequest({ key: Buffer.from("h2load"), value: VALUE })).finish(),
  },
  "range-linearizable": {
    path: "/etcdserverpb.KV/Range",
    bytes: etcdpb.RangeRequest.encode(rangeRequest({ key: Buffer.from("k1") })).finish(),
  },
  "range-serializable": {
    path: "/etcdserverpb.KV/Range",
    bytes: etcdpb.RangeRequest.encode(rangeRequest({ key: Buffer.from("k1"), serializable: true })).finish(),
  },
};

async function currentRevision(clients: ChainfireClients): Promise<bigint> {
  const res = (await unary(
    clients,
    "range",
    rangeRequest({ key: Buffer.from("k1") }),
  )) as etcdpb.RangeResponse;
  return res.header?.revision ?? -1n;
}

/**
 * One h2load per member at once, `inFlight` split over them. A request counts only if the members'
 * status counters saw as many OK answers and nothing else; puts must also have made as many revisions.
 */
async function measureH2Load(
  workload: Workload,
  members: readonly ClusterMember[],
  clients: ChainfireClients,
  inFlight: number,
  pids: readonly number[],
  leaderPid: number | undefined,
  durationMs = DURATION_MS,
): Promise<Sample> {
  const { path, bytes } = h2loadRequest[workload];
  const metrics = members.map((m) => `http://127.0.0.1:${m.metricsPort}/metrics`);
  const handledTotals = () => grpcHandledTotals(metrics, path);
  const rev0 = await currentRevision(clients);
  const handled0 = await handledTotals();
  const cpuBefore = cpuSeconds(pids);
  const leaderCpuBefore = leaderPid === undefined ? 0 : cpuSeconds([leaderPid]);
  const runs: H2LoadResult[] = await Promise.all(
    members.map((m, i) =>
      runH2Load({
        target: `http://${m.endpoint}`,
        path,
        request: bytes,
        inFlight: Math.floor(inFlight / members.length) + (i < inFlight % members.length ? 1 : 0),
        durationMs,
      }),
    ),
  );
  const serverCpu = cpuSeconds(pids) - cpuBefore;
  const leaderCpu = leaderPid === undefined ? 0 : cpuSeconds([leaderPid]) - leaderCpuBefore;
  const handled = await handledTotals();
  const ok = handled.ok - handled0.ok;
  const calls = handled.all - handled0.all;
  const succeeded = runs.reduce((n, r) => n + r.succeeded, 0);
  const failed = runs.reduce((n, r) => n + r.failed, 0);
  const revisions = workload === "put" ? (await currentRevision(clients)) - rev0 : BigInt(succeeded);
  if (failed > 0 || ok !== calls || ok < succeeded || revisions < BigInt(succeeded))
    throw new Error(
      `h2load ${workload}@${inFlight}: ${succeeded} answered (${failed} failed by HTTP); the members ` +
        `answered ${ok} of ${calls} calls OK; ${revisions} revisions were made`,
    );
  return {
    ops: succeeded,
    seconds: Math.max(...runs.map((r) => r.seconds)),
    latenciesMs: runs.flatMap((r) => r.latenciesMs),
    errors: failed,
    serverCpuSeconds: serverCpu,
    leaderCpuSeconds: leaderCpu,
  };
}

/** The process of the member that reports itself leader (undefined when none does). */
async function findLeaderPid(
  clients: ChainfireClients[],
  pids: readonly number[],
): Promise<number | undefined> {
  for (const [i, c] of clients.entries()) {
    const res = await new Promise<{ leader: bigint; self: bigint } | null>((resolve) =>
      c.maintenance.status({}, new Metadata(), { deadline: Date.now() + 3000 }, (err, r) =>
        resolve(err === null ? { leader: r.leader, self: r.header?.memberId ?? 0n } : null),
      ),
    );
    if (res !== null && res.leader !== 0n && res.leader === res.self) return pids[i];
  }
  return undefined;
}

function row(name: string, c: Result | undefined, e: Result | undefined): string {
  const cell = (r: Result | undefined, f: (r: Result) => string, width: number) =>
    (r ? f(r) : "-").padStart(width);
  return [
    name.padEnd(33),
    cell(c, (r) => r.opsPerSecond.toFixed(0), 10),
    cell(c, (r) => r.p50Ms.toFixed(1), 7),
    cell(c, (r) => r.p99Ms.toFixed(1), 7),
    cell(c, (r) => String(r.errors), 5),
    cell(c, (r) => r.serverCpuUsPerOp.toFixed(0), 8),
    cell(c, (r) => r.leaderCpuUsPerOp.toFixed(0), 8),
    cell(c, (r) => r.clientCpuUsPerOp?.toFixed(0) ?? "-", 8),
    "|",
    cell(e, (r) => r.opsPerSecond.toFixed(0), 10),
    cell(e, (r) => r.p50Ms.toFixed(1), 7),
    cell(e, (r) => r.p99Ms.toFixed(1), 7),
    cell(e, (r) => String(r.errors), 5),
    cell(e, (r) => r.serverCpuUsPerOp.toFixed(0), 8),
    cell(e, (r) => r.leaderCpuUsPerOp.toFixed(0), 8),
    cell(e, (r) => r.clientCpuUsPerOp?.toFixed(0) ?? "-", 8),
    "|",
    (c && e ? (c.opsPerSecond / e.opsPerSecond).toFixed(2) : "-").padStart(6),
    (c && e ? (c.p99Ms / e.p99Ms).toFixed(2) : "-").padStart(9),
    (c && e ? (c.serverCpuUsPerOp / e.serverCpuUsPerOp).toFixed(2) : "-").padStart(9),
  ].join(" ");
}

const kinds = (process.env.BENCH_KINDS ?? "chainfire,etcd").split(",") as ClusterKind[];
// The daemon runs from dist/: compile first (incremental, quick when nothing changed).
const build = spawnSync("pnpm", ["exec", "tsc", "-b"], { cwd: PACKAGE_DIR, stdio: "inherit" });
if (build.status !== 0) throw new Error("build failed: the benchmark needs the compiled daemon");
for (const line of await storeBench()) console.log(line);
const suites: Suite[] = [];
// A crash (an uncaught error skips the finally below) must not leave clusters running: idle
// members still take CPU from every later measurement on this machine.
process.on("exit", () => {
  for (const s of suites) s.cluster.stop();
});
try {
  if (kinds.includes("chainfire")) suites.push(await startSuite("chainfire"));
  if (kinds.includes("etcd") && hasBinary("etcd")) suites.push(await startSuite("etcd"));
  await runSuites(suites);
} finally {
  for (const s of suites) await stopSuite(s);
}
const chainfire = suites.find((s) => s.kind === "chainfire")?.results ?? null;
const etcd = suites.find((s) => s.kind === "etcd")?.results ?? null;
console.log(
  `3 members each, 256-byte values, ${DURATION_MS} ms per measurement, ${ROUNDS} round(s) per row ` +
    "(figures pooled over the rounds), requests spread over the members",
);
console.log(
  CLIENT_PROCESSES === "1"
    ? "grpc-js load: one client process per member, each with its share of the requests in flight"
    : "grpc-js load: every request from the benchmark's own process (BENCH_CLIENT_PROCESSES=0)",
);
console.log(`chainfire daemons' Node.js arguments: ${DAEMON_NODE_ARGS.join(" ") || "(none)"}`);
console.log(
  `${"workload".padEnd(33)}  chainfire/s  p50 ms  p99 ms  errs cpuµs/op  ldrµs/op  cliµs/op |     etcd/s  p50 ms  p99 ms  errs cpuµs/op  ldrµs/op  cliµs/op | ratio p99 ratio cpu ratio` +
    (ROUNDS > 1 ? " | per round: ratio/p99 ratio" : ""),
);
const summary = (samples: readonly Sample[] | undefined) =>
  samples === undefined ? undefined : summarize(samples);
/** chainfire ÷ etcd in each round, throughput / p99: how far one round's ratio is from the pooled one. */
function roundRatios(c: readonly Sample[] | undefined, e: readonly Sample[] | undefined): string {
  if (c === undefined || e === undefined) return "";
  return c
    .map((sample, i) => {
      const [rc, re] = [summarize([sample]), summarize([e[i] as Sample])];
      return `${(rc.opsPerSecond / re.opsPerSecond).toFixed(2)}/${(rc.p99Ms / re.p99Ms).toFixed(2)}`;
    })
    .join(" ");
}
for (const client of H2LOAD ? ["", " [h2load]"] : [""]) {
  for (const inFlight of IN_FLIGHT) {
    for (const workload of WORKLOADS) {
      const name = `${workload}@${inFlight}${client}`;
      const [c, e] = [chainfire?.get(name), etcd?.get(name)];
      const rounds = ROUNDS > 1 ? ` | ${roundRatios(c, e)}` : "";
      console.log(row(name, summary(c), summary(e)) + rounds);
    }
  }
}
