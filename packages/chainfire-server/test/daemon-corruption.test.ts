// Proves etcd's corruption checks on 3 members: a member whose store was changed behind Raft's back
// (as a disk fault might) refuses to start with --experimental-initial-corrupt-check, and without
// it the leader's --experimental-corrupt-check-time round raises the CORRUPT alarm for it, after
// which writes are refused with etcd's "corrupt cluster".
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

const CHECK = ["--experimental-corrupt-check-time=300ms"];
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

describe("corruption checks between members", { timeout: 150_000 }, () => {
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
