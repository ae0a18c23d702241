// Unit tests of the small pure modules of the core: quorum arithmetic, progress and inflights,
// the log with its unstable tail, the memory store, the conf change codec, ReadIndex batching.
import { describe, expect, it } from "vitest";
import { decodeConfChange, encodeConfChange } from "./conf-change-codec.js";
import { CompactedError } from "./errors.js";
import { MemoryStorage } from "./memory-storage.js";
import { Progress } from "./progress.js";
import { majorityIndex, VoteResult, voteResult } from "./quorum.js";
import { RaftLog } from "./raft-log.js";
import { ReadOnly } from "./read-only.js";
import { ConfChangeType, type Entry, EntryType } from "./types.js";

const ent = (index: bigint, term: bigint, data = ""): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new TextEncoder().encode(data),
});

describe("quorum", () => {
  it("commits the index a majority has reached", () => {
    // Proves the majority index is the median of sorted matches, and 0 for an empty config.
    const matches = new Map([
      [1n, 5n],
      [2n, 3n],
      [3n, 9n],
    ]);
    expect(majorityIndex(new Set([1n, 2n, 3n]), (id) => matches.get(id) ?? 0n)).toBe(5n);
    expect(majorityIndex(new Set([1n, 2n, 3n, 4n]), (id) => matches.get(id) ?? 0n)).toBe(3n);
    expect(majorityIndex(new Set(), () => 7n)).toBe(0n);
  });

  it("agrees with sorting the matches, for every configuration size up to 9", () => {
    // Proves the in-place insertion sort picks the same index as sorting a copy, across sizes and
    // repeated calls (the scratch space is reused), ties and zero matches included.
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed;
    };
    for (let round = 0; round < 500; round++) {
      const n = 1 + (round % 9);
      const matches = new Map<bigint, bigint>();
      for (let id = 1n; id <= BigInt(n); id++) matches.set(id, BigInt(next() % 6));
      const sorted = [...matches.values()].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
      expect(majorityIndex(new Set(matches.keys()), (id) => matches.get(id)!)).toBe(
        sorted[Math.floor(n / 2)],
      );
    }
  });

  it("decides a vote as soon as the outcome is certain", () => {
    // Proves won/lost/pending over partial answers.
    const voters = new Set([1n, 2n, 3n]);
    expect(voteResult(voters, new Map([[1n, true]]))).toBe(VoteResult.Pending);
    expect(
      voteResult(
        voters,
        new Map([
          [1n, true],
          [2n, true],
        ]),
      ),
    ).toBe(VoteResult.Won);
    expect(
      voteResult(
        voters,
        new Map([
          [1n, false],
          [2n, false],
        ]),
      ),
    ).toBe(VoteResult.Lost);
  });
});

describe("progress", () => {
  it("bounds the pipeline by the inflight window and frees it on acknowledgement", () => {
    // Proves replicate state pauses when inflightMsgsMax Apps are unacknowledged.
    const pr = new Progress(1n, 2, false);
    pr.maybeUpdate(0n);
    pr.becomeReplicate();
    pr.sentEntries(3n, 3, 30);
    pr.sentEntries(5n, 2, 20);
    expect(pr.isPaused()).toBe(true);
    pr.maybeUpdate(3n);
    pr.inflights.freeLE(3n);
    expect(pr.isPaused()).toBe(false);
    expect(pr.next).toBe(6n);
  });

  it("bounds the pipeline by bytes too, and always lets one message through an empty window", () => {
    // Proves the inflightBytesMax bound: full at the byte bound, freed by acknowledgements.
    const pr = new Progress(1n, 100, false, 1000);
    pr.maybeUpdate(0n);
    pr.becomeReplicate();
    pr.sentEntries(2n, 2, 600);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(3n, 1, 500);
    expect(pr.isPaused()).toBe(true);
    expect(pr.inflights.bytes).toBe(1100);
    pr.inflights.freeLE(2n);
    expect(pr.inflights.bytes).toBe(500);
    expect(pr.isPaused()).toBe(false);
    pr.inflights.freeLE(3n);
    pr.sentEntries(4n, 1, 5000);
    expect(pr.isPaused()).toBe(true);
    pr.inflights.freeFirstOne();
    expect(pr.inflights.bytes).toBe(0);
  });

  it("backs off to the follower's hint in probe state and ignores stale rejections", () => {
    // Proves maybeDecrTo uses the hint and refuses a rejection of an old probe.
    const pr = new Progress(10n, 4, false);
    expect(pr.maybeDecrTo(9n, 4n)).toBe(true);
    expect(pr.next).toBe(5n);
    expect(pr.maybeDecrTo(9n, 2n)).toBe(false);
  });
});

