// chainfire-live-membership-proof: the seed's membership sequence on a live cluster of the three
// canonical members plus a temporary node04 — learner add, promotion, leader transfer, restart of
// the temporary voter, removal of the current leader, re-add of the removed member, final scale-in.
// Keys written before each step must be readable from every member after it.
import { rmSync } from "node:fs";
import { KvClient, MembershipClient } from "../clients.js";
import type { Cluster, MemberDescriptor } from "../cluster.js";
import type { LaneContext, LaneDefinition } from "../lane.js";
import type { NetnsNetwork } from "../netns.js";
import { pollUntil } from "../poll.js";
import { hexId, waitForLeader } from "../raft-view.js";
import { describeCluster, descs, expectKeysEverywhere, putKeys, startLaneCluster } from "./common.js";

const prefix = "membership/";

class MembershipRun {
  /** Every key written so far and its value: all must survive every step. */
  readonly written = new Map<string, string>();
  /** Members that should currently be serving (started and in the membership). */
  readonly active = new Set<string>();
  readonly ids = new Map<string, bigint>();

  constructor(
    readonly ctx: LaneContext,
    readonly cluster: Cluster,
  ) {
    for (const m of descs(cluster, "chainfire")) this.active.add(m.id);
  }

  activeDescs(): MemberDescriptor[] {
    return [...this.active].map((id) => this.cluster.member(id).desc);
  }

  /** Voters only: writes and leader agreement never depend on a learner. */
  client(): MembershipClient {
    const first = this.activeDescs().find((d) => d.name !== "node04") ?? this.activeDescs()[0]!;
    return new MembershipClient("chainfire.v1.Cluster", first.clientUrl);
  }

  async call<T>(fn: (c: MembershipClient) => Promise<T>): Promise<T> {
    const c = this.client();
    try {
      return await fn(c);
    } finally {
      c.close();
    }
  }

  async writeBefore(step: string): Promise<number> {
    const batch = new Map<string, string>();
    for (let i = 0; i < 10; i++) batch.set(`${prefix}${step}/${i}`, `${step}-${i}`);
    await putKeys(this.activeDescs(), batch);
    for (const [k, v] of batch) this.written.set(k, v);
    return batch.size;
  }

  async state() {
    const list = await this.call((c) => c.memberList());
    const members = list.members.map((m) => ({
      id: hexId(m.id),
      name: m.name,
      learner: m.isLearner,
      peerUrls: m.peerUrls,
    }));
    const { leaderId, term } = await waitForLeader(this.activeDescs(), 30_000);
    const readBack = await expectKeysEverywhere(this.activeDescs(), prefix, this.written);
    return { members, leader: hexId(leaderId), term, keysWritten: this.written.size, readBack };
  }

  /** One step of the sequence: write, act, then prove the state and the read-back. */
  async step(name: string, act: () => Promise<Record<string, unknown>>) {
    await this.ctx.step(name, async () => {
      const wrote = await this.writeBefore(name);
      const action = await act();
      return { wroteBefore: wrote, action, after: await this.state() };
    });
  }

  async waitMembers(what: string, check: (m: { name: string; isLearner: boolean }[]) => boolean) {
    return pollUntil(
      what,
      async () => {
        const list = await this.call((c) => c.memberList());
        return check(list.members) ? list.members.map((m) => m.name) : undefined;
      },
      { deadlineMs: 30_000, intervalMs: 200 },
    );
  }
}

function initialClusterFor(run: MembershipRun, joining: MemberDescriptor): string {
  const others = run.activeDescs().filter((d) => d.id !== joining.id);
  return [...others, joining].map((d) => `${d.name}=${d.peerUrl}`).join(",");
}

/** MemberAdd (as learner), then start the process with --initial-cluster-state existing. */
async function addLearner(run: MembershipRun, desc: MemberDescriptor) {
  const res = await run.call((c) =>
    c.memberAdd({
      name: desc.name,
      peerUrls: [desc.peerUrl!],
      clientUrls: [desc.clientUrl],
      isLearner: true,
    }),
  );
  run.ids.set(desc.id, res.member!.id);
  const member = run.cluster.joinMember(desc, initialClusterFor(run, desc));
  member.proc.start();
  await member.proc.waitHealthy(60_000);
  run.active.add(desc.id);
  return { memberId: hexId(res.member!.id), updated: res.updated, learner: res.member!.isLearner };
}

