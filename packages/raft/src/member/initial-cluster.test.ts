import { ConfigError } from "@photoncloud/daemon";
import { describe, expect, it } from "vitest";
import { deriveMemberId } from "./ids.js";
import { parseInitialCluster } from "./initial-cluster.js";

describe("parseInitialCluster", () => {
  it("parses name=url pairs with derived IDs, grouping repeated names", () => {
    // Proves etcd's format, including a member with two peer URLs, keeps first-appearance order.
    const ms = parseInitialCluster(
      "n1=http://127.0.0.1:2380, n2=https://10.0.0.2:2380,n1=http://[::1]:2380,n3=http://host-3.example:12380",
      "tok",
    );
    expect(ms.map((m) => m.name)).toEqual(["n1", "n2", "n3"]);
    expect(ms[0]).toEqual({
      id: deriveMemberId("tok", "n1"),
      name: "n1",
      peerUrls: ["http://127.0.0.1:2380", "http://[::1]:2380"],
      clientUrls: [],
      isLearner: false,
    });
    expect(ms[1]?.peerUrls).toEqual(["https://10.0.0.2:2380"]);
    expect(ms[2]?.id).toBe(deriveMemberId("tok", "n3"));
  });

  it("refuses malformed lists with an error naming --initial-cluster and showing an example", () => {
    // Proves every kind of mistake is a ConfigError saying what is wrong and what is expected.
    const cases: [string, RegExp][] = [
      ["", /is empty/],
      [" , ", /is empty/],
      ["http://127.0.0.1:2380", /has no name/],
      ["=http://127.0.0.1:2380", /has no name/],
      ["n1=127.0.0.1:2380", /member "n1": .*has no scheme/],
      ["n1=http://127.0.0.1", /member "n1": .*has no port/],
      ["n1=ftp://127.0.0.1:2380", /member "n1": .*scheme/],
      [
        "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2380",
        /peer URL http:\/\/127.0.0.1:2380 is listed twice/,
      ],
    ];
    for (const [text, why] of cases) {
      let err: unknown;
      try {
        parseInitialCluster(text, "tok");
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(ConfigError);
      const msg = (err as ConfigError).message;
      expect(msg, text).toMatch(/^--initial-cluster: /);
      expect(msg, text).toMatch(why);
      expect(msg, text).toContain("e.g. --initial-cluster n1=http://127.0.0.1:2380,");
      expect((err as ConfigError).issues[0]?.key).toBe("--initial-cluster");
    }
  });
});
