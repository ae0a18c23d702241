import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import {
  DeterminismContext,
  installDeterministicFunctions,
  isoTime,
  SeededPrng,
} from "../src/sql/determinism.js";

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

  it("answers datetime/date/time of 'now' (CURRENT_TIMESTAMP & co.) exactly as SQLite's own functions", () => {
    // Proves the shortcut that formats 'now' without the builtin connection gives SQLite's text for
    // every kind of instant: whole and fractional seconds, .999, day, month, year and leap days.
    const db = new Database(":memory:");
    const builtin = new Database(":memory:");
    const reference = new Database(":memory:");
    let ctx = new DeterminismContext(0, 1n);
    installDeterministicFunctions(db, builtin, () => ctx);
    const prng = new SeededPrng(99n);
    const instants = [
      Date.UTC(2030, 11, 31, 23, 59, 59, 999),
      Date.UTC(2024, 1, 29, 12, 0, 0, 0),
      Date.UTC(1970, 0, 1, 0, 0, 0, 1),
      Date.UTC(2000, 0, 1, 0, 0, 0, 500),
      ...Array.from({ length: 200 }, () => Number(BigInt.asUintN(42, prng.nextInt64()))),
    ];
    const ours = db.prepare(
      "SELECT datetime('now'), date('now'), time('now'), datetime('NOW'), date(), time()",
    );
    const theirs = reference.prepare("SELECT datetime(?), date(?), time(?), datetime(?), date(?), time(?)");
    for (const ms of instants) {
      ctx = new DeterminismContext(ms, 1n);
      const got = ours.raw().get() as string[];
      const want = theirs.raw().get(...Array(6).fill(isoTime(ms))) as string[];
      expect(got).toEqual(want);
    }
    for (const d of [db, builtin, reference]) d.close();
  });
});
