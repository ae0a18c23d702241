import { describe, expect, it } from "vitest";
import { deriveClusterId, deriveMemberId, formatId, parseId } from "./ids.js";

describe("member IDs", () => {
  it("derives the same non-zero uint64 for the same token and name, and different ones otherwise", () => {
    // Proves IDs are deterministic (every member computes the same ID for a name) and distinct.
    const a = deriveMemberId("tok", "n1");
    expect(a).toBe(deriveMemberId("tok", "n1"));
    expect(a).not.toBe(deriveMemberId("tok", "n2"));
    expect(a).not.toBe(deriveMemberId("other", "n1"));
    for (const id of [a, deriveMemberId("", "")]) {
      expect(id > 0n && id < 1n << 64n).toBe(true);
    }
  });

  it("matches the first 8 bytes of sha256(token NUL name)", async () => {
    // Proves the documented derivation, so other tools can compute a member's ID.
    const { createHash } = await import("node:crypto");
    const digest = createHash("sha256").update("photoncloud-cluster\0n1").digest();
    expect(deriveMemberId("photoncloud-cluster", "n1")).toBe(digest.readBigUInt64BE(0));
  });

  it("derives the cluster ID from the set of initial members, whatever their order", () => {
    // Proves members listing --initial-cluster in any order agree on the cluster ID.
    const ids = [3n, 1n, 2n];
    expect(deriveClusterId("tok", ids)).toBe(deriveClusterId("tok", [1n, 2n, 3n]));
    expect(deriveClusterId("tok", ids)).not.toBe(deriveClusterId("tok", [1n, 2n]));
    expect(deriveClusterId("tok", ids)).not.toBe(deriveClusterId("tok2", ids));
  });

  it("formats as 16 lower-case hex digits and parses hex, 0x-hex and decimal back", () => {
    // Proves round trips of the etcd-style ID text, including the full uint64 range.
    const max = (1n << 64n) - 1n;
    expect(formatId(0x8e9e05c52164694dn)).toBe("8e9e05c52164694d");
    expect(formatId(1n)).toBe("0000000000000001");
    expect(formatId(max)).toBe("ffffffffffffffff");
    expect(parseId("8e9e05c52164694d")).toBe(0x8e9e05c52164694dn);
    expect(parseId("0x8E9E05C52164694D")).toBe(0x8e9e05c52164694dn);
    expect(parseId(formatId(1n))).toBe(1n);
    expect(parseId("ffffffffffffffff")).toBe(max);
    expect(parseId("18446744073709551615")).toBe(max);
    expect(parseId("42")).toBe(42n);
    expect(parseId("abc")).toBe(0xabcn);
    expect(() => formatId(-1n)).toThrow(RangeError);
  });

  it("refuses text that is not a non-zero uint64, saying what is accepted", () => {
    // Proves bad IDs get a message with the accepted forms instead of a wrong value.
    for (const bad of ["", "0", "0x0", "xyz", "18446744073709551616", "0x1ffffffffffffffff", "-1", "12 34"]) {
      expect(() => parseId(bad), bad).toThrow(/not a member ID \(expected a non-zero uint64 in hex/);
    }
  });
});
