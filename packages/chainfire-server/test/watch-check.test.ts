// The watch check the fault test relies on (support/watch-check.ts), on sessions written by hand: it
// accepts what a correct server sends and names what is wrong in each of the others.
import { describe, expect, it } from "vitest";
import type { Change } from "./support/linearizability.js";
import { checkWatches, kvOf, type WatchedEvent, type WatchSession } from "./support/watch-check.js";

// a=1 at 2, b=1 at 3, a=2 at 4, a deleted at 5, a=3 at 6.
const changes: Change[] = [
  { revision: 2n, key: "a", type: "put", value: "1" },
  { revision: 3n, key: "b", type: "put", value: "1" },
  { revision: 4n, key: "a", type: "put", value: "2" },
  { revision: 5n, key: "a", type: "delete", value: "" },
  { revision: 6n, key: "a", type: "put", value: "3" },
];
const kv = kvOf;
// What a correct server sends for each change, prev_kv included.
const right: Record<number, WatchedEvent> = {
  2: { type: "put", kv: kv("a", "1", 2, 2, 1), prev: null },
  3: { type: "put", kv: kv("b", "1", 3, 3, 1), prev: null },
  4: { type: "put", kv: kv("a", "2", 4, 2, 2), prev: kv("a", "1", 2, 2, 1) },
  5: { type: "delete", kv: kv("a", "", 5, 0, 0), prev: kv("a", "2", 4, 2, 2) },
  6: { type: "put", kv: kv("a", "3", 6, 6, 1), prev: null },
};
const session = (
  startRevision: number,
  responses: (number | WatchedEvent)[][],
  extra: Partial<WatchSession> = {},
): WatchSession => ({
  watcher: 0,
  member: "m1",
  startRevision: BigInt(startRevision),
  responses: responses.map((events) => {
    const evs = events.map((e) => (typeof e === "number" ? right[e]! : e));
    return { headerRevision: 9n, events: evs };
  }),
  end: "cancelled",
  ...extra,
});

