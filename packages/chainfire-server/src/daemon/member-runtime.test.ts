import { type RunningMember, StateRole } from "@photoncloud/raft";
import { describe, expect, it } from "vitest";
import { MvccStore } from "../mvcc/store.js";
import { LeadershipWatcher } from "./member-runtime.js";

describe("LeadershipWatcher", () => {
  it("promotes the lessor with the term it leads in, and again when it leads in a later one", () => {
    // Proves a member that lost the leadership and won it back between two looks does not keep the
    // countdowns (and the term its expiries are proposed for) of its earlier term.
    // The term of each entry of the log: 1-2 of term 3, 3 of term 5.
    const terms = new Map([
      [1n, 3n],
      [2n, 3n],
      [3n, 5n],
    ]);
    let applied = 2n;
    const core: { role: StateRole; term: bigint; log: { termOrZero(i: bigint): bigint } } = {
      role: StateRole.Follower,
      term: 3n,
      log: { termOrZero: (i: bigint) => terms.get(i) ?? 0n },
    };
    const member = {
      raft: { node: { appliedIndex: () => applied, withCore: <T>(fn: (c: typeof core) => T) => fn(core) } },
    };
    const store = new MvccStore({ path: ":memory:" });
    const changes: boolean[] = [];
    const watcher = new LeadershipWatcher(member as unknown as RunningMember, store, (l) => changes.push(l));
    try {
      watcher.start(60_000);
      expect(store.lessor.isPrimary).toBe(false);
      core.role = StateRole.Leader;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([true, 3n]);
      // Leading in term 5, not yet past the entries of term 3: not promoted until it applies one of
      // its own term.
      core.term = 5n;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([false, 0n]);
      applied = 3n;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([true, 5n]);
      core.role = StateRole.Follower;
      core.term = 6n;
      watcher.check();
      expect([store.lessor.isPrimary, store.lessor.term]).toEqual([false, 0n]);
      expect(changes).toEqual([true, false, true, false]);
    } finally {
      watcher.stop();
      store.close();
    }
  });
});