async function promote(run: MembershipRun, desc: MemberDescriptor) {
  // Promotion is MemberAdd again for the same (name-derived) ID with is_learner=false. A learner
  // that has not caught up may be refused, so retry until the deadline.
  const res = await pollUntil(
    `promotion of ${desc.name}`,
    () =>
      run.call((c) =>
        c.memberAdd({
          name: desc.name,
          peerUrls: [desc.peerUrl!],
          clientUrls: [desc.clientUrl],
          isLearner: false,
        }),
      ),
    { deadlineMs: 30_000, intervalMs: 300 },
  );
  await run.waitMembers(`${desc.name} to be a voter`, (ms) =>
    ms.some((m) => m.name === desc.name && !m.isLearner),
  );
  return { memberId: hexId(res.member!.id), updated: res.updated, learner: res.member!.isLearner };
}

async function removeMember(run: MembershipRun, desc: MemberDescriptor, id: bigint) {
  run.active.delete(desc.id);
  await run.call((c) => c.memberRemove(id));
  await run.waitMembers(
    `${desc.name} to leave the membership`,
    (ms) => !ms.some((m) => m.name === desc.name),
  );
  await run.cluster.member(desc.id).proc.stop(10_000);
}

/**
 * --netns only: cut the current leader off from the other voters (prohibit routes both ways; the
 * host still reaches everyone). The majority must elect a new leader and keep acknowledging writes,
 * the isolated leader must not acknowledge one; after healing, all members must agree on one leader
 * and hold every acknowledged write (checked by the step's `after`, on every member).
 */
async function networkPartition(run: MembershipRun, network: NetnsNetwork) {
  const before = await waitForLeader(run.activeDescs(), 30_000);
  const old = run.activeDescs().find((d) => run.ids.get(d.id) === before.leaderId);
  if (old?.netns === undefined)
    throw new Error(`the leader ${hexId(before.leaderId)} is not an active member`);
  const others = run.activeDescs().filter((d) => d.id !== old.id);
  const cutAt = Date.now();
  const cut = network.isolate(
    old.netns.member,
    others.map((d) => d.netns!.member),
  );
  try {
    const next = await pollUntil(
      "the majority side to elect a new leader",
      async () => {
        const now = await waitForLeader(others, 10_000);
        if (now.leaderId === before.leaderId) throw new Error(`${old.name} is still their leader`);
        return now;
      },
      { deadlineMs: 30_000, intervalMs: 200 },
    );
    const electedMs = Date.now() - cutAt;
    const batch = new Map<string, string>();
    for (let i = 0; i < 10; i++) batch.set(`${prefix}network-partition/majority-${i}`, `majority-${i}`);
    await putKeys(others, batch);
    for (const [k, v] of batch) run.written.set(k, v);
    // The isolated side cannot reach a quorum: a write sent to it must not be acknowledged. (Its key
    // lies outside the checked prefix: an unacknowledged write may still be applied after healing.)
    const kv = new KvClient(old.clientUrl);
    let isolatedWrite: string;
    try {
      await kv.put("partition-probe/isolated-leader", "must-not-be-acknowledged", 3000);
      isolatedWrite = "acknowledged";
    } catch (err) {
      isolatedWrite = `not acknowledged: ${(err as Error).message.split("\n")[0]}`;
    } finally {
      kv.close();
    }
    if (isolatedWrite === "acknowledged")
      throw new Error(`${old.name}, cut off from the majority, acknowledged a write`);
    network.healAll();
    const healedAt = Date.now();
    // Any leader is correct after healing (with pre-vote the majority's usually stays): what matters
    // is that all three agree on one, which includes the old leader having learnt of the new term.
    const rejoined = await waitForLeader(run.activeDescs(), 30_000);
    return {
      isolated: { name: old.name, id: hexId(before.leaderId), address: old.netns.address, term: before.term },
      cut: cut.map((p) => `${p.a} x ${p.b}`),
      majority: others.map((d) => d.name),
      newLeader: { id: hexId(next.leaderId), term: next.term, electedMs },
      majorityWritesAcknowledged: batch.size,
      isolatedLeaderWrite: isolatedWrite,
      healed: {
        leader: hexId(rejoined.leaderId),
        term: rejoined.term,
        sameAsMajorityLeader: rejoined.leaderId === next.leaderId,
        agreedMs: Date.now() - healedAt,
      },
    };
  } finally {
    network.healAll();
  }
}

