// Proves the in-memory entry tail keeps a contiguous suffix of the log within its bounds.
import { describe, expect, it } from "vitest";
import type { Entry } from "../core/types.js";
import { EntryTail } from "./entry-tail.js";

const ents = (from: number, n: number, term = 1n, bytes = 1): Entry[] =>
  Array.from({ length: n }, (_, i) => ({
    index: BigInt(from + i),
    term,
    type: 0 as const,
    data: new Uint8Array(bytes),
  }));

describe("EntryTail", () => {
  it("appends, truncates a conflicting suffix and restarts after a gap", () => {
    // Proves append/truncate keep the tail contiguous and ending at the newest entry.
    const t = new EntryTail(100, 1 << 20);
    t.append(ents(5, 5));
    expect([t.firstIndex, t.length]).toEqual([5n, 5]);
    t.append(ents(8, 3, 2n));
    expect([t.firstIndex, t.length, t.at(8n).term, t.at(10n).term]).toEqual([5n, 6, 2n, 2n]);
    t.append(ents(20, 2));
    expect([t.firstIndex, t.length]).toEqual([20n, 2]);
    t.append(ents(19, 1, 3n));
    expect(t.length).toBe(1);
    expect(t.has(20n)).toBe(false);
  });

  it("drops compacted entries and stays within its bounds", () => {
    // Proves dropUpTo and the entry and byte bounds.
    const t = new EntryTail(8, 1 << 20);
    t.append(ents(1, 20));
    expect(t.length).toBeLessThanOrEqual(8);
    expect(t.has(20n)).toBe(true);
    t.dropUpTo(18n);
    expect([t.firstIndex, t.length]).toEqual([19n, 2]);
    const b = new EntryTail(1000, 100);
    b.append(ents(1, 10, 1n, 30));
    expect(b.length).toBeLessThanOrEqual(3);
    expect(b.has(10n)).toBe(true);
  });

  it("slices like the SQLite read: at least one entry, then what fits in maxBytes", () => {
    // Proves slice's byte limit semantics.
    const t = new EntryTail(100, 1 << 20);
    t.append(ents(1, 5, 1n, 10));
    expect(t.slice(2n, 6n, 0).map((e) => e.index)).toEqual([2n]);
    expect(t.slice(2n, 6n, 25).map((e) => e.index)).toEqual([2n, 3n]);
    expect(t.slice(2n, 4n, 1000).map((e) => e.index)).toEqual([2n, 3n]);
  });
});
