// Proves members are planned with etcd's flags and the documented port layout, and that a missing daemon is reported with its reason.
import { afterEach, describe, expect, it } from "vitest";
import { fixedPorts, raftArgs } from "../src/cluster.js";
import { CHAINFIRE_NODE_ARGS, chainfireEnv } from "@photoncloud/daemon";
import { locateDaemon } from "../src/daemons.js";
import { etcdctlCommand } from "../src/dev-cluster.js";

describe("member plan", () => {
  it("uses etcd's well-known port layout for the dev cluster", () => {
    expect([0, 1, 2].map((i) => fixedPorts("chainfire", i).client)).toEqual([2379, 22379, 32379]);
    expect([0, 1, 2].map((i) => fixedPorts("flaredb", i).peer)).toEqual([2480, 22480, 32480]);
    expect(fixedPorts("iam", 0)).toEqual({ client: 8543, peer: 0, metrics: 8544 });
  });

  it("passes the etcd-style flags a member needs", () => {
    const desc = {
      id: "chainfire/node01",
      kind: "chainfire" as const,
      name: "node01",
      clientUrl: "http://127.0.0.1:2379",
      peerUrl: "http://127.0.0.1:2380",
      metricsUrl: "http://127.0.0.1:2381",
      dataDir: "/d/node01",
      logFile: "/l/node01.log",
    };
    const timing = { heartbeatMs: 50, electionMs: 500, snapshotCount: 100 };
    const args = raftArgs(desc, { token: "t1", timing }, "node01=http://127.0.0.1:2380", "existing");
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(flag("--name")).toBe("node01");
    expect(flag("--initial-cluster-state")).toBe("existing");
    expect(flag("--initial-cluster-token")).toBe("t1");
    expect(flag("--election-timeout")).toBe("500");
    expect(flag("--listen-metrics-urls")).toBe("http://127.0.0.1:2381");
  });

  it("prints a ready-to-paste etcdctl command", () => {
    expect(etcdctlCommand(["http://127.0.0.1:2379", "http://127.0.0.1:22379"])).toBe(
      "ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379 member list -w table",
    );
  });
});

describe("locateDaemon", () => {
  afterEach(() => {
    delete process.env.PHOTON_FLAREDB_BIN;
  });

  it("runs chainfire with the Node.js arguments and environment it is measured with, the others with none", () => {
    const chainfire = locateDaemon("chainfire");
    const iam = locateDaemon("iam");
    expect(chainfire.available && iam.available).toBe(true);
    if (chainfire.available) expect(chainfire.args.slice(0, -1)).toEqual([...CHAINFIRE_NODE_ARGS]);
    if (chainfire.available) expect(chainfire.env).toEqual(chainfireEnv());
    if (iam.available) expect(iam.args).toHaveLength(1);
    if (iam.available) expect(iam.env).toBeUndefined();
  });

  it("names the reason when an override points nowhere", () => {
    process.env.PHOTON_FLAREDB_BIN = "/nonexistent/flaredb";
    const found = locateDaemon("flaredb");
    expect(found.available).toBe(false);
    expect(found.available ? "" : found.reason).toContain(
      "PHOTON_FLAREDB_BIN=/nonexistent/flaredb does not exist",
    );
  });
});
