// The linearizability check the fault test relies on (support/linearizability.ts), on histories
// written by hand: it accepts the linearizable ones and names what is wrong in each of the others.
import { describe, expect, it } from "vitest";
import {
  type Answer,
  type Change,
  check,
  checkSerializableReads,
  type Op,
  type SerializableRead,
} from "./support/linearizability.js";

let nextId = 0;
const op = (
  kind: Op["kind"],
  key: string,
  invokedAt: number,
  answer: (Omit<Answer, "revision" | "returnedAt"> & { revision: number; at: number }) | undefined,
  extra: { value?: string; expect?: number } = {},
): Op => ({
  id: nextId++,
  by: "w0 on m1",
  kind,
  key,
  invokedAt,
  ...(extra.value === undefined ? {} : { value: extra.value }),
  ...(extra.expect === undefined ? {} : { expectModRevision: BigInt(extra.expect) }),
  ...(answer === undefined
    ? {}
    : { answer: { ...answer, revision: BigInt(answer.revision), returnedAt: answer.at } }),
});
const put = (key: string, value: string, t0: number, rev?: number, t1 = t0 + 1) =>
  op("put", key, t0, rev === undefined ? undefined : { revision: rev, at: t1 }, { value });
const get = (key: string, t0: number, t1: number, rev: number, read: [string, number] | null) =>
  op("get", key, t0, {
    revision: rev,
    at: t1,
    read: read === null ? null : { value: read[0], modRevision: BigInt(read[1]) },
  });
const change = (revision: number, key: string, value: string | null): Change => ({
  revision: BigInt(revision),
  key,
  type: value === null ? "delete" : "put",
  value: value ?? "",
});

