// Proves the admin-token comparison accepts exactly the configured token: not a prefix, an extension, another token of the same length, or anything when none is configured.
import { describe, expect, it } from "vitest";
import { adminTokenMatcher } from "../src/index.js";

describe("admin token matcher", () => {
  it("accepts only the configured token", () => {
    const matches = adminTokenMatcher("s3cret-admin-tøken");
    expect(matches("s3cret-admin-tøken")).toBe(true);
    for (const other of [
      "",
      "s3cret-admin-tøke",
      "s3cret-admin-tøkenX",
      "s3cret-admin-tøkeN",
      "s3cret-admin-toeken",
    ])
      expect(matches(other)).toBe(false);
  });

  it("refuses a token of the right length that equals the decoy", () => {
    const matches = adminTokenMatcher("\0\0\0\0");
    expect(matches("\0\0\0\0")).toBe(true);
    expect(matches("\0\0\0")).toBe(false);
    expect(matches("\0\0\0\0\0")).toBe(false);
  });

  it("refuses everything when no admin token is configured", () => {
    expect(adminTokenMatcher(null)("")).toBe(false);
    expect(adminTokenMatcher(null)("anything")).toBe(false);
  });
});
