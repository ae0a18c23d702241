// Proves the member kit end to end in one process: three members started with startMember from
// etcd-style flags on loopback, and the membership handlers driving list, learner add, promotion,
// status, leader transfer and removal, plus restart from the data directory.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMetrics } from "@photoncloud/daemon";
import { afterEach, describe, expect, it } from "vitest";
import { deriveClusterId, deriveMemberId } from "../src/member/ids.js";
import { membershipHandlers } from "../src/member/membership-handlers.js";
import { MemberNotFoundError } from "../src/service/errors.js";
import { until } from "./helpers.js";
import {
  clusterFlags,
  freePorts,
  leaderOf,
  retryQuorum,
  startTestCluster,
  startTestMember,
  type TestMember,
} from "./member-kit.js";

const enc = (s: string) => new TextEncoder().encode(s);
let members: TestMember[] = [];
let dir = "";

afterEach(async () => {
  for (const m of members) await m.stop();
  members = [];
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

async function startCluster(names: string[]) {
  dir = mkdtempSync(join(tmpdir(), "raft-member-"));
  const c = await startTestCluster(dir, names);
  members = c.members;
  return c;
}

describe("startMember + membershipHandlers", () => {
  it("runs a 3-member cluster and the operator membership sequence through the handlers", async () => {
    // Proves list, learner add (ID derived from the name), promotion by re-adding, status, transfer by name.
    const { cluster, ports } = await startCluster(["n1", "n2", "n3"]);
    const ids = ["n1", "n2", "n3"].map((n) => deriveMemberId("test-token", n));
    let leader = await until("leader", () => leaderOf(members));
    const lh = membershipHandlers(leader.member, () => ({ revision: 7n }));
    const list = await lh.memberList();
    // Each member published its --advertise-client-urls (= --listen-client-urls) through the log.
    for (const m of list.members) {
      const i = ["n1", "n2", "n3"].indexOf(m.name);
      expect(m.clientUrls).toEqual([`http://127.0.0.1:${ports[2 * i + 1]}`]);
    }
    expect(list.members.map((m) => m.name)).toEqual(
      [...members].sort((a, b) => (a.member.memberId < b.member.memberId ? -1 : 1)).map((m) => m.name),
    );
    expect(list.header).toMatchObject({
      clusterId: deriveClusterId("test-token", ids),
      memberId: leader.member.memberId,
      leaderId: leader.member.memberId,
    });
    expect(list.header!.raftTerm).toBeGreaterThan(0n);
    await until("a proposal", () => leader.member.raft.propose(enc("before-n4")));

    // Add n4 as a learner with id 0 (derived from its name), then start it joining the cluster.
    const [p4, c4] = await freePorts(2);
    const add = await lh.memberAdd({
      id: 0n,
      name: "n4",
      peerUrls: [`http://127.0.0.1:${p4}`],
      clientUrls: [`http://127.0.0.1:${c4}`],
      isLearner: true,
    });
    const id4 = deriveMemberId("test-token", "n4");
    expect(add.updated).toBe(false);
    expect(add.member).toEqual({
      id: id4,
      name: "n4",
      peerUrls: [`http://127.0.0.1:${p4}`],
      clientUrls: [`http://127.0.0.1:${c4}`],
      isLearner: true,
    });
    expect(add.members).toHaveLength(4);
    const n4 = await startTestMember("n4", [
      ...clusterFlags(dir, "n4", p4!, c4!, `${cluster},n4=http://127.0.0.1:${p4}`),
      "--initial-cluster-state",
      "existing",
    ]);
    members.push(n4);
    expect(n4.member.memberId).toBe(id4);
    // The joining member learns the cluster ID from its peers.
    await until("n4 learns the cluster ID", () => n4.member.clusterId === leader.member.clusterId);
    const h4 = membershipHandlers(n4.member);
    await until("n4 caught up", () =>
      n4.machine.commands().some((c) => c.command.toString() === "before-n4"),
    );
    const learnerStatus = await h4.status();
    expect(learnerStatus).toMatchObject({ version: "0.0.0-test", isLearner: true, revision: 0n });
    expect(learnerStatus.raftAppliedIndex).toBeGreaterThan(0n);
    expect(learnerStatus.header?.leaderId).toBe(leader.member.memberId);

    // Promote by re-adding the same ID with isLearner=false (no URLs: the stored ones are kept).
    const promoted = await retryQuorum(() =>
      lh.memberAdd({ id: id4, name: "", peerUrls: [], clientUrls: [], isLearner: false }),
    );
    expect(promoted.updated).toBe(true);
    expect(promoted.member).toMatchObject({ id: id4, name: "n4", isLearner: false });
    expect(promoted.member?.peerUrls).toEqual([`http://127.0.0.1:${p4}`]);
    await until("n4 sees itself as a voter", async () => (await h4.status()).isLearner === false);
    expect((await lh.status()).revision).toBe(7n);

    // Transfer leadership to n4 by name; every member then reports n4 as leader.
    await until("transfer to n4", async () => {
      const cur = leaderOf(members)!;
      await membershipHandlers(cur.member).leaderTransfer({ targetId: 0n, targetName: "n4" });
      return true;
    });
    leader = n4;
    await until("all see n4 lead", () => members.every((m) => m.member.header().leaderId === id4));
    const after = await h4.leaderTransfer({ targetId: id4, targetName: "" });
    expect(after.header?.leaderId).toBe(id4);
    await expect(h4.leaderTransfer({ targetId: 0n, targetName: "nobody" })).rejects.toBeInstanceOf(
      MemberNotFoundError,
    );

    // Remove the leader n4 itself; the others elect a new leader, which commits the removal in its
    // term (the old leader may step down before telling them the commit) and lists three members.
    const removed = await retryQuorum(() => h4.memberRemove({ id: id4 }));
    expect(removed.members.map((m) => m.id)).not.toContain(id4);
    await n4.stop();
    const rest = members.filter((m) => m !== n4);
    const names = await until("a new leader listing n1-n3", async () => {
      const l = leaderOf(rest);
      if (l === undefined) return undefined;
      const list = (await membershipHandlers(l.member).memberList()).members.map((m) => m.name).sort();
      return list.includes("n4") ? undefined : list;
    });
    expect(names).toEqual(["n1", "n2", "n3"]);
  }, 120_000);

  it("hands leadership over when the leader stops gracefully", async () => {
    // Proves the shutdown hooks transfer leadership first: a new leader exists as soon as stop returns.
    await startCluster(["g1", "g2", "g3"]);
    const leader = await until("leader", () => leaderOf(members));
    const termBefore = leader.member.header().raftTerm;
    await leader.stop();
    const rest = members.filter((m) => m !== leader);
    const next = leaderOf(rest);
    expect(next).toBeDefined();
    expect(next!.member.header().raftTerm).toBe(termBefore + 1n);
  }, 120_000);

  it("tells a removed member, and only it, that it was removed", async () => {
    // Proves onRemoved fires on the removed follower (which may never learn its removal's commit).
    await startCluster(["r1", "r2", "r3"]);
    const leader = await until("leader", () => leaderOf(members));
    const [victim, survivor] = members.filter((m) => m !== leader) as [TestMember, TestMember];
    const fired: string[] = [];
    for (const m of members) m.member.onRemoved(() => fired.push(m.name));
    await retryQuorum(() => membershipHandlers(leader.member).memberRemove({ id: victim.member.memberId }));
    await until("the removed member is told", () => fired.includes(victim.name));
    expect(fired).toEqual([victim.name]);
    expect(leaderOf([leader, survivor])).toBeDefined();
  }, 120_000);

  it("tells a removed leader restarted on its old data that it was removed", async () => {
    // Proves a member whose own configuration already lacks it (it applied its removal) is told at
    // restart, by peers that follow a leader and do not list it, instead of running on alone.
    const { ports } = await startCluster(["q1", "q2", "q3"]);
    const leader = await until("leader", () => leaderOf(members));
    const i = members.indexOf(leader);
    const id = leader.member.memberId;
    await retryQuorum(() => membershipHandlers(leader.member).memberRemove({ id }));
    await until("the leader applied its own removal", () => {
      const cs = leader.member.raft.node.currentConfState();
      return !cs.voters.includes(id) && cs.voters.length === 2;
    });
    await leader.stop();
    const rest = members.filter((m) => m !== leader);
    await until("a new leader", () => leaderOf(rest));
    const back = await startTestMember(leader.name, [
      ...clusterFlags(dir, leader.name, ports[2 * i]!, ports[2 * i + 1]!, "ignored=http://127.0.0.1:1"),
    ]);
    members[i] = back;
    const fired: string[] = [];
    back.member.onRemoved(() => fired.push(back.name));
    await until("the restarted removed member is told", () => fired.length === 1);
    expect(fired).toEqual([leader.name]);
  }, 120_000);

  it("restarts a member from its data directory, ignoring the initial-cluster flags", async () => {
    // Proves a restarted member keeps its ID, rejoins and catches up, like etcd's restart.
    const { ports } = await startCluster(["a", "b", "c"]);
    const leader = await until("leader", () => leaderOf(members));
    const victim = members.find((m) => m !== leader)!;
    const i = members.indexOf(victim);
    await victim.stop();
    await until("write while down", () => leader.member.raft.propose(enc("while-down")));
    const metrics = createMetrics({ withoutDefaultMetrics: true });
    const back = await startTestMember(
      victim.name,
      [...clusterFlags(dir, victim.name, ports[2 * i]!, ports[2 * i + 1]!, "ignored=http://127.0.0.1:1")],
      metrics,
    );
    members[i] = back;
    expect(back.member.memberId).toBe(victim.member.memberId);
    expect(back.member.clusterId).toBe(victim.member.clusterId);
    await until("restarted member caught up", () =>
      back.machine.commands().some((c) => c.command.toString() === "while-down"),
    );
    // Its raft_* gauges report a follower that knows the leader, with the three voters.
    await until("metrics show the leader", async () =>
      /^raft_has_leader 1$/m.test(await metrics.registry.metrics()),
    );
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^raft_is_leader 0$/m);
    expect(text).toMatch(/^raft_voters 3$/m);
    expect(text).toMatch(/^raft_applied_index [1-9]\d*$/m);
  }, 120_000);
});
