// Proves that kill -9 of the leader and then of a follower, under continuous writes, loses no
// acknowledged write; the survivors keep serving; and each restarted member catches up — by
// snapshot, since the writes made while it was down go far past --snapshot-count plus the kept tail
// — before it serves its first read.
import { afterAll, describe, expect, it } from "vitest";
import { DaemonCluster, type Member, put, readPrefix, until } from "./support/daemon-cluster.js";

const cluster = new DaemonCluster({
  token: "failover-test",
  extraFlags: ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"],
});
/** key → value of every write the cluster acknowledged. */
const acked = new Map<string, string>();
let sequence = 0;
let writing = true;

afterAll(async () => {
  writing = false;
  await cluster.close();
});

/** Writers that spread puts over the running members; only acknowledged puts are remembered. */
function startWriters(count: number): Promise<void>[] {
  return Array.from({ length: count }, async (_, w) => {
    while (writing) {
      const live = cluster.running();
      const target = live[(sequence + w) % Math.max(1, live.length)];
      if (target === undefined) break;
      const key = `load/${String(sequence++).padStart(6, "0")}`;
      const value = `v${w}-${key}`;
      try {
        await put(target, key, value, 3000);
        acked.set(key, value);
      } catch {
        // Not acknowledged (member killed, election in progress): may or may not be applied.
      }
    }
  });
}

async function ackedGrowsBy(count: number, what: string): Promise<void> {
  const target = acked.size + count;
  await until(() => acked.size >= target, `${count} more acknowledged writes ${what}`, 60_000);
}

/** Every acknowledged write is present, with its value, in this member's own state. */
async function expectAllAcked(m: Member): Promise<void> {
  const snapshot = new Map(acked);
  const kv = await until(
    async () => {
      const got = await readPrefix(m, "load/", true);
      return [...snapshot].every(([k, v]) => got.get(k) === v) ? got : undefined;
    },
    () => `${m.name} to hold all ${snapshot.size} acknowledged writes`,
    60_000,
  );
  const missing = [...snapshot].filter(([k, v]) => kv.get(k) !== v);
  expect(missing).toEqual([]);
}

describe("kill -9 under write load", () => {
  it("loses no acknowledged write, keeps serving, and catches the restarted member up", async () => {
    const names = ["a", "b", "c"];
    await Promise.all(names.map((n) => cluster.allocate(n)));
    const initial = cluster.initialCluster(names);
    await Promise.all(names.map((n) => cluster.start(n, { initialCluster: initial })));
    const writers = startWriters(8);
    await ackedGrowsBy(100, "before any kill");

    for (const role of ["leader", "follower"] as const) {
      const leaderId = await cluster.leaderId();
      const leader = await cluster.memberNamed(leaderId);
      const victim = role === "leader" ? leader : cluster.running().find((m) => m !== leader)!;
      await cluster.stop(victim.name, "SIGKILL");
      // The survivors elect (if needed) and keep acknowledging writes: far more than the log keeps.
      await ackedGrowsBy(150, `after killing the ${role}`);
      // As etcd, the restarted member serves clients only once it has applied what the cluster
      // committed: its first serializable read already holds every write acknowledged while it was
      // down (read once, not polled).
      const whileDown = new Map(acked);
      await cluster.start(victim.name, { initialCluster: initial });
      const first = await readPrefix(victim, "load/", true);
      expect([...whileDown].filter(([k, v]) => first.get(k) !== v)).toEqual([]);
      await ackedGrowsBy(50, `after restarting the ${role}`);
      for (const m of cluster.running()) await expectAllAcked(m);
    }
    writing = false;
    await Promise.all(writers);
    for (const m of cluster.running()) await expectAllAcked(m);
    const revisions = await Promise.all(cluster.running().map((m) => cluster.status(m)));
    const applied = await until(async () => {
      const st = await Promise.all(cluster.running().map((m) => cluster.status(m)));
      return st.every((s) => s.header!.revision === st[0]!.header!.revision) ? st : undefined;
    }, "every member at the same revision");
    expect(applied.length).toBe(revisions.length);
  }, 240_000);
});

describe("a member killed before its store committed anything", () => {
  it("serves clients only once it has caught up, when restarted", async () => {
    // The store commits applied writes in batches (here at most once an hour), so a member killed
    // soon after its cluster started has applied entries only in its Raft log. Restarted, it is
    // still behind the cluster: its first serializable read holds every write acknowledged while
    // it was down (read once, not polled).
    const fresh = new DaemonCluster({
      token: "early-kill-test",
      extraFlags: ["--backend-batch-interval", "1h"],
    });
    try {
      const names = ["x", "y", "z"];
      await Promise.all(names.map((n) => fresh.allocate(n)));
      const initial = fresh.initialCluster(names);
      await Promise.all(names.map((n) => fresh.start(n, { initialCluster: initial })));
      const leader = await fresh.memberNamed(await fresh.leaderId());
      const victim = fresh.running().find((m) => m !== leader)!;
      await put(leader, "early/before", "1");
      await fresh.stop(victim.name, "SIGKILL");
      // 16 MB: the restarted member needs a while to take it in.
      const whileDown = Array.from({ length: 256 }, (_, i) => `early/down-${String(i).padStart(3, "0")}`);
      const value = "v".repeat(64 << 10);
      for (let i = 0; i < whileDown.length; i += 16) {
        await Promise.all(whileDown.slice(i, i + 16).map((key) => put(leader, key, value)));
      }
      await fresh.start(victim.name, { initialCluster: initial });
      const first = await readPrefix(victim, "early/", true, true);
      expect([...first.keys()].sort()).toEqual(["early/before", ...whileDown]);
    } finally {
      await fresh.close();
    }
  }, 120_000);
});