describe("the linearizability check", () => {
  it("accepts overlapping writes in either order, reads of either, and a failed write that took effect", () => {
    const ops = [
      put("a", "1", 0, 2, 10),
      put("a", "2", 1, 3, 9), // overlaps the first: its later revision is allowed
      get("a", 2, 8, 2, ["1", 2]), // concurrent with both
      get("a", 11, 12, 3, ["2", 3]),
      put("a", "3", 13), // failed, but made revision 4
      get("a", 14, 15, 4, ["3", 4]),
      op("del", "a", 16, { revision: 5, at: 17, deleted: 1 }),
      op("del", "a", 18, { revision: 5, at: 19, deleted: 0 }),
      op("cas", "a", 20, { revision: 6, at: 21, succeeded: true }, { value: "4", expect: 0 }),
      op(
        "cas",
        "a",
        22,
        { revision: 6, at: 23, succeeded: false, read: { value: "4", modRevision: 6n } },
        { value: "5", expect: 2 },
      ),
      put("a", "6", 24), // failed, and never took effect
    ];
    const changes = [change(2, "a", "1"), change(3, "a", "2"), change(4, "a", "3"), change(5, "a", null)];
    changes.push(change(6, "a", "4"));
    expect(check(ops, changes)).toEqual([]);
  });

  it("refuses a stale read: a read that began after a write returned misses it", () => {
    const ops = [put("a", "1", 0, 2, 1), put("a", "2", 2, 3, 3), get("a", 4, 5, 2, ["1", 2])];
    expect(check(ops, [change(2, "a", "1"), change(3, "a", "2")])).toEqual([
      expect.stringMatching(/^op \d+ \(get a.*began after op \d+ \(put a="2".*returned, but sits before it/),
    ]);
  });

  it("refuses a read whose answer is not the state at its revision", () => {
    const ops = [put("a", "1", 0, 2), get("a", 2, 3, 2, ["x", 2])];
    expect(check(ops, [change(2, "a", "1")])).toEqual([
      expect.stringMatching(/read "x" \(mod revision 2\) at revision 2, where the key held "1"/),
    ]);
  });

  it("refuses writes ordered against real time", () => {
    const ops = [put("a", "1", 0, 3, 1), put("a", "2", 2, 2, 3)];
    expect(check(ops, [change(2, "a", "2"), change(3, "a", "1")])).toEqual([
      expect.stringMatching(
        /put a="2".*began after op \d+ \(put a="1".*sits before it \(revision 2 < revision 3\)/,
      ),
    ]);
  });

  it("refuses a lost acknowledged write, one applied twice, and one nobody asked for", () => {
    expect(check([put("a", "1", 0, 2)], [])).toEqual([
      expect.stringMatching(/put a="1".*acknowledged at revision 2 but is not in the change list/),
    ]);
    expect(check([put("a", "1", 0)], [change(2, "a", "1"), change(3, "a", "1")])).toEqual([
      '"1" was written twice: at revisions 2 and 3',
    ]);
    expect(check([], [change(2, "a", "9"), change(3, "a", null)])).toEqual([
      'revision 2 put "9" on a, which no client wrote',
      "revision 3 deleted a, which no client asked for by then",
    ]);
  });

  it("refuses a compare-and-swap that succeeded when its compare did not hold, or failed when it did", () => {
    const wrong = [
      put("a", "1", 0, 2),
      op("cas", "a", 2, { revision: 3, at: 3, succeeded: true }, { value: "2", expect: 0 }),
    ];
    expect(check(wrong, [change(2, "a", "1"), change(3, "a", "2")])).toEqual([
      expect.stringMatching(
        /cas a="2" if mod revision 0.*wrote at revision 3, where its compare did not hold/,
      ),
    ]);
    const refused = [
      put("a", "1", 0, 2),
      op(
        "cas",
        "a",
        2,
        { revision: 2, at: 3, succeeded: false, read: { value: "1", modRevision: 2n } },
        { value: "2", expect: 2 },
      ),
    ];
    expect(check(refused, [change(2, "a", "1")])).toEqual([
      expect.stringMatching(/answered failed at revision 2, where its compare held/),
    ]);
  });

  it("matches a delete nobody was answered for only to a failed delete that could have made it", () => {
    const changes = [change(2, "a", "1"), change(3, "a", null), change(4, "a", "2")];
    const base = () => [put("a", "1", 0, 2, 1), put("a", "2", 5, 4, 6)];
    const failedDelete = (at: number) => op("del", "a", at, undefined);
    // Begun before revision 3 could have been passed: it may have made it.
    expect(check([...base(), failedDelete(2)], changes)).toEqual([]);
    // Begun after revision 4 had returned: it cannot have made revision 3.
    expect(check([...base(), failedDelete(10)], changes)).toEqual([
      "revision 3 deleted a, which no client asked for by then",
    ]);
    // One failed delete accounts for one change only.
    const twice = [...changes, change(5, "a", null)];
    expect(check([...base(), failedDelete(2)], twice)).toEqual([
      "revision 5 deleted a, which no client asked for by then",
    ]);
  });

  it("refuses a change list with a gap when every revision is the test's", () => {
    const ops = [put("a", "1", 0, 2), put("a", "2", 2, 4)];
    const changes = [change(2, "a", "1"), change(4, "a", "2")];
    expect(check(ops, changes)).toEqual([]);
    expect(check(ops, changes, { everyRevisionFrom: 2n })).toEqual([
      "the change list skips from revision 3 to 4",
    ]);
  });

  it("refuses a delete answered for a key that was absent", () => {
    const ops = [op("del", "a", 0, { revision: 2, at: 1, deleted: 1 })];
    expect(check(ops, [change(2, "a", null)])).toEqual([
      expect.stringMatching(/deleted at revision 2 a key that was absent/),
    ]);
  });
});

describe("the serializable-read check", () => {
  // a=1 at 2, a deleted at 3, a=2 at 4.
  const changes: Change[] = [
    { revision: 2n, key: "a", type: "put", value: "1" },
    { revision: 3n, key: "a", type: "delete", value: "" },
    { revision: 4n, key: "a", type: "put", value: "2" },
  ];
  const read = (
    revision: number,
    value: string | null,
    at: number,
    pid = 1,
    mod = revision,
  ): SerializableRead => ({
    by: "w0 on m1",
    member: "m1",
    pid,
    key: "a",
    invokedAt: at,
    returnedAt: at + 1,
    revision: BigInt(revision),
    read: value === null ? null : { value, modRevision: BigInt(mod) },
  });

  it("accepts stale reads of a state that existed, and a restarted member behind what it served before", () => {
    const reads = [
      read(2, "1", 0),
      read(3, null, 2),
      read(4, "2", 4),
      read(1, null, 6, 2),
      read(2, "1", 8, 2),
    ];
    expect(checkSerializableReads(reads, changes)).toEqual([]);
  });

  it("accepts overlapping reads on one process in either order of their revisions", () => {
    // The second began before the first returned: either may have been served first.
    const reads = [read(4, "2", 0), { ...read(3, null, 0.5), returnedAt: 2 }];
    expect(checkSerializableReads(reads, changes)).toEqual([]);
  });

  it("names a read that does not match its header revision, one past the last change, and one going back", () => {
    const reads = [read(3, "1", 0, 1, 2), read(5, "2", 2, 1, 4), read(4, "2", 4), read(2, "1", 6)];
    expect(checkSerializableReads(reads, changes)).toEqual([
      expect.stringMatching(
        /serializable get a .* read "1" \(mod revision 2\) at revision 3, where the key held nothing/,
      ),
      expect.stringMatching(/answered at revision 5, past the last change \(4\)/),
      expect.stringMatching(/answered at revision 4, after .* on the same process had answered at 5/),
      expect.stringMatching(/answered at revision 2, after .* on the same process had answered at 5/),
    ]);
  });
});
