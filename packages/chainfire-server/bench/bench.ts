// Single-member benchmark: put, linearizable range and serializable range throughput and latency at
// several in-flight counts against chainfire (LocalReplicated instead of Raft, in its own process)
// and, when `etcd` is on PATH, a single-member etcd started the same way; prints chainfire/etcd ratios.
// The 3-member comparison the issue asks for needs the Raft layer and is added with the daemon.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClients, type etcd } from "@photoncloud/chainfire-api";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import { storeBench } from "./store-bench.js";

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const IN_FLIGHT = [16, 128, 256];
const VALUE = Buffer.alloc(256, 7);

interface Result {
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes("\n")) resolve(buf.split("\n")[0]!);
    });
  });
}

async function measure(op: () => Promise<unknown>, inFlight: number): Promise<Result> {
  const latencies: number[] = [];
  const end = Date.now() + DURATION_MS;
  const worker = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      await op();
      latencies.push(performance.now() - t0);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { opsPerSecond: latencies.length / seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function suite(endpoint: string): Promise<Map<string, Result>> {
  const clients = createClients(endpoint);
  const unary = <Req, Res>(method: "put" | "range", req: Req) =>
    new Promise<Res>((resolve, reject) =>
      (clients.kv[method] as unknown as (r: Req, cb: (e: Error | null, r: Res) => void) => void).call(
        clients.kv,
        req,
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  let n = 0;
  // Untimed warm-up, so neither side is measured while the client or server JIT is still cold.
  const warmUpEnd = Date.now() + 1000;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (Date.now() < warmUpEnd) {
        await unary("put", putRequest({ key: Buffer.from(`k${n++ % 10000}`), value: VALUE }));
      }
    }),
  );
  const results = new Map<string, Result>();
  for (const inFlight of IN_FLIGHT) {
    results.set(
      `put@${inFlight}`,
      await measure(
        () =>
          unary<etcd.PutRequest, etcd.PutResponse>(
            "put",
            putRequest({ key: Buffer.from(`k${n++ % 10000}`), value: VALUE }),
          ),
        inFlight,
      ),
    );
    results.set(
      `range-linearizable@${inFlight}`,
      await measure(() => unary("range", rangeRequest({ key: Buffer.from(`k${n++ % 10000}`) })), inFlight),
    );
    results.set(
      `range-serializable@${inFlight}`,
      await measure(
        () => unary("range", rangeRequest({ key: Buffer.from(`k${n++ % 10000}`), serializable: true })),
        inFlight,
      ),
    );
  }
  clients.close();
  return results;
}

async function startEtcd(): Promise<{ endpoint: string; stop: () => void } | null> {
  if (spawnSync("which", ["etcd"]).status !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), "etcd-bench-"));
  const [client, peer] = [await freePort(), await freePort()];
  const child = spawn(
    "etcd",
    [
      "--name=bench",
      `--data-dir=${join(dir, "data")}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=bench=http://127.0.0.1:${peer}`,
      "--log-level=error",
    ],
    { stdio: "ignore" },
  );
  const endpoint = `127.0.0.1:${client}`;
  const deadline = Date.now() + 30_000;
  while (
    spawnSync("etcdctl", [`--endpoints=${endpoint}`, "endpoint", "health"], {
      env: { ...process.env, ETCDCTL_API: "3" },
    }).status !== 0
  ) {
    if (Date.now() > deadline) throw new Error("etcd did not become healthy");
  }
  const stop = () => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  return { endpoint, stop };
}

const server = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "serve-single.ts")], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, NODE_OPTIONS: "--conditions=source" },
});
const chainfire = await suite(await firstLine(server));
server.kill("SIGTERM");
const etcdServer = await startEtcd();
const etcdResults = etcdServer ? await suite(etcdServer.endpoint) : null;
etcdServer?.stop();

for (const line of storeBench()) console.log(line);
console.log(`single member, 256-byte values, ${DURATION_MS} ms per measurement`);
console.log(
  "workload                      chainfire ops/s  p50 ms  p99 ms |  etcd ops/s  p50 ms  p99 ms | ratio",
);
for (const [name, c] of chainfire) {
  const e = etcdResults?.get(name);
  const cols = [
    name.padEnd(28),
    c.opsPerSecond.toFixed(0).padStart(16),
    c.p50Ms.toFixed(2).padStart(7),
    c.p99Ms.toFixed(2).padStart(7),
    "|",
    (e ? e.opsPerSecond.toFixed(0) : "-").padStart(11),
    (e ? e.p50Ms.toFixed(2) : "-").padStart(7),
    (e ? e.p99Ms.toFixed(2) : "-").padStart(7),
    "|",
    e ? (c.opsPerSecond / e.opsPerSecond).toFixed(2) : "-",
  ];
  console.log(cols.join(" "));
}
