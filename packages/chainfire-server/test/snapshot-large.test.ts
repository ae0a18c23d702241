// A snapshot of a large store, end to end with the real processes: chainfirectl snapshot save from
// a member, status, restore, and a member started on the restored data dir. The member writes its
// image to a file and streams it from there as the client takes it, and the tools read files in
// pieces, so neither the member's memory nor the client's grows with the store, and a store past
// 2 GiB (a quota above etcd's default) can be saved and restored.
//
// The test command runs it on about 40 MB. `SNAPSHOT_TEST_MB=2200` (1-MB values, one per MB) runs
// it past 2 GiB, which takes several minutes and about 4 times the store's size on disk; the memory
// bound below only binds from about 1 GB.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { CHAINFIRE_NODE_ARGS } from "@photoncloud/daemon";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { rangeRequest } from "../src/mvcc/messages.js";
import { call, DaemonCluster, type Member, put, until } from "./support/daemon-cluster.js";

const VALUE_BYTES = 1_000_000;
const KEYS = Number(process.env.SNAPSHOT_TEST_MB ?? 40);
const CTL = join(import.meta.dirname, "..", "dist", "bin", "chainfirectl.js");
const MiB = 1024 * 1024;

/** Key i's value: 1 MB, its first bytes the key's number, so a misplaced value shows. */
function valueFor(i: number): string {
  const head = `value-${i}-`;
  return head + String.fromCharCode(97 + (i % 26)).repeat(VALUE_BYTES - head.length);
}

const keyOf = (i: number) => `big/${String(i).padStart(6, "0")}`;

/** The process's resident memory now, in bytes (0 once it has exited). */
function rssOf(pid: number | undefined): number {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB$/m);
    return line ? Number(line[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Runs chainfirectl to its end, sampling the resident memory of it and of `watched` meanwhile. */
function chainfirectl(
  args: string[],
  watched?: ChildProcess,
): Promise<{ code: number | null; out: string; ctlPeak: number; watchedPeak: number; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [...CHAINFIRE_NODE_ARGS, CTL, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let ctlPeak = 0;
    let watchedPeak = 0;
    const sample = setInterval(() => {
      ctlPeak = Math.max(ctlPeak, rssOf(proc.pid));
      watchedPeak = Math.max(watchedPeak, rssOf(watched?.pid));
    }, 20);
    proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (out += c.toString()));
    proc.on("exit", (code) => {
      clearInterval(sample);
      resolve({ code, out, ctlPeak, watchedPeak, seconds: (performance.now() - started) / 1000 });
    });
  });
}

// Snapshots often, and a short log kept behind them: a member added later gets a Raft snapshot.
const cluster = new DaemonCluster({
  extraFlags: ["--snapshot-count", "10", "--experimental-snapshot-catchup-entries", "5"],
});
afterAll(() => cluster.close());

/** The value of `key` on `m` (serializable: as `m` itself holds it, for a learner). */
async function valueAt(m: Member, key: string, serializable = false): Promise<string> {
  const res = await call<{ kvs: { value: Buffer }[] }>(
    m.clients.kv,
    "range",
    rangeRequest({ key: Buffer.from(key), serializable }),
  );
  return res.kvs[0]?.value.toString() ?? "(missing)";
}

/** Resolves once `m` has applied everything `leader` has. */
function caughtUp(leader: Member, m: Member, what: string): Promise<unknown> {
  return until(
    async () => {
      const [a, b] = await Promise.all([cluster.status(leader), cluster.status(m)]);
      return b.raftAppliedIndex >= a.raftAppliedIndex ? true : undefined;
    },
    what,
    1_200_000,
  );
}

