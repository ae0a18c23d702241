// Durability across processes: kill -9 of the leader and of a follower under write load loses no
// acknowledged write and the restarted member catches up; a backup restores into a fresh cluster
// with an identical dump, and a corrupted or truncated backup is refused with nothing changed.

import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import {
  BackupFormat,
  Consistency,
  failure,
  type Member,
  st,
  TestCluster,
  until,
} from "./cluster-harness.js";

const clusters: TestCluster[] = [];

afterAll(async () => {
  const crashes = clusters.flatMap((c) => c.crashes());
  await Promise.all(clusters.map((c) => c.stop()));
  expect(crashes).toEqual([]);
}, 60_000);

/** The dump body without its header and trailer lines and without RESTORE history lines. */
function body(bytes: Buffer): string {
  return bytes
    .toString("utf8")
    .split("\n")
    .slice(2, -2)
    .filter((l) => !/INSERT INTO "_flaredb_schema_history".*'RESTORE'/.test(l))
    .join("\n");
}

interface Load {
  acked: bigint[];
  stop(): Promise<void>;
}

/** Writers sending single-row INSERTs to random live members; remembers every acknowledged id. */
function startLoad(cluster: TestCluster, writers: number): Load {
  const acked: bigint[] = [];
  let running = true;
  let failure: unknown;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let seq = 0; running; seq++) {
      const live = cluster.members.filter((m) => cluster.alive(m));
      const m = live[Math.floor(Math.random() * live.length)]!;
      const id = BigInt(w * 1_000_000 + seq);
      try {
        await cluster.execute(m, [st("INSERT INTO w(id, writer) VALUES (?, ?)", id, BigInt(w))], false, 5000);
        acked.push(id);
      } catch (err) {
        const code = (err as { code?: number }).code;
        // Unavailable, deadline or a member dying mid-call: the write may or may not have happened.
        if (code !== status.UNAVAILABLE && code !== status.DEADLINE_EXCEEDED && code !== status.CANCELLED) {
          failure = err;
          running = false;
        }
      }
    }
  });
  return {
    acked,
    async stop() {
      running = false;
      await Promise.all(loops);
      if (failure !== undefined) throw failure;
    },
  };
}

async function ids(cluster: TestCluster, m: Member): Promise<Set<bigint>> {
  const r = await cluster.query(m, st("SELECT id FROM w"), Consistency.CONSISTENCY_NONE);
  return new Set(r.rows.map((row) => row[0]!.intValue!));
}

let sqlBackup: Buffer;
let sqliteBackup: Buffer;
let sourceBody: string;

describe("flaredb durability (3 processes)", () => {
  it("loses no acknowledged write when the leader, then a follower, is killed with SIGKILL under load", async () => {
    // Proves acknowledged writes survive kill -9 of any member, and a restarted member catches up to identical state.
    const cluster = await TestCluster.start({ snapshotCount: 300 });
    clusters.push(cluster);
    const first = cluster.members[await cluster.waitForLeader()]!;
    await cluster.execute(first, [
      st(
        "CREATE TABLE w (id INTEGER PRIMARY KEY, writer INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP, r INTEGER DEFAULT (random()))",
      ),
    ]);
    const load = startLoad(cluster, 8);
    for (const victimKind of ["leader", "follower"] as const) {
      await until(
        "writes before the kill",
        async () => (load.acked.length >= 100 ? true : undefined),
        60_000,
      );
      const leader = await cluster.waitForLeader();
      const victim = cluster.members.find((m) =>
        victimKind === "leader" ? m.index === leader : m.index !== leader,
      )!;
      await cluster.kill9(victim);
      const atKill = load.acked.length;
      await until(
        "writes while a member is down",
        async () => (load.acked.length >= atKill + 200 ? true : undefined),
        90_000,
      );
      cluster.restart(victim);
      await cluster.waitReady();
      const atRestart = load.acked.length;
      await until(
        "writes after the restart",
        async () => (load.acked.length >= atRestart + 60 ? true : undefined),
        60_000,
      );
    }
    await load.stop();
    await cluster.waitConverged();
    for (const m of cluster.members) {
      const have = await ids(cluster, m);
      const missing = load.acked.filter((id) => !have.has(id));
      expect(missing, `${m.name} lost acknowledged writes`).toEqual([]);
    }
    const dumps = await Promise.all(cluster.members.map((m) => cluster.backup(m)));
    for (const d of dumps) expect(d.bytes.equals(dumps[0]!.bytes)).toBe(true);

    const leader = cluster.members[await cluster.waitForLeader()]!;
    sqlBackup = (
      await cluster.backup(leader, BackupFormat.BACKUP_FORMAT_SQL, Consistency.CONSISTENCY_LINEARIZABLE)
    ).bytes;
    sqliteBackup = (
      await cluster.backup(leader, BackupFormat.BACKUP_FORMAT_SQLITE, Consistency.CONSISTENCY_LINEARIZABLE)
    ).bytes;
    sourceBody = body(sqlBackup);
    expect(sourceBody).toContain("CREATE TABLE w");
    await cluster.stop();
  }, 240_000);

  it("restores a backup into a fresh cluster with an identical dump; refuses corrupt and truncated files", async () => {
    // Proves backup → restore through the log reproduces the data on every member, and damaged backups change nothing.
    expect(sqliteBackup, "backups taken by the previous test (it must have passed)").toBeDefined();
    const cluster = await TestCluster.start();
    clusters.push(cluster);
    const target = cluster.members[1]!;
    const emptyBefore = (await cluster.backup(target)).info.contentSha256;
    const damaged = Buffer.from(sqliteBackup);
    damaged[Math.floor(damaged.length / 3)]! ^= 0x01;
    const corrupt = await failure(cluster.restore(target, damaged));
    expect(corrupt.code).toBe(status.INVALID_ARGUMENT);
    expect(corrupt.details).toMatch(/FLAREDB_BACKUP_CORRUPT: backup refused: .*nothing was changed/);
    const truncated = await failure(cluster.restore(target, sqlBackup.subarray(0, sqlBackup.length - 100)));
    expect(truncated.details).toMatch(/FLAREDB_BACKUP_CORRUPT/);
    for (const m of cluster.members) expect((await cluster.backup(m)).info.contentSha256).toBe(emptyBefore);

    await cluster.restore(target, sqliteBackup);
    await cluster.waitConverged();
    const restored = await Promise.all(cluster.members.map((m) => cluster.backup(m)));
    for (const d of restored) {
      expect(d.bytes.equals(restored[0]!.bytes)).toBe(true);
      expect(body(d.bytes)).toBe(sourceBody);
    }
    // A second restore over data is refused: restore is for a fresh cluster (or a maintenance window).
    const again = await failure(cluster.restore(target, sqlBackup));
    expect(again.code).toBe(status.FAILED_PRECONDITION);
    expect(again.details).toMatch(/FLAREDB_RESTORE_NOT_EMPTY/);
  }, 240_000);
});
