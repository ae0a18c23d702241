// Benchmark: proposals/s and commit latency (propose → applied on the leader) for three members
// over the real gRPC transport and SQLite store on loopback, at 1, 16, 128 and 256 proposals in
// flight with 256-byte payloads. Usage: pnpm --filter @photoncloud/raft bench [--seconds N]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { bindServer, type LocalMember, startMember, stopMember } from "../src/demo/local-cluster.js";

const secondsArg = process.argv.indexOf("--seconds");
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 5;
const snapArg = process.argv.indexOf("--snapshot-entries");
/** Snapshot interval; by default beyond the run (see BENCHMARKS.md). */
const SNAPSHOT_ENTRIES = snapArg > 0 ? Number(process.argv[snapArg + 1]) : 10_000_000;
const PAYLOAD = new Uint8Array(256).fill(7);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
}

/** Member 1 runs here (it is made leader and measured); members 2 and 3 run in child processes. */
async function startCluster(dir: string): Promise<{ leader: LocalMember; stop: () => void }> {
  const bound = await Promise.all([1, 2, 3].map(() => bindServer()));
  const members = bound.map((b, i) => ({
    id: BigInt(i + 1),
    name: `m${i + 1}`,
    peerUrls: [b.url],
    clientUrls: [],
    isLearner: false,
  }));
  const json = JSON.stringify(members.map((m) => ({ ...m, id: String(m.id) })));
  const ports = bound.map((b) => b.url.split(":").pop() as string);
  for (const b of bound.slice(1)) b.server.forceShutdown();
  const children = [2, 3].map((id) =>
    spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(import.meta.dirname, "../test/member-process.ts"),
        String(id),
        ports[id - 1] as string,
        dir,
        json,
      ],
      {
        cwd: join(import.meta.dirname, ".."),
        stdio: ["pipe", "ignore", "inherit"],
        env: {
          ...process.env,
          RAFT_TICK_MS: "100",
          RAFT_ELECTION_TICKS: "20",
          RAFT_SNAPSHOT_ENTRIES: String(SNAPSHOT_ENTRIES),
        },
      },
    ),
  );
  const leader = startMember(1n, bound[0] as { server: never; url: string }, dir, members, {
    tickMs: 100,
    electionTicks: 20,
    snapshotEntries: SNAPSHOT_ENTRIES,
    snapshotTailEntries: Math.floor(SNAPSHOT_ENTRIES / 4),
    proposalQueueMax: 100_000,
  });
  const stop = () => {
    stopMember(leader);
    for (const c of children) c.kill("SIGTERM");
  };
  for (;;) {
    const s = leader.service.status();
    if (s.role === "leader") break;
    // Leadership is moved here so that the measured process is the leader.
    if (s.leader !== 0n) for (const c of children) c.stdin.write("transfer 1\n");
    await new Promise((r) => setTimeout(r, 200));
  }
  return { leader, stop };
}

async function run(leader: LocalMember, inflight: number): Promise<void> {
  const lat: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  let errors = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await leader.service.propose(PAYLOAD);
        lat.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, worker));
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  console.log(
    `| ${inflight} | ${Math.round(lat.length / secs)} | ${pct(lat, 50).toFixed(1)} | ${pct(lat, 99).toFixed(1)} | ${errors} |`,
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "raft-bench-"));
  const { leader, stop } = await startCluster(dir);
  try {
    console.log(
      `3 members (measured leader here, 2 followers in child processes), ${SECONDS}s per level, 256-byte payloads, ${cpus().length} CPUs (${cpus()[0]?.model})`,
    );
    console.log("| in flight | proposals/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|");
    await run(leader, 16); // warm-up, not reported separately
    const term0 = leader.service.status().term;
    for (const n of [1, 16, 128, 256]) await run(leader, n);
    const st = leader.service.status();
    console.log(`elections during the run: ${st.term - term0} (leader ${st.leader}, role ${st.role})`);
  } finally {
    stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

void main();
