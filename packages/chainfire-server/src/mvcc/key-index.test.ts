import { describe, expect, it } from "vitest";
import { KeyIndex, KeyRecord } from "./key-index.js";

/** The record's history as plain tuples, oldest first. */
function history(record: KeyRecord): [bigint, number, boolean][] {
  return Array.from({ length: record.length }, (_, i) => [
    record.main(i),
    record.sub(i),
    record.tombstone(i),
  ]);
}

describe("KeyRecord", () => {
  it("keeps every entry of a long history, tombstones and sub-revisions included", () => {
    const record = new KeyRecord("k");
    const expected: [bigint, number, boolean][] = [];
    for (let i = 0; i < 1000; i++) {
      const entry: [bigint, number, boolean] = [BigInt(2 + 3 * i), i % 5, i % 7 === 6];
      record.push(...entry);
      expected.push(entry);
    }
    expect(history(record)).toEqual(expected);
  });

  it("holds revisions up to the largest int64 and sub-revision 0 as a tombstone", () => {
    const record = new KeyRecord("k");
    const max = 2n ** 63n - 1n;
    record.push(max - 1n, 0, true);
    record.push(max, 2 ** 31 - 1, false);
    expect(history(record)).toEqual([
      [max - 1n, 0, true],
      [max, 2 ** 31 - 1, false],
    ]);
  });

  it("finds the entry visible at a revision", () => {
    const record = new KeyRecord("k");
    record.push(5n, 0, false);
    record.push(9n, 0, false);
    record.push(9n, 3, true);
    record.push(12n, 1, false);
    expect([4n, 5n, 8n, 9n, 11n, 12n, 99n].map((r) => record.indexAt(r))).toEqual([-1, 0, 0, 2, 2, 3, 3]);
    expect(new KeyRecord("empty").indexAt(1n)).toBe(-1);
  });

  it("drops the oldest entries on compaction and keeps appending after", () => {
    const record = new KeyRecord("k");
    for (let i = 0; i < 100; i++) record.push(BigInt(10 + i), 0, false);
    record.dropOldest(97);
    expect(history(record)).toEqual([
      [107n, 0, false],
      [108n, 0, false],
      [109n, 0, false],
    ]);
    record.push(200n, 1, true);
    expect(record.length).toBe(4);
    expect(history(record).at(-1)).toEqual([200n, 1, true]);
    expect(record.indexAt(150n)).toBe(2);
    record.dropOldest(4);
    expect(record.length).toBe(0);
    expect(record.indexAt(300n)).toBe(-1);
  });
});

describe("KeyIndex", () => {
  it("creates one record per key and scans them in byte order", () => {
    const index = new KeyIndex();
    for (const key of ["b", "a", "c", "a"]) index.getOrCreate(key).push(1n, 0, false);
    expect(index.size).toBe(3);
    expect(index.get("a")?.length).toBe(2);
    expect([...index.all()].map((r) => r.key)).toEqual(["a", "b", "c"]);
    index.remove("b");
    expect([...index.all()].map((r) => r.key)).toEqual(["a", "c"]);
  });
});
