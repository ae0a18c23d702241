// What a member that comes back far behind costs the others: a 3-member cluster takes a backlog of
// puts while one follower is down (SIGKILL), then that member is started again while a light put load
// runs on the other two. Prints how long the member took to catch up and the latency of the other
// members' puts while it did (p50, p99, max, and how many took longer than 200 ms), and whether the
// leader changed. Runs against chainfire and, when `etcd` is on PATH, against etcd started the same
// way, one after the other. `pnpm bench:catch-up` in packages/chainfire-server.
//
// Env: CATCH_UP_MB (backlog size, default 64), CATCH_UP_VALUE_BYTES (default 8192), CATCH_UP_KINDS
// ("chainfire,etcd").
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { type ChainfireClients, createClients } from "@photoncloud/chainfire-api";
import { closedLoop, percentile } from "@photoncloud/daemon/bench";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import { Cluster, type ClusterKind, hasBinary, PACKAGE_DIR } from "./cluster.js";

const BACKLOG_MB = Number(process.env.CATCH_UP_MB ?? 64);
const VALUE_BYTES = Number(process.env.CATCH_UP_VALUE_BYTES ?? 8192);
const PROBE_IN_FLIGHT = 4;
const SLOW_MS = 200;

const call = <T>(f: (done: (err: Error | null, res?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => f((err, res) => (err === null ? resolve(res as T) : reject(err))));

function put(c: ChainfireClients, key: string, value: Buffer): Promise<unknown> {
  return call((done) =>
    c.kv.put(
      putRequest({ key: Buffer.from(key), value }),
      new Metadata(),
      { deadline: Date.now() + 10_000 },
      done,
    ),
  );
}

async function status(c: ChainfireClients): Promise<{ id: bigint; leader: bigint; term: bigint }> {
  const res = await call<{ header: { memberId: bigint }; leader: bigint; raftTerm: bigint }>((done) =>
    c.maintenance.status({}, new Metadata(), { deadline: Date.now() + 3000 }, done),
  );
  return { id: res.header.memberId, leader: res.leader, term: res.raftTerm };
}

async function run(kind: ClusterKind): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `catch-up-${kind}-`));
  const cluster = await Cluster.start({ kind, dir });
  const opened: ChainfireClients[] = [];
  const open = (endpoint: string) => {
    const c = createClients(endpoint);
    opened.push(c);
    return c;
  };
  try {
    // The member taken down is a follower: a leader's death would be an election, not a catch-up.
    const seen = await Promise.all(cluster.members.map((m) => status(open(m.endpoint))));
    const down = cluster.members[seen.findIndex((s) => s.id !== s.leader)]!;
    const [m1, m2] = cluster.members.filter((m) => m !== down) as [typeof down, typeof down];
    const m3 = down;
    const c1 = open(m1.endpoint);
    const c2 = open(m2.endpoint);
    cluster.stopMember(m3);
    const count = Math.ceil((BACKLOG_MB * 1024 * 1024) / VALUE_BYTES);
    const value = Buffer.alloc(VALUE_BYTES, 0x61);
    const backlogS = (await closedLoop(count, 16, (i) => put(i % 2 === 0 ? c1 : c2, `backlog/${i}`, value)))
      .seconds;
    const before = await status(c1);

    // The probe: small puts on the two live members, each latency kept with its start time.
    const latencies: number[] = [];
    let probing = true;
    const probe = async (c: ChainfireClients, n: number) => {
      for (let i = 0; probing; i++) {
        const started = performance.now();
        try {
          await put(c, `probe/${n}/${i % 100}`, Buffer.alloc(256, 0x62));
          latencies.push(performance.now() - started);
        } catch {
          latencies.push(performance.now() - started);
        }
      }
    };
    const probes = Array.from({ length: PROBE_IN_FLIGHT }, (_, n) => probe(n % 2 === 0 ? c1 : c2, n));
    const restarted = performance.now();
    cluster.startMember(m3);
    // Caught up: the restarted member has the last backlog key in its own (serializable) view. A new
    // client per attempt: a channel to the member that was down would wait out gRPC's reconnect
    // backoff (1 s and growing), which would be measured instead of the member.
    const last = Buffer.from(`backlog/${count - 1}`);
    for (;;) {
      const c3 = createClients(m3.endpoint);
      const found = await call<{ count: bigint }>((done) =>
        c3.kv.range(
          rangeRequest({ key: last, serializable: true, countOnly: true }),
          new Metadata(),
          { deadline: Date.now() + 1000 },
          done,
        ),
      )
        .catch(() => null)
        .finally(() => c3.close());
      if (found !== null && found.count === 1n) break;
      if (performance.now() - restarted > 120_000) throw new Error(`${kind} m3 did not catch up: ${m3.log}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const caughtUpS = (performance.now() - restarted) / 1000;
    probing = false;
    await Promise.all(probes);
    const after = await status(c1);
    const sorted = [...latencies].sort((a, b) => a - b);
    console.log(
      `${kind}: backlog ${count} × ${VALUE_BYTES} B (${BACKLOG_MB} MB) written in ${backlogS.toFixed(1)} s; ` +
        `m3 caught up ${caughtUpS.toFixed(2)} s after its start; ` +
        `other members' puts meanwhile: ${sorted.length}, p50 ${percentile(sorted, 50).toFixed(1)} ms, ` +
        `p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${(sorted[sorted.length - 1] ?? 0).toFixed(1)} ms, ` +
        `${sorted.filter((x) => x > SLOW_MS).length} over ${SLOW_MS} ms; ` +
        `leader ${before.leader === after.leader && before.term === after.term ? "unchanged" : `changed (term ${before.term} → ${after.term})`}`,
    );
  } finally {
    for (const c of opened) c.close();
    cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const kinds = (process.env.CATCH_UP_KINDS ?? "chainfire,etcd").split(",") as ClusterKind[];
// The daemon runs from dist/: compile first (incremental, quick when nothing changed).
const build = spawnSync("pnpm", ["exec", "tsc", "-b"], { cwd: PACKAGE_DIR, stdio: "inherit" });
if (build.status !== 0) throw new Error("build failed: the benchmark needs the compiled daemon");
for (const kind of kinds) {
  if (kind === "etcd" && !hasBinary("etcd")) continue;
  await run(kind);
}
