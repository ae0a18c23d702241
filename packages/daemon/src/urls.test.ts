import { describe, expect, it } from "vitest";
import { grpcBindAddress, parseUrl, parseUrlList } from "./urls.js";

describe("parseUrlList", () => {
  it("parses etcd-style comma-separated lists, IPv6 and port 0", () => {
    // Proves the accepted forms and the normalised href / bind address of each.
    const urls = parseUrlList("http://127.0.0.1:2379, https://[::1]:0,http://node-1.example:80");
    expect(urls.map((u) => u.href)).toEqual([
      "http://127.0.0.1:2379",
      "https://[::1]:0",
      "http://node-1.example:80",
    ]);
    expect(urls.map((u) => u.tls)).toEqual([false, true, false]);
    expect(urls.map(grpcBindAddress)).toEqual(["127.0.0.1:2379", "[::1]:0", "node-1.example:80"]);
    expect(parseUrlList(["http://127.0.0.1:1", "http://127.0.0.1:2"])).toHaveLength(2);
  });

  it.each([
    ["http//127.0.0.1:2379", "has no scheme (start it with http:// or https://)"],
    ["127.0.0.1:2379", "has no scheme (start it with http:// or https://)"],
    ["unix:///tmp/s", 'has scheme "unix", expected http or https'],
    ["http://127.0.0.1", "has no port"],
    ["http://127.0.0.1:2379/v3", 'must not contain a path ("/v3")'],
    ["http://127.0.0.1:2379/", "must not end with /"],
    ["http://u:p@127.0.0.1:2379", "must not contain credentials"],
    ["http://127.0.0.1:2379?x=1", "must not contain a query or fragment"],
    ["http://127.0.0.1:99999", "is not a URL"],
    ["http://bad_host!:1", "has an invalid host"],
  ])("refuses %s", (text, problem) => {
    // Proves each malformed form is refused with a message saying what is wrong and the expected form.
    expect(() => parseUrl(text)).toThrow(
      `"${text}" ${problem} (expected scheme://host:port, e.g. http://127.0.0.1:2379)`,
    );
  });

  it("refuses empty lists and duplicates", () => {
    // Proves an empty value or a URL listed twice is an error rather than a silent no-op.
    expect(() => parseUrlList(" , ")).toThrow("is empty");
    expect(() => parseUrlList("http://127.0.0.1:1,http://127.0.0.1:1")).toThrow(
      "lists http://127.0.0.1:1 twice",
    );
  });
});
