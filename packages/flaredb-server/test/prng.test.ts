import { describe, expect, it } from "vitest";
import { isoTime, SeededPrng } from "../src/sql/determinism.js";

describe("SeededPrng", () => {
  it("is a pure function of the seed, and every seed bit matters from the first draw", () => {
    // Proves members with the same entry seed draw the same values, and nearby seeds do not collide.
    const draw = (seed: bigint) => {
      const p = new SeededPrng(seed);
      return [p.nextInt64(), p.nextInt64(), p.bytes(7).toString("hex")];
    };
    expect(draw(123n)).toEqual(draw(123n));
    const firsts = new Set<bigint>();
    for (const seed of [0n, 1n, 1n << 32n, 1n << 63n, (1n << 64n) - 1n, 2n, 3n << 40n]) {
      firsts.add(new SeededPrng(seed).nextInt64());
    }
    expect(firsts.size).toBe(7);
    expect(new SeededPrng(5n).bytes(7)).toHaveLength(7);
  });

  it("formats entry time the way SQLite formats 'now' (UTC, milliseconds)", () => {
    // Proves the text substituted for 'now' is exact to the millisecond.
    expect(isoTime(Date.UTC(2030, 11, 31, 23, 59, 58, 7))).toBe("2030-12-31 23:59:58.007");
  });
});
