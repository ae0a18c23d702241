import { describe, expect, it } from "vitest";
import { formatId, formatId16, humanBytes, renderTable } from "./format.js";
import { took } from "./commands/endpoint.js";

describe("member IDs as etcdctl prints them", () => {
  it("uses %x in lists and %16x in the member add/remove/update lines", () => {
    // Proves IDs with leading zero digits print as etcdctl prints them, not zero-padded.
    expect(formatId(0x0abcdef012345678n)).toBe("abcdef012345678");
    expect(formatId(0xffffffffffffffffn)).toBe("ffffffffffffffff");
    expect(formatId16(0x0abcdef012345678n)).toBe(" abcdef012345678");
    expect(formatId16(0x8e9e05c52164694dn)).toBe("8e9e05c52164694d");
  });
});

describe("sizes as etcdctl prints them (go-humanize)", () => {
  it("rounds to one decimal, then an exact half to the even whole number, as Go's %.0f", () => {
    // Proves the case an etcd snapshot of 106,480 bytes showed: etcdctl prints "106 kB".
    expect(humanBytes(106_480)).toBe("106 kB");
    expect(humanBytes(106_550)).toBe("107 kB");
    expect(humanBytes(107_480)).toBe("108 kB");
    expect(humanBytes(106_449)).toBe("106 kB");
    expect(humanBytes(20_480)).toBe("20 kB");
    expect(humanBytes(9_940)).toBe("9.9 kB");
    expect(humanBytes(9_960)).toBe("10 kB");
    expect(humanBytes(2_500_000)).toBe("2.5 MB");
    expect(humanBytes(9)).toBe("9 B");
    expect(humanBytes(999)).toBe("999 B");
  });
});

describe("tables as etcdctl draws them", () => {
  it("puts a header's odd space of padding on its right, as Go's tablewriter", () => {
    // Proves the header line byte for byte against etcdctl 3.4's `member list -w table`, whose
    // STATUS, PEER ADDRS and IS LEARNER columns each leave an odd gap.
    const table = renderTable(
      ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"],
      [["4e95e8bf5c055843", "started", "x", "http://127.0.0.1:43380", "http://127.0.0.1:43379", "false"]],
    );
    expect(table.split("\n")).toEqual([
      "+------------------+---------+------+------------------------+------------------------+------------+",
      "|        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |",
      "+------------------+---------+------+------------------------+------------------------+------------+",
      "| 4e95e8bf5c055843 | started |    x | http://127.0.0.1:43380 | http://127.0.0.1:43379 |      false |",
      "+------------------+---------+------+------------------------+------------------------+------------+",
    ]);
  });
});

describe("durations as etcdctl prints them (Go's time.Duration)", () => {
  it("uses the largest fitting unit with Go's trimmed decimals", () => {
    // Proves `endpoint health`'s took = ... reads as etcdctl's: µs and ms below a second, then s, m, h.
    expect(took(0.8123)).toBe("812.3µs");
    expect(took(2.003966)).toBe("2.003966ms");
    expect(took(1500)).toBe("1.5s");
    expect(took(2003.966648)).toBe("2.003966648s");
    expect(took(62_500)).toBe("1m2.5s");
    expect(took(3_723_000)).toBe("1h2m3s");
  });
});