describe("the watch check", () => {
  it("accepts every change in order, resumed on another member after the last event", () => {
    const sessions = [session(1, [[2, 3], [4]]), session(5, [[5], [6]], { member: "m2" })];
    expect(checkWatches(sessions, changes, { catchUpTo: 6n })).toEqual([]);
  });

  it("accepts a session that ended early and one that got nothing", () => {
    const sessions = [session(3, [[3]]), session(4, []), session(4, [[4, 5, 6]])];
    expect(checkWatches(sessions, changes, { catchUpTo: 6n })).toEqual([]);
  });

  it("names a missing change once, and checks the session on from the event after the gap", () => {
    expect(checkWatches([session(1, [[2], [4]])], changes)).toEqual([
      expect.stringMatching(/got put a at revision 4, but the change at 3 \(put b\) is missing/),
    ]);
    const wrongAfterGap: WatchedEvent = { ...right[6]!, prev: kv("a", "2", 4, 2, 2) };
    const sessions = [session(1, [[2], [4]]), session(5, [[5, wrongAfterGap]])];
    expect(checkWatches(sessions, changes, { catchUpTo: 6n })).toEqual([
      expect.stringMatching(/got put a at revision 4, but the change at 3 \(put b\) is missing/),
      expect.stringMatching(/put a at revision 6 carried prev_kv a="2"/),
    ]);
  });

  it("names a repeated change, and one that comes before the start revision", () => {
    expect(checkWatches([session(1, [[2, 3], [3]])], changes)).toEqual([
      expect.stringMatching(/got put b at revision 3, but it is a repeat or out of order/),
    ]);
    expect(checkWatches([session(3, [[2]])], changes)).toEqual([
      expect.stringMatching(/from revision 3 .*got put a at revision 2/),
    ]);
  });

  it("names an event no change made", () => {
    const invented: WatchedEvent = { type: "put", kv: kv("c", "9", 7, 7, 1), prev: null };
    expect(checkWatches([session(6, [[6, invented]])], changes)).toEqual([
      expect.stringMatching(/got put c at revision 7, but no change is there/),
    ]);
  });

  it("names a wrong value, version or create revision, and a deletion's leftovers", () => {
    const wrongVersion: WatchedEvent = { ...right[4]!, kv: kv("a", "2", 4, 2, 1) };
    const wrongCreate: WatchedEvent = { ...right[6]!, kv: kv("a", "3", 6, 2, 3) };
    const fullDelete: WatchedEvent = { ...right[5]!, kv: kv("a", "2", 5, 2, 2) };
    const problems = checkWatches([session(4, [[wrongVersion, fullDelete, wrongCreate]])], changes);
    expect(problems).toEqual([
      expect.stringMatching(
        /put at revision 4 carried a="2" \(mod 4, create 2, version 1\); the change made put a="2" \(mod 4, create 2, version 2\)/,
      ),
      expect.stringMatching(/delete at revision 5 carried a="2"/),
      expect.stringMatching(
        /put at revision 6 carried a="3" \(mod 6, create 2, version 3\); the change made put a="3" \(mod 6, create 6, version 1\)/,
      ),
    ]);
  });

  it("names a wrong or missing prev_kv, and one on a new key", () => {
    const stalePrev: WatchedEvent = { ...right[4]!, prev: kv("a", "0", 1, 1, 1) };
    const noPrev: WatchedEvent = { ...right[5]!, prev: null };
    const prevOfDeleted: WatchedEvent = { ...right[6]!, prev: kv("a", "2", 4, 2, 2) };
    expect(checkWatches([session(4, [[stalePrev], [noPrev], [prevOfDeleted]])], changes)).toEqual([
      expect.stringMatching(/put a at revision 4 carried prev_kv a="0".*before it the key was a="1" \(mod 2/),
      expect.stringMatching(/delete a at revision 5 carried prev_kv none; before it the key was a="2"/),
      expect.stringMatching(/put a at revision 6 carried prev_kv a="2".*before it the key was none/),
    ]);
  });

  it("names a header revision below its events, and a revision split over two responses", () => {
    const low = session(2, [[2]]);
    const lowHeader = { ...low, responses: [{ headerRevision: 1n, events: low.responses[0]!.events }] };
    expect(checkWatches([lowHeader], changes)).toEqual([
      expect.stringMatching(/event at revision 2 came in a response whose header says 1/),
    ]);
    const txn: Change[] = [
      { revision: 2n, key: "a", type: "put", value: "1" },
      { revision: 2n, key: "b", type: "put", value: "1" },
    ];
    const a: WatchedEvent = { type: "put", kv: kv("a", "1", 2, 2, 1), prev: null };
    const b: WatchedEvent = { type: "put", kv: kv("b", "1", 2, 2, 1), prev: null };
    expect(checkWatches([session(1, [[a, b]])], txn)).toEqual([]);
    expect(checkWatches([session(1, [[a], [b]])], txn)).toEqual([
      expect.stringMatching(/response 0 ended inside revision 2, before b's event/),
    ]);
    // Cut at the end of a session, and resumed after it: the rest of the revision is lost.
    const cut = [session(1, [[a]]), session(3, [])];
    expect(checkWatches(cut, txn, { catchUpTo: 2n })).toEqual([
      expect.stringMatching(/response 0 ended inside revision 2, before b's event/),
    ]);
  });

  it("names a watcher that never had a session", () => {
    expect(checkWatches([session(1, [[2, 3, 4, 5, 6]])], changes, { catchUpTo: 6n, watchers: 2 })).toEqual([
      "watcher 1 has no session: no member ever took its watch",
    ]);
  });

  it("names a resumption at the wrong revision, and a watcher that stopped short", () => {
    const skipped = [session(1, [[2, 3]]), session(5, [[5]])];
    expect(checkWatches(skipped, changes)).toEqual([
      expect.stringMatching(/started at 5, not at 4, the revision after its last event/),
    ]);
    expect(checkWatches([session(1, [[2, 3]], { end: "still open" })], changes, { catchUpTo: 6n })).toEqual([
      expect.stringMatching(
        /watcher 0 stopped short: .*ended: still open\) got events up to revision 3, the last change is at 6/,
      ),
    ]);
  });

  it("accepts a watch cancelled as compacted above its next revision, resumed from the compact revision", () => {
    const compactions = [{ revision: 5n, invokedAt: 0 }];
    const sessions = [
      session(1, [[2]], { compactRevision: 5n }),
      session(5, [[5], [6]], { member: "m2", end: "still open" }),
    ];
    expect(checkWatches(sessions, changes, { catchUpTo: 6n, compactions })).toEqual([]);
  });

  it("names a cancellation at a revision nobody compacted to, or one the watch had not passed, and a wrong resumption", () => {
    const compactions = [{ revision: 3n, invokedAt: 0 }];
    expect(checkWatches([session(1, [[2]], { compactRevision: 4n })], changes, { compactions })).toEqual([
      expect.stringMatching(/cancelled as compacted at 4, a revision no compaction had asked for/),
    ]);
    expect(checkWatches([session(1, [[2, 3]], { compactRevision: 3n })], changes, { compactions })).toEqual([
      expect.stringMatching(/cancelled as compacted at 3, but its next revision 4 is still there/),
    ]);
    const tooEarly = [session(1, [[2]], { compactRevision: 3n, cancelledAt: -1 })];
    expect(checkWatches(tooEarly, changes, { compactions })).toEqual([
      expect.stringMatching(/cancelled as compacted at 3, a revision no compaction had asked for/),
    ]);
    const resumedAfterIt = [session(1, [], { compactRevision: 3n }), session(4, [[4]])];
    expect(checkWatches(resumedAfterIt, changes, { compactions })).toEqual([
      expect.stringMatching(/started at 4, not at 3/),
    ]);
  });

  it("accepts a missing prev_kv only where a compaction at or above the event was asked for before it came", () => {
    const noPrev: WatchedEvent = { ...right[4]!, prev: null };
    const at = (receivedAt: number): WatchSession => ({
      ...session(4, [[noPrev]]),
      responses: [{ headerRevision: 9n, events: [noPrev], receivedAt }],
    });
    const compactions = [{ revision: 4n, invokedAt: 10 }];
    expect(checkWatches([at(11)], changes, { compactions })).toEqual([]);
    expect(checkWatches([at(9)], changes, { compactions })).toEqual([
      expect.stringMatching(/put a at revision 4 carried prev_kv none; before it the key was a="1"/),
    ]);
    expect(checkWatches([at(11)], changes, { compactions: [{ revision: 3n, invokedAt: 0 }] })).toEqual([
      expect.stringMatching(/put a at revision 4 carried prev_kv none/),
    ]);
  });
});
