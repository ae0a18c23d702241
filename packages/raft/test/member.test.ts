// Proves the member kit end to end in one process: three members started with startMember from
// etcd-style flags on loopback, and the membership handlers driving list, learner add, promotion,
// status, leader transfer and removal, plus restart from the data directory.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { deriveClusterId, deriveMemberId } from "../src/member/ids.js";
import { membershipHandlers } from "../src/member/membership-handlers.js";
import { MemberNotFoundError, QuorumAtRiskError } from "../src/service/errors.js";
import { until } from "./helpers.js";
import { clusterFlags, freePorts, startTestMember, type TestMember } from "./member-kit.js";

const enc = (s: string) => new TextEncoder().encode(s);
let members: TestMember[] = [];
let dir = "";

afterEach(async () => {
  for (const m of members) await m.stop();
  members = [];
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

function leaderOf(ms: TestMember[]): TestMember | undefined {
  return ms.find((m) => !m.member.raft.node.isStopped && m.member.raft.status().role === "leader");
}

/** On a loaded machine a leader may briefly not have heard a voter (QuorumAtRisk): retry only that. */
async function retryQuorum<T>(op: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof QuorumAtRiskError) || Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startCluster(names: string[]): Promise<{ ports: number[]; cluster: string }> {
  dir = mkdtempSync(join(tmpdir(), "raft-member-"));
  const ports = await freePorts(names.length * 2);
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i]}`).join(",");
  members = await Promise.all(
    names.map((n, i) => startTestMember(n, clusterFlags(dir, n, ports[2 * i]!, ports[2 * i + 1]!, cluster))),
  );
  return { ports, cluster };
}

describe("startMember + membershipHandlers", () => {
  it("runs a 3-member cluster and the operator membership sequence through the handlers", async () => {
    // Proves list, learner add (ID derived from the name), promotion by re-adding, status, transfer by name.
    const { cluster } = await startCluster(["n1", "n2", "n3"]);
    const ids = ["n1", "n2", "n3"].map((n) => deriveMemberId("test-token", n));
    let leader = await until("leader", () => leaderOf(members));
    const lh = membershipHandlers(leader.member, () => ({ revision: 7n }));
    const list = await lh.memberList();
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

    // Remove the leader n4 itself; the others elect a new leader and list three members.
    const removed = await retryQuorum(() => h4.memberRemove({ id: id4 }));
    expect(removed.members.map((m) => m.id)).not.toContain(id4);
    await n4.stop();
    const rest = members.filter((m) => m !== n4);
    leader = await until("new leader", () => leaderOf(rest));
    expect((await membershipHandlers(leader.member).memberList()).members.map((m) => m.name).sort()).toEqual([
      "n1",
      "n2",
      "n3",
    ]);
  }, 120_000);

  it("restarts a member from its data directory, ignoring the initial-cluster flags", async () => {
    // Proves a restarted member keeps its ID, rejoins and catches up, like etcd's restart.
    const { ports } = await startCluster(["a", "b", "c"]);
    const leader = await until("leader", () => leaderOf(members));
    const victim = members.find((m) => m !== leader)!;
    const i = members.indexOf(victim);
    await victim.stop();
    await until("write while down", () => leader.member.raft.propose(enc("while-down")));
    const back = await startTestMember(victim.name, [
      ...clusterFlags(dir, victim.name, ports[2 * i]!, ports[2 * i + 1]!, "ignored=http://127.0.0.1:1"),
    ]);
    members[i] = back;
    expect(back.member.memberId).toBe(victim.member.memberId);
    expect(back.member.clusterId).toBe(victim.member.clusterId);
    await until("restarted member caught up", () =>
      back.machine.commands().some((c) => c.command.toString() === "while-down"),
    );
  }, 120_000);
});
