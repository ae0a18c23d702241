// The compaction fault test's checks (support/compaction-check.ts), on records written by hand: they
// accept what a correct server does and name what is wrong in each of the others.
import { describe, expect, it } from "vitest";
import {
  type CompactRecord,
  checkChanges,
  checkCompactions,
  checkReads,
  type PutRecord,
  type ReadRecord,
} from "./support/compaction-check.js";
import type { Change } from "./support/linearizability.js";
import { kvOf, type WatchedKv } from "./support/watch-check.js";

// a=x at 2, b=y at 3, a=z at 4.
const changes: Change[] = [
  { revision: 2n, key: "a", type: "put", value: "x" },
  { revision: 3n, key: "b", type: "put", value: "y" },
  { revision: 4n, key: "a", type: "put", value: "z" },
];
const kv = kvOf;
const put = (
  key: string,
  value: string,
  at: number,
  revision?: number,
  prev: WatchedKv | null = null,
): PutRecord => ({
  key,
  value,
  by: "m1",
  invokedAt: at,
  ...(revision === undefined ? {} : { answer: { returnedAt: at + 1, revision: BigInt(revision), prev } }),
});
const puts = [put("a", "x", 0, 2), put("b", "y", 2, 3), put("a", "z", 4, 4, kv("a", "x", 2, 2, 1))];
const compaction = (revision: number, at: number, outcome: CompactRecord["outcome"]): CompactRecord => ({
  revision: BigInt(revision),
  physical: false,
  by: "m1",
  invokedAt: at,
  returnedAt: at + 1,
  outcome,
});
const read = (
  revision: number,
  at: number,
  outcome: ReadRecord["outcome"],
  serializable = false,
  key = "a",
  by = "m1",
): ReadRecord => ({
  by,
  key,
  revision: BigInt(revision),
  serializable,
  invokedAt: at,
  returnedAt: at + 1,
  outcome,
});

describe("the compaction checks", () => {
  it("accept changes that match the acknowledged puts, with an unanswered put that did not happen", () => {
    expect(checkChanges(changes, [...puts, put("b", "lost", 6)])).toEqual([]);
  });

  it("name a missing revision, an invented value, a repeat, a lost put and a wrong prev_kv", () => {
    expect(checkChanges([changes[0]!, changes[2]!], puts)).toEqual([
      expect.stringMatching(/change 1 is at revision 4, where revision 3 was next/),
      expect.stringMatching(/put of b="y" acknowledged at revision 3 is not among the changes/),
    ]);
    const invented = [...changes, { revision: 5n, key: "a", type: "put" as const, value: "?" }];
    expect(checkChanges(invented, puts)).toEqual([
      expect.stringMatching(/revision 5 is put a="\?", which no writer sent/),
    ]);
    const twice = [...changes, { revision: 5n, key: "a", type: "put" as const, value: "x" }];
    expect(checkChanges(twice, puts)).toEqual([expect.stringMatching(/revision 5 writes "x" a second time/)]);
    const wrongPrev = [puts[0]!, puts[1]!, put("a", "z", 4, 4, null)];
    expect(checkChanges(changes, wrongPrev)).toEqual([
      expect.stringMatching(
        /put of a="z" acknowledged at revision 4 gave prev_kv none; before it the key was a="x"/,
      ),
    ]);
  });

  it("accept compactions refused after one at or above them, and name refusals without one", () => {
    const right = [
      compaction(3, 0, "ok"),
      compaction(2, 5, "compacted"),
      compaction(4, 10, "unknown"),
      compaction(4, 10.5, "compacted"),
    ];
    expect(checkCompactions(right)).toEqual([]);
    expect(checkCompactions([compaction(3, 0, "ok"), compaction(4, 5, "compacted")])).toEqual([
      expect.stringMatching(/compaction at 4 .* was refused as compacted, and no compaction at or above it/),
    ]);
    expect(
      checkCompactions([compaction(3, 0, "ok"), compaction(3, 5, "ok"), compaction(9, 9, "future")]),
    ).toEqual([
      expect.stringMatching(/compaction at 3 .* was acknowledged after the one at 3 had been/),
      expect.stringMatching(/compaction at 9 .* was refused as a future revision/),
    ]);
  });

  it("accept reads of the key as it stood, and refusals below a compaction asked for", () => {
    const compactions = [compaction(4, 10, "ok")];
    const reads = [
      read(3, 0, { kv: kv("a", "x", 2, 2, 1), headerRevision: 4n }),
      read(4, 20, { kv: kv("a", "z", 4, 2, 2), headerRevision: 4n }),
      read(3, 5, { kv: null, headerRevision: 3n }, false, "c"),
      read(3, 10, "compacted"),
      read(3, 20, { kv: kv("a", "x", 2, 2, 1), headerRevision: 4n }, true, "a", "m2"), // a member behind
      read(4, 20, "future", true, "a", "m2"),
      read(9, 20, "future", true),
      read(9, 20, "future"),
    ];
    expect(checkReads(reads, changes, compactions, puts)).toEqual([]);
  });

  it("name a wrong key-value, a refusal without a compaction, an answer after one and a wrong future", () => {
    const compactions = [compaction(4, 10, "ok")];
    const reads = [
      read(3, 0, { kv: kv("a", "z", 4, 2, 2), headerRevision: 4n }),
      read(3, 5, "compacted"),
      read(3, 20, { kv: kv("a", "x", 2, 2, 1), headerRevision: 4n }),
      read(3, 20, "future"),
    ];
    expect(checkReads(reads, changes, compactions, puts)).toEqual([
      expect.stringMatching(/linearizable read of a at revision 3 .* gave a="z" .*; at 3 it was a="x"/),
      expect.stringMatching(/read of a at revision 3 .* was refused as compacted, and no compaction above 3/),
      expect.stringMatching(
        /read of a at revision 3 .* was answered, though the compaction at 4 had been acknowledged/,
      ),
      expect.stringMatching(
        /read of a at revision 3 .* was refused as a future revision, though a put had been acknowledged at 3/,
      ),
    ]);
  });

  it("hold a serializable read to what the member serving it had acknowledged before", () => {
    const compactions = [compaction(4, 10, "ok")];
    const reads = [
      read(3, 20, { kv: kv("a", "x", 2, 2, 1), headerRevision: 4n }, true),
      read(4, 20, "future", true),
    ];
    expect(checkReads(reads, changes, compactions, puts)).toEqual([
      expect.stringMatching(
        /serializable read of a at revision 3 by m1 .* was answered, though the compaction at 4 had been acknowledged before it by the same member/,
      ),
      expect.stringMatching(
        /serializable read of a at revision 4 by m1 .* was refused as a future revision, though a put had been acknowledged at 4 by the same member/,
      ),
    ]);
  });
});