describe("raft log", () => {
  it("truncates a conflicting uncommitted suffix and finds the conflict by term", () => {
    // Proves maybeAppend replaces conflicting entries and findConflictByTerm skips a whole term.
    const storage = new MemoryStorage({ voters: [1n] });
    storage.append([ent(1n, 1n), ent(2n, 1n), ent(3n, 2n), ent(4n, 2n)]);
    const log = new RaftLog(storage, 1n, 0n);
    expect(log.maybeAppend(2n, 1n, 3n, [ent(3n, 3n, "new")])).toBe(3n);
    expect(log.lastIndex()).toBe(3n);
    expect(log.term(3n)).toBe(3n);
    expect(log.committed).toBe(3n);
    expect(log.findConflictByTerm(3n, 2n)).toEqual({ index: 2n, term: 1n });
    expect(log.maybeAppend(3n, 2n, 3n, [])).toBeUndefined();
  });

  it("only commits entries of the given term", () => {
    // Proves maybeCommit refuses to commit an index whose entry is from another term.
    const storage = new MemoryStorage({ voters: [1n] });
    storage.append([ent(1n, 1n), ent(2n, 2n)]);
    const log = new RaftLog(storage, 0n, 0n);
    expect(log.maybeCommit(1n, 2n)).toBe(false);
    expect(log.maybeCommit(2n, 2n)).toBe(true);
    expect(log.committed).toBe(2n);
  });
});

describe("memory storage", () => {
  it("compacts behind a snapshot and reports compacted reads", () => {
    // Proves entries at or below the compaction point throw CompactedError and terms stay known.
    const s = new MemoryStorage({ voters: [1n] });
    s.append([ent(1n, 1n, "a"), ent(2n, 1n, "b"), ent(3n, 2n, "c")]);
    s.createSnapshot(2n, { voters: [1n], learners: [] }, new Uint8Array([1]));
    s.compact(2n);
    expect(s.firstIndex()).toBe(3n);
    expect(s.term(2n)).toBe(1n);
    expect(() => s.entries(2n, 3n, 100)).toThrow(CompactedError);
    expect(s.entries(3n, 4n, 100).map((e) => e.index)).toEqual([3n]);
    expect(s.clone().lastIndex()).toBe(3n);
  });

  it("returns at least one entry even when it exceeds the byte bound", () => {
    // Proves the maxBytes rule: truncate, but never to nothing.
    const s = new MemoryStorage();
    s.append([ent(1n, 1n, "xxxx"), ent(2n, 1n, "yy")]);
    expect(s.entries(1n, 3n, 1).length).toBe(1);
    expect(s.entries(1n, 3n, 6).length).toBe(2);
  });
});

describe("conf change codec", () => {
  it("round-trips and rejects malformed data with a clear error", () => {
    // Proves encode/decode are inverse and truncated input names the problem.
    const cc = {
      type: ConfChangeType.AddLearnerNode,
      nodeId: 2n ** 63n + 5n,
      context: new Uint8Array([7, 8]),
    };
    expect(decodeConfChange(encodeConfChange(cc))).toEqual(cc);
    expect(() => decodeConfChange(new Uint8Array([1, 0]))).toThrow(/at least/);
  });
});

describe("read-only", () => {
  it("releases every read queued before the confirmed one", () => {
    // Proves ReadIndex batching: confirming the last context releases the earlier ones too.
    const ro = new ReadOnly(16);
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(ro.addRequest(5n, 1n, enc("a"))).toBe(true);
    expect(ro.addRequest(6n, 1n, enc("b"))).toBe(true);
    expect(ro.addRequest(6n, 1n, enc("b"))).toBe(false);
    expect(ro.advance(enc("b")).map((r) => r.index)).toEqual([5n, 6n]);
    expect(ro.size).toBe(0);
  });
});