describe(`snapshot of a ${KEYS}-MB store`, () => {
  it("is saved, checked and restored without the member or the tools holding it in memory", async () => {
    const quota = ["--quota-backend-bytes", String(8 * 1024 * MiB)];
    const n1 = await cluster.allocate("n1");
    await cluster.start("n1", { initialCluster: cluster.initialCluster(["n1"]), extraFlags: quota });
    await cluster.leaderId([n1]);
    for (let next = 0; next < KEYS; ) {
      const batch = Array.from({ length: Math.min(4, KEYS - next) }, (_, j) => next + j);
      await Promise.all(batch.map((i) => put(n1, keyOf(i), valueFor(i), 60_000)));
      next += batch.length;
    }

    const before = rssOf(n1.proc?.pid);
    const file = join(cluster.root, "large.snapshot");
    const save = await chainfirectl(
      [`--endpoints=127.0.0.1:${n1.ports.client}`, "snapshot", "save", file],
      n1.proc!,
    );
    expect(save.code, save.out).toBe(0);
    const imageBytes = statSync(file).size - 32;
    expect(imageBytes).toBeGreaterThan(KEYS * VALUE_BYTES);
    // The member made its image in a file of its own, which it removed once sent.
    expect(
      readdirSync(join(n1.dataDir), { recursive: true }).filter((f) => String(f).includes("client-image")),
    ).toEqual([]);

    const status = await chainfirectl(["snapshot", "status", file, "-w", "json"]);
    expect(status.code, status.out).toBe(0);
    const json = JSON.parse(status.out);
    expect([json.revision, json.totalKey, json.totalSize]).toEqual([KEYS + 1, KEYS, imageBytes]);

    const restored = await cluster.allocate("r1");
    const restore = await chainfirectl([
      "snapshot",
      "restore",
      file,
      "--name=r1",
      `--data-dir=${restored.dataDir}`,
      `--initial-cluster=r1=http://127.0.0.1:${restored.ports.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${restored.ports.peer}`,
    ]);
    expect(restore.code, restore.out).toBe(0);
    await cluster.start("r1", { initialCluster: undefined, extraFlags: quota });
    await cluster.leaderId([restored]);
    for (const i of [0, Math.floor(KEYS / 2), KEYS - 1])
      expect(await valueAt(restored, keyOf(i))).toBe(valueFor(i));
    const count = await call<{ count: bigint }>(
      restored.clients.kv,
      "range",
      rangeRequest({ key: Buffer.from("big/"), rangeEnd: Buffer.from("big0"), countOnly: true }),
    );
    expect(count.count).toBe(BigInt(KEYS));

    // What the image cost in memory, against the image: the bound binds from about 1 GB.
    const grown = save.watchedPeak - before;
    const bound = Math.max(imageBytes / 4, 256 * MiB);
    console.log(
      `image ${(imageBytes / MiB).toFixed(0)} MiB: member RSS ${(before / MiB).toFixed(0)} → peak ${(save.watchedPeak / MiB).toFixed(0)} MiB during save; ` +
        `chainfirectl peaks: save ${(save.ctlPeak / MiB).toFixed(0)}, status ${(status.ctlPeak / MiB).toFixed(0)}, restore ${(restore.ctlPeak / MiB).toFixed(0)} MiB; ` +
        `seconds: save ${save.seconds.toFixed(1)}, status ${status.seconds.toFixed(1)}, restore ${restore.seconds.toFixed(1)}`,
    );
    expect(grown).toBeLessThan(bound);
    for (const run of [save, status, restore]) expect(run.ctlPeak).toBeLessThan(bound);
  }, 1_800_000);

  it("reaches a member added to the cluster as a Raft snapshot, streamed from file to file", async () => {
    // The image for the new member is written to a file by the leader's worker and streamed from
    // it; the learner receives it into a file and copies it into its store. The leader's memory
    // stays where it was (the learner's grows by the values, which its key index holds).
    const n1 = cluster.get("n1");
    const before = rssOf(n1.proc?.pid);
    let leaderPeak = before;
    const sample = setInterval(() => {
      leaderPeak = Math.max(leaderPeak, rssOf(n1.proc?.pid));
    }, 20);
    const started = performance.now();
    try {
      const n2 = await cluster.allocate("n2");
      await call(n1.clients.cluster, "memberAdd", { peerURLs: [cluster.peerUrl(n2)], isLearner: true });
      await cluster.start("n2", {
        state: "existing",
        initialCluster: cluster.initialCluster(["n1", "n2"]),
        extraFlags: ["--quota-backend-bytes", String(8 * 1024 * MiB)],
      });
      await caughtUp(n1, n2, "the learner to catch up");
      const seconds = (performance.now() - started) / 1000;
      const metrics = await (await fetch(`http://127.0.0.1:${n2.ports.metrics}/metrics`)).text();
      const received = metrics
        .split("\n")
        .filter((l) => l.startsWith("etcd_network_snapshot_receive_success{"))
        .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
      expect(received).toBeGreaterThanOrEqual(1);
      // Received into a file of its own, which it keeps as its stored snapshot; nothing half done.
      const raftFiles = readdirSync(join(n2.dataDir, "raft"));
      expect(raftFiles.filter((f) => /^snap-\d+-received\.snap$/.test(f))).toHaveLength(1);
      expect(raftFiles.filter((f) => f.endsWith(".tmp"))).toEqual([]);
      for (const i of [0, Math.floor(KEYS / 2), KEYS - 1])
        expect(await valueAt(n2, keyOf(i), true)).toBe(valueFor(i));
      console.log(
        `learner caught up in ${seconds.toFixed(1)} s; leader RSS ${(before / MiB).toFixed(0)} → peak ${(leaderPeak / MiB).toFixed(0)} MiB`,
      );
      const imageBytes = statSync(join(n1.dataDir, "mvcc.db")).size;
      expect(leaderPeak - before).toBeLessThan(Math.max(imageBytes / 4, 256 * MiB));
    } finally {
      clearInterval(sample);
    }
  }, 1_800_000);

  it("brings back a learner killed while it receives the snapshot and again once it has stored it", async () => {
    // Proves the received snapshot's files are crash-safe: a kill -9 mid-transfer leaves only a
    // partial file the restart removes, and one after the snapshot is stored leaves a member that
    // installs it (again) at its restart. Either way the member comes back with every value.
    const n1 = cluster.get("n1");
    // One learner at a time, as etcd allows: the previous test's goes first.
    const listed = await call<{ members: { ID: bigint; peerURLs: string[] }[] }>(
      n1.clients.cluster,
      "memberList",
      {},
    );
    const n2 = listed.members.find((m) => m.peerURLs.includes(cluster.peerUrl(cluster.get("n2"))))!;
    await cluster.stop("n2");
    await call(n1.clients.cluster, "memberRemove", { ID: n2.ID });
    const n3 = await cluster.allocate("n3");
    await call(n1.clients.cluster, "memberAdd", { peerURLs: [cluster.peerUrl(n3)], isLearner: true });
    const start = () =>
      cluster.start("n3", {
        state: "existing",
        initialCluster: cluster.initialCluster(["n1", "n3"]),
        extraFlags: ["--quota-backend-bytes", String(8 * 1024 * MiB)],
      });
    const raftDir = join(n3.dataDir, "raft");
    const files = () => {
      try {
        return readdirSync(raftDir);
      } catch {
        return [];
      }
    };
    /**
     * Starts n3 and kills it (SIGKILL) as soon as `reached` says so, without waiting for it to
     * serve (a member may hold its clients until it has caught up).
     */
    const startAndKillWhen = async (reached: () => boolean, what: string) => {
      const starting = start().then(
        () => undefined,
        () => undefined, // it exits under the kill
      );
      const deadline = Date.now() + 300_000;
      while (!reached()) {
        if (Date.now() > deadline || n3.proc === null)
          throw new Error(`n3 never had ${what}: ${files().join(" ")}`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await cluster.stop("n3", "SIGKILL");
      await starting;
    };
    const receiving = /^snap-\d+-received\.snap\.\d+\.tmp$/;
    await startAndKillWhen(() => files().some((f) => receiving.test(f)), "a snapshot being received");
    await put(n1, "after-first-kill", "1", 60_000);
    // The second kill once the log store has recorded the received file as its snapshot (read from
    // its database, as it runs): the machine may not have installed it yet, which the restart does.
    let log: Database.Database | null = null;
    const recorded = () => {
      if (log === null) {
        if (!files().includes("raft.db")) return false;
        log = new Database(join(raftDir, "raft.db"), { readonly: true, fileMustExist: true });
      }
      const row = log.prepare("SELECT value FROM meta WHERE key = 'snapFile'").pluck().get() as
        | Buffer
        | undefined;
      return row !== undefined && /-received\.snap$/.test(row.toString());
    };
    try {
      await startAndKillWhen(recorded, "a stored snapshot");
    } finally {
      (log as Database.Database | null)?.close();
    }
    await put(n1, "after-second-kill", "2", 60_000);
    await start();
    await caughtUp(n1, n3, "n3 to catch up after its kills");
    for (const i of [0, Math.floor(KEYS / 2), KEYS - 1])
      expect(await valueAt(n3, keyOf(i), true)).toBe(valueFor(i));
    expect([
      await valueAt(n3, "after-first-kill", true),
      await valueAt(n3, "after-second-kill", true),
    ]).toEqual(["1", "2"]);
    expect(files().filter((f) => f.endsWith(".tmp"))).toEqual([]);
  }, 1_800_000);
});
