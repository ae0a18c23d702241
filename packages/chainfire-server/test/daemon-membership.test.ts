// Proves the seed's membership sequence on real daemons (3 members + a temporary node04): learner
// add, promotion by re-adding its ID, in-place endpoint replacement, leader transfer to it, its
// restart as a voter, removal of the current leader, re-add of the removed member, scale-in — with
// every key written before a step readable from every member after it.
import { rmSync } from "node:fs";
import type { chainfirev1, etcd } from "@photoncloud/chainfire-api";
import { afterAll, describe, expect, it } from "vitest";
import {
  call,
  DaemonCluster,
  freePort,
  type Member,
  put,
  readPrefix,
  until,
} from "./support/daemon-cluster.js";

const cluster = new DaemonCluster({ token: "membership-test" });
const written = new Map<string, string>();
let step = 0;

afterAll(() => cluster.close());

const operator = (m: Member) => m.clients.operator;

function memberAdd(via: Member, req: Partial<chainfirev1.MemberAddRequest>) {
  return call<chainfirev1.MemberAddResponse>(operator(via), "memberAdd", {
    id: 0n,
    name: "",
    peerUrls: [],
    clientUrls: [],
    isLearner: false,
    ...req,
  });
}

async function memberList(via: Member): Promise<chainfirev1.Member[]> {
  return (await call<chainfirev1.MemberListResponse>(operator(via), "memberList", {})).members;
}

/** Writes one more key through `via` (retrying while an election settles) and remembers it. */
async function writeStepKey(via: Member): Promise<void> {
  const key = `seq/${String(step).padStart(2, "0")}`;
  const value = `value-${step++}`;
  await until(() => put(via, key, value, 3000).then(() => true), `put ${key} via ${via.name}`);
  written.set(key, value);
}

/** Every key written so far is readable from every listed member (serializable: each one's own state). */
async function expectReadableEverywhere(members: readonly Member[]): Promise<void> {
  for (const m of members) {
    const got = await until(
      async () => {
        const kv = await readPrefix(m, "seq/", true);
        return [...written].every(([k, v]) => kv.get(k) === v) ? kv : undefined;
      },
      () => `${m.name} to have ${[...written.keys()].join(" ")}`,
    );
    expect(new Map([...got].filter(([k]) => written.has(k)))).toEqual(written);
  }
}

async function leaderMember(members: readonly Member[]): Promise<Member> {
  const id = await cluster.leaderId(members);
  return cluster.memberNamed(id);
}