export const chainfireLiveMembershipProof: LaneDefinition = {
  name: "chainfire-live-membership-proof",
  description:
    "learner add, promotion, leader transfer, voter restart, leader removal, re-add and scale-in on 3 members + node04",
  async run(ctx) {
    let cluster!: Cluster;
    let node04!: MemberDescriptor;
    await ctx.step("start-canonical-cluster", async () => {
      cluster = await startLaneCluster(ctx, "cluster", { chainfire: 3 });
      node04 = await cluster.describe("chainfire", 3, "node04");
      return describeCluster(cluster);
    });
    const run = new MembershipRun(ctx, cluster);
    for (const d of descs(cluster, "chainfire")) {
      const c = new MembershipClient("chainfire.v1.Cluster", d.clientUrl);
      run.ids.set(d.id, (await c.status().finally(() => c.close())).header!.memberId);
    }
    await run.step("learner-add", () => addLearner(run, node04));
    await run.step("voter-promotion", () => promote(run, node04));
    await run.step("leader-transfer", async () => {
      const target = run.ids.get(node04.id)!;
      await run.call((c) => c.leaderTransfer({ name: node04.name }));
      await pollUntil(
        "node04 to lead",
        async () => ((await waitForLeader(run.activeDescs(), 10_000)).leaderId === target ? true : undefined),
        { deadlineMs: 30_000 },
      );
      return { newLeader: hexId(target), name: node04.name };
    });
    await run.step("temporary-voter-restart", async () => {
      const m = cluster.member(node04.id);
      const exit = await m.proc.stop(10_000);
      m.proc.start();
      await m.proc.waitHealthy(60_000);
      return { restarted: node04.name, exitAfterSigterm: exit ?? null };
    });
    let removed!: MemberDescriptor;
    await run.step("current-leader-removal", async () => {
      const { leaderId } = await waitForLeader(run.activeDescs(), 30_000);
      removed = run.activeDescs().find((d) => run.ids.get(d.id) === leaderId)!;
      await removeMember(run, removed, leaderId);
      // The others notice the departure within an election timeout; wait for their new leader.
      const next = await pollUntil(
        "the remaining voters to elect a new leader",
        async () => {
          const now = await waitForLeader(run.activeDescs(), 10_000);
          if (now.leaderId === leaderId) throw new Error(`${removed.name} is still reported as leader`);
          return now;
        },
        { deadlineMs: 30_000, intervalMs: 200 },
      );
      return { removedLeader: removed.name, removedId: hexId(leaderId), newLeader: hexId(next.leaderId) };
    });
    await run.step("removed-leader-readd", async () => {
      // A removed member comes back empty: its old data belongs to a membership it is no longer in.
      rmSync(removed.dataDir, { recursive: true, force: true });
      const added = await addLearner(run, removed);
      const promoted = await promote(run, removed);
      const sameId = added.memberId === hexId(run.ids.get(removed.id)!);
      return { readded: removed.name, sameId, added, promoted };
    });
    await run.step("final-scale-in", async () => {
      const last = node04.id === removed.id ? cluster.member(node04.id).desc : node04;
      await removeMember(run, last, run.ids.get(last.id)!);
      const names = await run.waitMembers("three members", (ms) => ms.length === 3);
      return { removed: last.name, remaining: names };
    });
    const network = ctx.network;
    if (network !== undefined) await run.step("network-partition", () => networkPartition(run, network));
  },
};
