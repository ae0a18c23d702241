import { describe, expect, it } from "vitest";
import { formatId, formatId16 } from "./format.js";

describe("member IDs as etcdctl prints them", () => {
  it("uses %x in lists and %16x in the member add/remove/update lines", () => {
    // Proves IDs with leading zero digits print as etcdctl prints them, not zero-padded.
    expect(formatId(0x0abcdef012345678n)).toBe("abcdef012345678");
    expect(formatId(0xffffffffffffffffn)).toBe("ffffffffffffffff");
    expect(formatId16(0x0abcdef012345678n)).toBe(" abcdef012345678");
    expect(formatId16(0x8e9e05c52164694dn)).toBe("8e9e05c52164694d");
  });
});
