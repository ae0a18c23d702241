// Proves etcd's corruption checks on 3 members: a member whose store was changed behind Raft's back
// (as a disk fault might) refuses to start with --experimental-initial-corrupt-check, and without
// it the leader's --experimental-corrupt-check-time round raises the CORRUPT alarm for it, after
// which writes are refused with etcd's "corrupt cluster". The leader also raises it for a member
// whose revision is ahead of its own, which no hash at the leader's revision shows.
import { etcd } from "@photoncloud/chainfire-api";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dataDirLayout } from "../src/daemon/data-dir.js";
import {
  call,
  DaemonCluster,
  type Member,
  put,
  readPrefix,
  runDaemonToExit,
  until,
} from "./support/daemon-cluster.js";

const CHECK_MS = 300;
const CHECK = [`--experimental-corrupt-check-time=${CHECK_MS}ms`];
const names = ["k1", "k2", "k3"];
const cluster = new DaemonCluster({ token: "corruption-test" });
let members: Member[];

beforeAll(async () => {
  members = await Promise.all(names.map((n) => cluster.allocate(n)));
  const initial = cluster.initialCluster(names);
  await Promise.all(names.map((n) => cluster.start(n, { initialCluster: initial, extraFlags: CHECK })));
  // The checks reach members at their published client URLs.
  await cluster.published(members);
}, 180_000);

afterAll(() => cluster.close());

const alarmsOf = async (m: Member) =>
  (
    await call<etcd.AlarmResponse>(m.clients.maintenance, "alarm", {
      action: etcd.AlarmRequest_AlarmAction.GET,
      memberID: 0n,
      alarm: etcd.AlarmType.NONE,
    })
  ).alarms;

/** Stops `m`, moves its store's current revision by `by` behind Raft's back, and starts it again. */
async function shiftRevision(m: Member, by: number): Promise<void> {
  await cluster.stop(m.name, "SIGTERM");
  const db = new Database(dataDirLayout.mvccDb(m.dataDir));
  expect(
    db.prepare("UPDATE meta SET value = value + ? WHERE name = 'current_revision'").run(by).changes,
  ).toBe(1);
  db.close();
  await cluster.start(m.name, { initialCluster: cluster.initialCluster(names), extraFlags: CHECK });
}

describe("corruption checks between members", { timeout: 150_000 }, () => {
  it("raises CORRUPT for a member whose revision is ahead of the leader's", async () => {
    // Proves etcd's second check: the member's data at the leader's revision hashes the same (no
    // row differs), but its store counts revisions the log never made.
    const leader = await cluster.memberNamed(await cluster.leaderId());
    const follower = members.find((m) => m !== leader)!;
    const followerId = (await cluster.status(follower)).header!.memberId;
    // Members apply each write at their own moment: rounds of the check during a stream of writes
    // through every member raise nothing.
    const started = Date.now();
    for (let i = 0; Date.now() - started < 6 * CHECK_MS; i++)
      await Promise.all(members.map((m, j) => put(m, `ahead/load-${i}-${j}`, "x")));
    expect(await alarmsOf(leader)).toEqual([]);
    await put(leader, "ahead/a", "1");
    await until(async () => {
      for (const m of members)
        if ((await readPrefix(m, "ahead/", true)).get("ahead/a") !== "1") return undefined;
      return true;
    }, "every member to apply the put");
    await shiftRevision(follower, 5);
    await until(
      async () =>
        (await alarmsOf(leader)).some(
          (a) => a.memberID === followerId && a.alarm === etcd.AlarmType.CORRUPT,
        ) || undefined,
      "the leader to raise CORRUPT for the member ahead",
    );
    expect((await alarmsOf(leader)).map((a) => a.memberID)).toEqual([followerId]);
    // Put right and disarmed, the cluster takes writes again and the alarm stays down.
    await shiftRevision(follower, -5);
    await call(leader.clients.maintenance, "alarm", {
      action: etcd.AlarmRequest_AlarmAction.DEACTIVATE,
      memberID: followerId,
      alarm: etcd.AlarmType.CORRUPT,
    });
    await until(() => put(leader, "ahead/b", "2").then(() => true), "a write after the disarm");
    await until(
      async () => (await readPrefix(follower, "ahead/", true)).get("ahead/b") === "2" || undefined,
      "the member to apply it",
    );
    expect(await alarmsOf(leader)).toEqual([]);
  });

  it("refuses to start a member whose data differs, and the leader raises CORRUPT for it", async () => {
    const leader = await cluster.memberNamed(await cluster.leaderId());
    const follower = members.find((m) => m !== leader)!;
    const followerId = (await cluster.status(follower)).header!.memberId;
    await put(leader, "corrupt/a", "1");
    await put(leader, "corrupt/b", "2");
    await until(async () => {
      for (const m of members)
        if ((await readPrefix(m, "corrupt/", true)).get("corrupt/b") !== "2") return undefined;
      return true;
    }, "every member to apply the puts");
    await cluster.stop(follower.name, "SIGTERM");
    // One value changed in the stopped member's store, its revision untouched.
    const db = new Database(dataDirLayout.mvccDb(follower.dataDir));
    expect(
      db.prepare("UPDATE kv SET value = ? WHERE key = ?").run(Buffer.from("X"), Buffer.from("corrupt/a"))
        .changes,
    ).toBe(1);
    db.close();

    const initial = cluster.initialCluster(names);
    const refused = await runDaemonToExit([
      ...cluster.flags(follower, { initialCluster: initial }),
      "--experimental-initial-corrupt-check",
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(
      /this member's data differs from its peers' at revision \d+/,
    );

    await cluster.start(follower.name, { initialCluster: initial, extraFlags: CHECK });
    await until(async () => {
      const { alarms } = await call<etcd.AlarmResponse>(leader.clients.maintenance, "alarm", {
        action: etcd.AlarmRequest_AlarmAction.GET,
        memberID: 0n,
        alarm: etcd.AlarmType.NONE,
      });
      return alarms.some((a) => a.memberID === followerId && a.alarm === etcd.AlarmType.CORRUPT)
        ? true
        : undefined;
    }, "the leader to raise CORRUPT for the changed member");
    // Only that member: the two that agree are not named.
    const { alarms } = await call<etcd.AlarmResponse>(leader.clients.maintenance, "alarm", {
      action: etcd.AlarmRequest_AlarmAction.GET,
      memberID: 0n,
      alarm: etcd.AlarmType.CORRUPT,
    });
    expect(alarms.map((a) => a.memberID)).toEqual([followerId]);
    await expect(put(leader, "corrupt/c", "3")).rejects.toMatchObject({
      code: 15,
      details: "etcdserver: corrupt cluster",
    });
  });
});
