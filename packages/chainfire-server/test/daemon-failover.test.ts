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
