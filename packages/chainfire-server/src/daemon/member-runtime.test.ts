import { type RunningMember, StateRole } from "@photoncloud/raft";
import { describe, expect, it } from "vitest";
import { MvccStore } from "../mvcc/store.js";
import { LeadershipWatcher } from "./member-runtime.js";

describe("LeadershipWatcher", () => {
  it("promotes the lessor with the term it leads in, and again when it leads in a later one", () => {
    // Proves a member that lost the leadership and won it back between two looks does not keep the
    // countdowns (and the term its expiries are proposed for) of its earlier term.
    const core: { role: StateRole; term: bigint } = { role: StateRole.Follower, term: 3n };
    const member = { raft: { node: { withCore: <T>(fn: (c: typeof core) => T) => fn(core) } } };
    const store = new MvccStore({ path: ":memory:" });
    const changes: boolean[] = [];
    const watcher = new LeadershipWatcher(member as unknown as RunningMember, store, (l) => changes.push(l));
    try {
      watcher.start(60_000);
      expect(store.lessor.isPrimary).toBe(false);
      core.role = StateRole.Leader;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([true, 3n]);
      core.term = 5n;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([true, 5n]);
      core.role = StateRole.Follower;
      core.term = 6n;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([false, 0n]);
      expect(changes).toEqual([true, false]);
    } finally {
      watcher.stop();
      store.close();
    }
  });
});
