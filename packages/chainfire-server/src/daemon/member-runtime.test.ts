import type { chainfirev1 } from "@photoncloud/chainfire-api";
import type { MemberInfo } from "@photoncloud/raft";
import { describe, expect, it } from "vitest";
import { RemovalWatcher } from "./member-runtime.js";

const SELF = 1n;
const info = (id: bigint): MemberInfo => ({
  id,
  name: `m${id}`,
  peerUrls: [`http://127.0.0.1:${2380 + Number(id)}`],
  clientUrls: [],
  isLearner: false,
});

/** A member whose own list and leader the test sets, and peers whose answers the test sets. */
function harness() {
  const node = { members: new Map<bigint, MemberInfo>(), leader: 0n };
  for (const id of [SELF, 2n, 3n]) node.members.set(id, info(id));
  let peersList = [SELF, 2n, 3n];
  let peersLeader = 2n;
  const asked: string[] = [];
  let now = 0;
  let removed = 0;
  let gate: Promise<void> = Promise.resolve();
  const watcher = new RemovalWatcher(
    { memberId: SELF, raft: { node } },
    async (url) => {
      asked.push(url);
      await gate;
      return Promise.resolve({
        header: { clusterId: 1n, memberId: 2n, raftTerm: 2n, leaderId: peersLeader },
        members: peersList.map((id) => ({ ...info(id), peerUrls: [...info(id).peerUrls], clientUrls: [] })),
      } as chainfirev1.MemberListResponse);
    },
    1000,
    () => removed++,
    () => now,
  );
  return {
    node,
    watcher,
    asked,
    peers: (list: bigint[], leader = 2n) => {
      peersList = list;
      peersLeader = leader;
    },
    advance: (ms: number) => {
      now += ms;
    },
    removed: () => removed,
    holdAnswers: () => {
      let open!: () => void;
      gate = new Promise((resolve) => {
        open = resolve;
      });
      return open;
    },
  };
}

describe("RemovalWatcher", () => {
  it("asks nobody while this member is listed and follows a leader", async () => {
    // Proves the quiet path: no probes while all is well.
    const h = harness();
    h.node.leader = 2n;
    await h.watcher.check();
    h.advance(5000);
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[], 0]);
  });

  it("stops once a member that follows a leader no longer lists it", async () => {
    // Proves a removal it applied itself is confirmed by a peer, at once.
    const h = harness();
    h.node.members.delete(SELF);
    h.node.leader = 0n;
    h.peers([2n, 3n]);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("keeps running while it replays an old removal of its ID that the cluster has undone", async () => {
    // Proves a re-added member catching up through its earlier removal is not stopped: the
    // others list it. Its own list lacking it only makes it ask, once per probe interval.
    const h = harness();
    h.node.leader = 2n;
    await h.watcher.check();
    h.node.members.delete(SELF);
    await h.watcher.check();
    await h.watcher.check();
    expect(h.asked).toHaveLength(2);
    h.advance(1000);
    await h.watcher.check();
    expect([h.asked.length, h.removed()]).toEqual([4, 0]);
  });

  it("stops a member restarted on the data of a member removed meanwhile", async () => {
    // Proves a removed member brought back (its list never had itself since) does not linger.
    const h = harness();
    h.node.members.delete(SELF);
    h.node.leader = 0n;
    h.peers([2n, 3n], 0n);
    await h.watcher.check();
    expect(h.removed()).toBe(0);
    h.peers([2n, 3n], 3n);
    h.advance(1000);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("reports nothing from a probe that answers after the watcher was stopped", async () => {
    // Proves a member already shutting down is not told to stop a second time by a late answer.
    const h = harness();
    h.node.members.delete(SELF);
    h.peers([2n, 3n]);
    const open = h.holdAnswers();
    const probe = h.watcher.check();
    h.watcher.stop();
    open();
    await probe;
    expect(h.removed()).toBe(0);
  });

  it("asks the others only after a probe interval without a leader", async () => {
    // Proves a listed member that lost its leader waits before asking, then learns its removal.
    const h = harness();
    h.node.leader = 0n;
    h.peers([2n, 3n]);
    await h.watcher.check();
    h.advance(999);
    await h.watcher.check();
    expect(h.asked).toEqual([]);
    h.advance(1);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });
});
