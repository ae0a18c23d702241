import { createLogger } from "@photoncloud/daemon";
import { afterEach, describe, expect, it } from "vitest";
import { type PeerView, RemovalWatcher } from "./removal-watcher.js";

const SELF = 1n;
const CLUSTER = 77n;
const PROBE_MS = 1000;
const TERM = 3n;
const watchers: RemovalWatcher[] = [];

/** Peer `memberId`'s answer; a leader's own answer is from a current configuration by default. */
function view(
  memberId: bigint,
  leaderId: bigint,
  memberIds: bigint[],
  more: Partial<PeerView> = {},
): PeerView {
  return {
    clusterId: CLUSTER,
    memberId,
    leaderId,
    memberIds,
    term: TERM,
    configCurrent: leaderId === memberId,
    ...more,
  };
}

afterEach(() => {
  for (const w of watchers.splice(0)) w.stop();
});

/**
 * A member whose own configuration, leader and last contact the test sets, and peers 2 and 3 whose
 * answers the test sets (by default peer 2 leads and lists every member).
 */
function harness() {
  let now = 10_000;
  const node = {
    isStopped: false,
    leader: 0n,
    core: { term: TERM },
    members: new Map<bigint, unknown>([SELF, 2n, 3n].map((id) => [id, {}])),
    lastHeard: new Map<bigint, number>(),
    voters: [SELF, 2n, 3n],
    learners: [] as bigint[],
    currentConfState() {
      return { voters: this.voters, learners: this.learners };
    },
  };
  const views = new Map<bigint, PeerView>();
  const peers = (memberIds: bigint[], leaderId = 2n) => {
    for (const peer of [2n, 3n]) views.set(peer, view(peer, leaderId, memberIds));
  };
  peers([SELF, 2n, 3n]);
  const asked: bigint[] = [];
  let removed = 0;
  let gate: Promise<void> = Promise.resolve();
  const watcher = new RemovalWatcher(
    node,
    SELF,
    () => CLUSTER,
    async (peer) => {
      asked.push(peer);
      await gate;
      const view = views.get(peer);
      if (view === undefined) throw new Error("unreachable");
      return view;
    },
    100,
    PROBE_MS,
    createLogger({ name: "removal-test", level: "silent" }),
    () => now,
  );
  watcher.onRemoved(() => removed++);
  watchers.push(watcher);
  return {
    node,
    watcher,
    asked,
    views,
    peers,
    /** This member follows peer 2, heard from just now. */
    following: () => {
      node.leader = 2n;
      node.lastHeard.set(2n, now);
    },
    dropSelf: () => {
      node.voters = node.voters.filter((id) => id !== SELF);
      node.learners = node.learners.filter((id) => id !== SELF);
    },
    advance: (ms: number) => {
      now += ms;
    },
    /**
     * Looks while the leader stays silent: nothing is asked until it has been silent for a probe
     * interval, and the peers are asked a probe interval after that.
     */
    leaderFallsSilent: async () => {
      await watcher.check();
      now += PROBE_MS - 1;
      await watcher.check();
      expect([asked, removed]).toEqual([[], 0]);
      now += 1;
      await watcher.check();
      now += PROBE_MS;
      await watcher.check();
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
  it("asks nobody while this member is in its configuration and hears from its leader", async () => {
    // Proves the quiet path: no probes while all is well.
    const h = harness();
    h.following();
    await h.watcher.check();
    h.advance(PROBE_MS - 1);
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[], 0]);
  });

  it("reports a removal it applied once the leader confirms it", async () => {
    // Proves a removal it applied itself is confirmed by the leader, at once.
    const h = harness();
    h.following();
    h.dropSelf();
    h.peers([2n, 3n]);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("waits for a leader just elected to apply the membership changes its log held", async () => {
    // Proves a new leader that has not yet applied a member add committed before its term cannot
    // stop that member; once it has applied its log, its word counts.
    const h = harness();
    h.following();
    h.dropSelf();
    h.views.set(2n, view(2n, 2n, [2n, 3n], { configCurrent: false }));
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[2n, 3n], 0]);
    h.views.set(2n, view(2n, 2n, [2n, 3n]));
    h.advance(PROBE_MS);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("ignores a leader of an older term than one this member followed", async () => {
    // Proves a deposed leader cut off from the majority, which still says it leads, cannot stop
    // a member that has heard from the newer leader; a term this member raised itself by
    // campaigning does not make the current leader's word too old.
    const h = harness();
    h.node.core.term = TERM + 1n;
    h.following();
    await h.watcher.check();
    h.dropSelf();
    h.views.delete(2n);
    h.views.set(3n, view(3n, 3n, [2n, 3n]));
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[2n, 3n], 0]);
    h.node.leader = 0n;
    h.node.core.term = TERM + 5n;
    h.views.set(3n, view(3n, 3n, [2n, 3n], { term: TERM + 1n }));
    h.advance(PROBE_MS);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("takes only the leader's word: a follower that has not applied an add proves nothing", async () => {
    // Proves a member added a moment ago is not stopped by a lagging follower (3) whose applied
    // configuration lacks it, while the leader (2) lists it.
    const h = harness();
    h.following();
    h.dropSelf();
    h.views.set(3n, view(3n, 2n, [2n, 3n]));
    h.node.members = new Map([3n, 2n, SELF].map((id) => [id, {}]));
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[3n, 2n], 0]);
  });

  it("asks nothing while a joining member with no configuration yet hears from a leader", async () => {
    // Proves a member started to join, whose configuration is still empty, does not stop itself
    // while it follows a leader; one that hears from none (its add was undone) asks and stops.
    const h = harness();
    h.node.voters = [];
    h.peers([2n, 3n]);
    h.following();
    await h.leaderFallsSilent();
    expect(h.removed()).toBe(1);
  });

  it("keeps running while it replays an old removal of its ID that the cluster has undone", async () => {
    // Proves a re-added member catching up through its earlier removal is not stopped: the leader
    // lists it. Its own configuration lacking it only makes it ask, once per probe interval.
    const h = harness();
    h.following();
    await h.watcher.check();
    h.dropSelf();
    await h.watcher.check();
    await h.watcher.check();
    expect(h.asked).toEqual([2n]);
    h.advance(PROBE_MS);
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[2n, 2n], 0]);
  });

  it("reports a member restarted on the data of a member removed meanwhile", async () => {
    // Proves a removed member brought back does not linger; peers without a leader settle nothing.
    const h = harness();
    h.dropSelf();
    h.peers([2n, 3n], 0n);
    await h.watcher.check();
    expect(h.removed()).toBe(0);
    h.peers([2n, 3n], 3n);
    h.advance(PROBE_MS);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });

  it("reports a removed learner that still names its leader but no longer hears from it", async () => {
    // Proves a learner, which never campaigns and so keeps the leader it knew, learns its removal
    // once the leader has been silent for a probe interval.
    const h = harness();
    h.node.voters = [2n, 3n];
    h.node.learners = [SELF];
    h.following();
    h.peers([2n, 3n]);
    await h.leaderFallsSilent();
    expect(h.removed()).toBe(1);
  });

  it("ignores answers from another cluster or another member at a peer's address", async () => {
    // Proves a reused address answering for someone else cannot stop this member.
    const h = harness();
    h.following();
    h.dropSelf();
    h.views.set(2n, view(2n, 2n, [2n], { clusterId: 5n }));
    h.views.set(3n, view(9n, 9n, [9n]));
    await h.watcher.check();
    expect([h.asked, h.removed()]).toEqual([[2n, 3n], 0]);
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

  it("asks only after a probe interval without a leader", async () => {
    // Proves a listed member that lost its leader waits before asking, then learns its removal.
    const h = harness();
    h.peers([2n, 3n]);
    await h.watcher.check();
    h.advance(PROBE_MS - 1);
    await h.watcher.check();
    expect(h.asked).toEqual([]);
    h.advance(1);
    await h.watcher.check();
    expect(h.removed()).toBe(1);
  });
});
