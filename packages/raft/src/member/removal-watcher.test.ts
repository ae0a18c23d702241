import { createLogger } from "@photoncloud/daemon";
import { describe, expect, it } from "vitest";
import { type PeerView, RemovalWatcher } from "./removal-watcher.js";

const SELF = 1n;

/** A member whose own configuration and leader the test sets, and peers whose answers the test sets. */
function harness() {
  const node = {
    isStopped: false,
    leader: 0n,
    members: new Map<bigint, unknown>([SELF, 2n, 3n].map((id) => [id, {}])),
    config: [SELF, 2n, 3n],
    currentConfState() {
      return { voters: this.config, learners: [] as bigint[] };
    },
  };
  let view: PeerView = { leaderId: 2n, memberIds: [SELF, 2n, 3n] };
  const asked: bigint[] = [];
  let now = 0;
  let removed = 0;
  let gate: Promise<void> = Promise.resolve();
  const watcher = new RemovalWatcher(
    node,
    SELF,
    async (peer) => {
      asked.push(peer);
      await gate;
      return view;
    },
    100,
    1000,
    createLogger({ name: "removal-test", level: "silent" }),
    () => now,
  );
  watcher.onRemoved(() => removed++);
  return {
    node,
    watcher,
    asked,
    peers: (memberIds: bigint[], leaderId = 2n) => {
      view = { leaderId, memberIds };
    },
    dropSelf: () => {
      node.config = node.config.filter((id) => id !== SELF);
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
  it("asks nobody while this member is in its configuration and follows a leader", async () => {
    // Proves the quiet path: no probes while all is well.
    const h = harness();
    h.node.leader = 2n;
    await h.watcher.check();
    h.advance(5000);
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[], 0]);
    h.watcher.stop();
  });

  it("reports a removal once a member that follows a leader no longer lists it", async () => {
    // Proves a removal it applied itself is confirmed by a peer, at once.
    const h = harness();
    h.dropSelf();
    h.peers([2n, 3n]);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("keeps running while it replays an old removal of its ID that the cluster has undone", async () => {
    // Proves a re-added member catching up through its earlier removal is not stopped: the others
    // list it. Its own configuration lacking it only makes it ask, once per probe interval.
    const h = harness();
    h.node.leader = 2n;
    await h.watcher.check();
    h.dropSelf();
    await h.watcher.check();
    await h.watcher.check();
    expect(h.asked).toEqual([2n, 3n]);
    h.advance(1000);
    await h.watcher.check();
    expect([h.asked.length, h.removed()]).toEqual([4, 0]);
    h.watcher.stop();
  });

  it("reports a member restarted on the data of a member removed meanwhile", async () => {
    // Proves a removed member brought back does not linger; a peer without a leader settles nothing.
    const h = harness();
    h.dropSelf();
    h.peers([2n, 3n], 0n);
    await h.watcher.check();
    expect(h.removed()).toBe(0);
    h.peers([2n, 3n], 3n);
    h.advance(1000);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("reports nothing from a probe that answers after the watcher was stopped", async () => {
    // Proves a member already shutting down is not told a second time by a late answer.
    const h = harness();
    h.dropSelf();
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
