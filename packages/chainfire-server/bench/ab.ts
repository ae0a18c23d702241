// A/B of two chainfire clusters side by side, for changes too small for the full bench to show:
// cluster B is started with extra environment variables (AB_ENV, "NAME=value NAME2=value2"), its
// own Node.js arguments (AB_B_NODE_ARGS) and/or another build of the daemon (AB_B_BIN, the path of
// its dist/bin/chainfire.js: a copy of the repository at another commit, built). After 8 s of
// h2load puts at 64 in flight on each, the two are measured in AB_WINDOWS (default 8) alternating
// 3-s windows of h2load puts (one key, 256-byte values) at AB_IN_FLIGHT (default 16); with
// AB_HEAVY=1 each window follows 3 s at 256 in flight on the same cluster (what the full bench's
// earlier rows leave behind: snapshots and log compaction). Prints each cluster's pooled throughput, percentiles and server CPU per put (its
// three members, all threads, user + system, over the measured windows) and each window's p99.
// Two identical clusters differ by about 1 ms at p99 this way (BENCHMARKS.md, runs 66 and 71).
// Run: pnpm bench:ab (compiles first), with nothing else running.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcd as etcdpb } from "@photoncloud/chainfire-api";
import { percentile, processCpuMicros, runH2Load } from "@photoncloud/daemon/bench";
import { putRequest } from "../src/mvcc/messages.js";
import { Cluster } from "./cluster.js";
import { VALUE } from "./grpc-load.js";

const B_ENV = (process.env.AB_ENV ?? "").split(" ").filter(Boolean);
const WINDOWS = Number(process.env.AB_WINDOWS ?? 8);
const IN_FLIGHT = Number(process.env.AB_IN_FLIGHT ?? 16);
const HEAVY = process.env.AB_HEAVY === "1";
const path = "/etcdserverpb.KV/Put";
const bytes = etcdpb.PutRequest.encode(putRequest({ key: Buffer.from("h2load"), value: VALUE })).finish();
const dir = mkdtempSync(join(tmpdir(), "ab-"));

async function start(name: string, env: string[], nodeArgs?: string[], bin?: string): Promise<Cluster> {
  const saved: Record<string, string | undefined> = {};
  for (const kv of env) {
    const [k, v] = kv.split("=");
    saved[k!] = process.env[k!];
    process.env[k!] = v;
  }
  try {
    return await Cluster.start({
      kind: "chainfire",
      dir: join(dir, name),
      token: `ab-${name}`,
      ...(nodeArgs ? { nodeArgs } : {}),
      ...(bin ? { bin } : {}),
    });
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const cpuMicros = (c: Cluster) => c.members.reduce((n, m) => n + processCpuMicros(m.process!.pid!), 0);

async function load(c: Cluster, inFlight: number, ms: number) {
  const runs = await Promise.all(
    c.members.map((m, i) =>
      runH2Load({
        target: `http://${m.endpoint}`,
        path,
        request: bytes,
        inFlight: Math.floor(inFlight / 3) + (i < inFlight % 3 ? 1 : 0),
        durationMs: ms,
      }),
    ),
  );
  return {
    ops: runs.reduce((n, r) => n + r.succeeded, 0),
    s: Math.max(...runs.map((r) => r.seconds)),
    lat: runs.flatMap((r) => r.latenciesMs),
  };
}

const a = await start("a", []);
const b = await start(
  "b",
  B_ENV,
  process.env.AB_B_NODE_ARGS?.split(" ").filter(Boolean),
  process.env.AB_B_BIN || undefined,
);
try {
  for (const c of [a, b]) await load(c, 64, 8000);
  const pooled = {
    a: { ops: 0, s: 0, cpuUs: 0, lat: [] as number[], p99s: [] as string[] },
    b: { ops: 0, s: 0, cpuUs: 0, lat: [] as number[], p99s: [] as string[] },
  };
  for (let w = 0; w < WINDOWS; w++) {
    const order: Array<["a" | "b", Cluster]> =
      w % 2 === 0
        ? [
            ["a", a],
            ["b", b],
          ]
        : [
            ["b", b],
            ["a", a],
          ];
    for (const [name, c] of order) {
      if (HEAVY) await load(c, 256, 3000);
      const cpuBefore = cpuMicros(c);
      const r = await load(c, IN_FLIGHT, 3000);
      const p = pooled[name];
      p.cpuUs += cpuMicros(c) - cpuBefore;
      p.ops += r.ops;
      p.s += r.s;
      p.lat.push(...r.lat);
      p.p99s.push(
        percentile(
          [...r.lat].sort((x, y) => x - y),
          99,
        ).toFixed(1),
      );
    }
  }
  for (const [name, p] of Object.entries(pooled)) {
    const sorted = p.lat.sort((x, y) => x - y);
    console.log(
      `${name}: ${(p.ops / p.s).toFixed(0)}/s p50 ${percentile(sorted, 50).toFixed(1)} p99 ${percentile(sorted, 99).toFixed(1)} p999 ${percentile(sorted, 99.9).toFixed(1)} cpuµs/op ${(p.cpuUs / p.ops).toFixed(0)} windows ${p.p99s.join(" ")}`,
    );
  }
} finally {
  a.stop();
  b.stop();
  // Members may still be exiting: what they write meanwhile is left in the temp dir.
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {}
}