describe("chainfire membership sequence across processes", () => {
  it("runs the seed's sequence with data intact after every step", async () => {
    const [n1, n2, n3] = await Promise.all(["node01", "node02", "node03"].map((n) => cluster.allocate(n)));
    const initial = cluster.initialCluster(["node01", "node02", "node03"]);
    await Promise.all([n1!, n2!, n3!].map((m) => cluster.start(m.name, { initialCluster: initial })));
    const base = [n1!, n2!, n3!];
    let leader = await leaderMember(base);
    const follower = () => base.find((m) => m !== leader && m.proc !== null)!;
    await writeStepKey(follower());
    await expectReadableEverywhere(base);

    // 1. node04 joins as a learner (added through a follower: the request is forwarded).
    const n4 = await cluster.allocate("node04");
    const added = await memberAdd(follower(), {
      name: "node04",
      peerUrls: [cluster.peerUrl(n4)],
      clientUrls: [cluster.clientUrl(n4)],
      isLearner: true,
    });
    const id4 = added.member!.id;
    expect([added.member!.isLearner, added.updated]).toEqual([true, false]);
    await cluster.start("node04", {
      state: "existing",
      initialCluster: `${initial},node04=${cluster.peerUrl(n4)}`,
    });
    await writeStepKey(leader);
    await expectReadableEverywhere([...base, n4]);
    // A learner serves serializable reads only, answering everything else as etcd does.
    await expect(put(n4, "seq/learner", "x")).rejects.toMatchObject({
      code: 14,
      details: "etcdserver: rpc not supported for learner",
    });
    expect((await cluster.status(n4)).isLearner).toBe(true);

    // 2. Promotion: the same ID re-added with is_learner=false.
    const promoted = await until(
      () =>
        memberAdd(leader, {
          id: id4,
          name: "node04",
          peerUrls: [cluster.peerUrl(n4)],
          clientUrls: [cluster.clientUrl(n4)],
        }),
      "node04's promotion",
    );
    expect([promoted.member!.isLearner, promoted.updated]).toEqual([false, true]);
    await until(async () => !(await cluster.status(n4)).isLearner, "node04 to see itself as a voter");
    await writeStepKey(n4);
    await expectReadableEverywhere([...base, n4]);

    // 3. In-place endpoint replacement: new peer and client URLs for the same ID, same data dir.
    await cluster.stop("node04");
    n4.clients.close();
    n4.ports = { client: await freePort(), peer: await freePort(), metrics: await freePort() };
    n4.clients = cluster.clientsFor(n4.ports.client);
    const replaced = await memberAdd(follower(), {
      id: id4,
      name: "node04",
      peerUrls: [cluster.peerUrl(n4)],
      clientUrls: [cluster.clientUrl(n4)],
    });
    expect(replaced.updated).toBe(true);
    await cluster.start("node04", {
      state: "existing",
      initialCluster: `${initial},node04=${cluster.peerUrl(n4)}`,
    });
    const listed = await until(async () => {
      const entry = (await memberList(n1!)).find((m) => m.id === id4);
      return entry?.peerUrls[0] === cluster.peerUrl(n4) ? entry : undefined;
    }, "node01 to list node04's new URLs");
    expect([listed.peerUrls, listed.clientUrls]).toEqual([[cluster.peerUrl(n4)], [cluster.clientUrl(n4)]]);
    await writeStepKey(n4);
    await expectReadableEverywhere([...base, n4]);

    // 4. Leader transfer to node04, asked of a member that is not the leader.
    leader = await leaderMember([...base, n4]);
    const asker = [...base].find((m) => m !== leader)!;
    await until(
      () => call(operator(asker), "leaderTransfer", { targetId: id4, targetName: "" }).then(() => true),
      "leader transfer to node04",
    );
    expect(await cluster.leaderId([...base, n4])).toBe(id4);
    await writeStepKey(n1!);
    await expectReadableEverywhere([...base, n4]);

    // 5. node04 (the leader, a voter) restarts; the others elect a leader and keep writing.
    await cluster.stop("node04");
    await writeStepKey(n2!);
    await cluster.start("node04", {
      state: "existing",
      initialCluster: `${initial},node04=${cluster.peerUrl(n4)}`,
    });
    await writeStepKey(n4);
    await expectReadableEverywhere([...base, n4]);

    // 6. Remove the current leader, asked of a follower; the remaining voters elect a new leader.
    leader = await leaderMember([...base, n4]);
    const removedId = (await cluster.status(leader)).header!.memberId;
    const remover = [...base, n4].find((m) => m !== leader)!;
    await until(
      () => call(operator(remover), "memberRemove", { id: removedId }).then(() => true),
      "leader removal",
    );
    // A removed member stops by itself, cleanly, as etcd's do.
    expect(await cluster.exited(leader.name)).toBe(0);
    const remaining = [...base, n4].filter((m) => m !== leader);
    const newLeader = await cluster.leaderId(remaining, removedId);
    expect(remaining.map((m) => m.name)).toContain((await cluster.memberNamed(newLeader)).name);
    expect((await memberList(remover)).map((m) => m.id)).not.toContain(removedId);
    await writeStepKey(remover);
    await expectReadableEverywhere(remaining);

    // 7. Re-add the removed member by name (same derived ID); it starts from an empty data dir.
    const readded = await until(
      () =>
        memberAdd(remover, {
          name: leader.name,
          peerUrls: [cluster.peerUrl(leader)],
          clientUrls: [cluster.clientUrl(leader)],
        }),
      "re-adding the removed leader",
    );
    expect(readded.member!.id).toBe(removedId);
    rmSync(leader.dataDir, { recursive: true, force: true });
    const everyone = cluster.initialCluster([...base, n4].map((m) => m.name));
    await cluster.start(leader.name, { state: "existing", initialCluster: everyone });
    await writeStepKey(leader);
    await expectReadableEverywhere([...base, n4]);

    // 8. Scale back in: node04 leaves; the original three keep every key.
    await until(() => call(operator(n1!), "memberRemove", { id: id4 }).then(() => true), "node04 removal");
    expect(await cluster.exited("node04")).toBe(0);
    await writeStepKey(n3!);
    await expectReadableEverywhere(base);
    const names = (await memberList(n2!)).map((m) => m.name).sort();
    expect(names).toEqual(["node01", "node02", "node03"]);
    const statuses: etcd.StatusResponse[] = await Promise.all(base.map((m) => cluster.status(m)));
    expect(statuses.every((s) => !s.isLearner && s.leader === statuses[0]!.leader)).toBe(true);
  }, 240_000);
});
