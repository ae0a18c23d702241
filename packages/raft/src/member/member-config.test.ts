import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, parseConfig } from "@photoncloud/daemon";
import { describe, expect, it } from "vitest";
import { deriveClusterId, deriveMemberId } from "./ids.js";
import { commitIdentity, planMember, readIdentity, stageIdentity, writeIdentity } from "./member-config.js";
import { type MemberConfig, memberOptions } from "./member-options.js";

const options = memberOptions("TESTD_", { client: 2379, peer: 2380, metrics: 2381 });
const spec = { name: "testd", options };
const CLUSTER = "n1=http://127.0.0.1:2380,n2=http://127.0.0.2:2380,n3=http://127.0.0.3:2380";

function config(argv: string[], env: Record<string, string> = {}): MemberConfig {
  const out = parseConfig(spec, ["--data-dir", "/tmp/x", ...argv], env);
  if (out.action !== "run") throw new Error("expected run");
  return out.config;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("memberOptions", () => {
  it("has etcd's flags and defaults", () => {
    // Proves a bare start gets etcd's single-member defaults, with advertise URLs = listen URLs.
    const c = config([]);
    expect(c.name).toBe("default");
    expect(c.dataDir).toBe("/tmp/x");
    expect(c.listenClientUrls.map((u) => u.href)).toEqual(["http://127.0.0.1:2379"]);
    expect(c.listenPeerUrls.map((u) => u.href)).toEqual(["http://127.0.0.1:2380"]);
    expect(c.listenMetricsUrls.map((u) => u.href)).toEqual(["http://127.0.0.1:2381"]);
    expect(c.initialClusterState).toBe("new");
    expect(c.initialClusterToken).toBe("photoncloud-cluster");
    expect([c.heartbeatIntervalMs, c.electionTimeoutMs, c.snapshotCount]).toEqual([100, 1000, 100_000]);
    expect(c.maxRequestBytes).toBe(1572864);
    const plan = planMember(c, undefined);
    expect(plan.memberId).toBe(deriveMemberId("photoncloud-cluster", "default"));
    expect(plan.initialMembers).toEqual([
      {
        id: plan.memberId,
        name: "default",
        peerUrls: ["http://127.0.0.1:2380"],
        clientUrls: [],
        isLearner: false,
      },
    ]);
    expect(plan.clusterId).toBe(deriveClusterId("photoncloud-cluster", [plan.memberId]));
    expect(plan.advertiseClientUrls).toEqual(["http://127.0.0.1:2379"]);
  });

  it("requires --data-dir", () => {
    // Proves the data directory is never guessed.
    const err = configError(() => parseConfig(spec, [], {}));
    expect(err.message).toMatch(/--data-dir: required \(set --data-dir .*TESTD_DATA_DIR/);
  });

  it("reads env vars with the daemon's prefix and parses --member-id in hex", () => {
    // Proves the envPrefix is applied and uint64 IDs keep full precision.
    const c = config(["--member-id", "0xfedcba9876543210"], {
      TESTD_NAME: "n2",
      TESTD_INITIAL_CLUSTER: CLUSTER,
    });
    expect(c.name).toBe("n2");
    expect(c.initialCluster).toBe(CLUSTER);
    expect(c.memberId).toBe(0xfedcba9876543210n);
  });
});

describe("planMember", () => {
  it("plans a new 3-member cluster where every member agrees on IDs", () => {
    // Proves each member computes the same bootstrap configuration and cluster ID.
    const plans = ["n1", "n2", "n3"].map((n, i) =>
      planMember(
        config([
          "--name",
          n,
          "--initial-cluster",
          CLUSTER,
          "--initial-advertise-peer-urls",
          `http://127.0.0.${i + 1}:2380`,
          "--initial-cluster-token",
          "tok",
        ]),
        undefined,
      ),
    );
    const ids = plans[0]!.initialMembers.map((m) => m.id);
    expect(ids).toEqual(["n1", "n2", "n3"].map((n) => deriveMemberId("tok", n)));
    for (const p of plans) {
      expect(p.initialMembers.map((m) => m.id)).toEqual(ids);
      expect(p.clusterId).toBe(deriveClusterId("tok", ids));
      expect(p.join).toBe(false);
    }
  });

  it("refuses an election timeout under 5 heartbeats, naming both flags and the minimum", () => {
    // Proves the timing rule is checked with a message that gives the fix.
    const err = configError(() =>
      planMember(config(["--heartbeat-interval", "200", "--election-timeout", "900"]), undefined),
    );
    expect(err.issues[0]?.key).toBe("--election-timeout");
    expect(err.message).toMatch(
      /--election-timeout: 900 ms is less than 5 × --heartbeat-interval \(200 ms\); set --election-timeout to at least 1000/,
    );
  });

  it("refuses an election timeout over etcd's 50 s, and takes 50 s itself", () => {
    // Proves etcd's upper bound: a longer timeout leaves a lost leader unnoticed that long.
    const err = configError(() => planMember(config(["--election-timeout", "50001"]), undefined));
    expect(err.issues[0]?.key).toBe("--election-timeout");
    expect(err.message).toMatch(/--election-timeout: 50001 ms is too long: .* set it to at most 50000/);
    expect(planMember(config(["--election-timeout", "50000"]), undefined).memberId).not.toBe(0n);
  });

  it("refuses an --initial-cluster that does not list this member or lists other URLs for it", () => {
    // Proves a member never bootstraps a cluster that does not contain itself as advertised.
    const missing = configError(() =>
      planMember(config(["--name", "n4", "--initial-cluster", CLUSTER]), undefined),
    );
    expect(missing.issues[0]?.key).toBe("--initial-cluster");
    expect(missing.message).toMatch(
      /does not list this member \(--name n4\); add n4=http:\/\/127.0.0.1:2380/,
    );
    const wrong = configError(() =>
      planMember(
        config([
          "--name",
          "n2",
          "--initial-cluster",
          CLUSTER,
          "--initial-advertise-peer-urls",
          "http://127.0.0.9:2380",
        ]),
        undefined,
      ),
    );
    expect(wrong.message).toMatch(
      /lists n2 with http:\/\/127.0.0.2:2380 but --initial-advertise-peer-urls is http:\/\/127.0.0.9:2380; make them the same/,
    );
  });

  it("refuses --member-id for a new cluster and unreachable advertise URLs, reporting both at once", () => {
    // Proves several problems are listed together, each with its key and fix.
    const err = configError(() =>
      planMember(config(["--member-id", "12", "--listen-peer-urls", "http://0.0.0.0:2380"]), undefined),
    );
    expect(err.issues.map((i) => i.key)).toEqual(["--initial-advertise-peer-urls", "--member-id"]);
    expect(err.message).toMatch(
      /http:\/\/0.0.0.0:2380 cannot be reached by peers .*e.g. --initial-advertise-peer-urls/,
    );
    expect(err.message).toMatch(
      /--member-id: is only accepted with --initial-cluster-state existing.*remove --member-id/,
    );
  });

  it("refuses a wildcard client URL as the one advertised on a first start, and lets a running member restart", () => {
    // Proves --listen-client-urls http://0.0.0.0:2379 without --advertise-client-urls is refused
    // (the member list would tell clients to dial 0.0.0.0), an explicit one is accepted, and a
    // member that ran so before the check still restarts.
    const wildcard = ["--listen-client-urls", "http://0.0.0.0:2379"];
    const err = configError(() => planMember(config(wildcard), undefined));
    expect(err.message).toMatch(
      /--advertise-client-urls: http:\/\/0.0.0.0:2379\/? \(taken from --listen-client-urls\) is a wildcard address/,
    );
    expect(planMember(config(wildcard), { name: "default", memberId: 1n, clusterId: 2n }).restart).toBe(true);
    const ok = planMember(
      config([...wildcard, "--advertise-client-urls", "http://10.0.0.1:2379"]),
      undefined,
    );
    expect(ok.advertiseClientUrls).toEqual([expect.stringContaining("10.0.0.1:2379")]);
  });

  it("plans a join with an explicit --member-id and refuses a join that lists no running member", () => {
    // Proves state=existing starts with join and the given ID, and needs peers to contact.
    const c = config([
      "--name",
      "n4",
      "--initial-cluster-state",
      "existing",
      "--member-id",
      "0x44",
      "--initial-cluster",
      `${CLUSTER},n4=http://127.0.0.4:2380`,
      "--initial-advertise-peer-urls",
      "http://127.0.0.4:2380",
    ]);
    const plan = planMember(c, undefined);
    expect(plan.join).toBe(true);
    expect(plan.memberId).toBe(0x44n);
    expect(plan.initialMembers.find((m) => m.name === "n4")?.id).toBe(0x44n);
    // The cluster's own list, read from a running member, replaces the guess when it lists this
    // member: n2 there has an ID no name derives (added by peer URL).
    const known = [
      { id: 0x11n, name: "n1", peerUrls: ["http://127.0.0.1:2380"], clientUrls: [], isLearner: false },
      { id: 0x2222n, name: "n2", peerUrls: ["http://127.0.0.2:2380"], clientUrls: [], isLearner: false },
      { id: 0x44n, name: "", peerUrls: ["http://127.0.0.4:2380"], clientUrls: [], isLearner: true },
    ];
    expect(planMember(c, undefined, known).initialMembers).toEqual(known);
    expect(planMember(c, undefined, known.slice(0, 2)).initialMembers).toEqual(plan.initialMembers);
    const alone = configError(() => planMember(config(["--initial-cluster-state", "existing"]), undefined));
    expect(alone.message).toMatch(
      /--initial-cluster: lists only this member, but --initial-cluster-state existing/,
    );
  });

  it("restarts from the stored identity, ignoring the initial flags but refusing another name or ID", () => {
    // Proves restart behaves like etcd's: the data directory decides who the member is.
    const stored = { name: "n1", memberId: 0x11n, clusterId: 0x99n };
    const plan = planMember(config(["--name", "n1", "--initial-cluster", "garbage-ignored"]), stored);
    expect(plan).toMatchObject({ restart: true, memberId: 0x11n, clusterId: 0x99n, initialMembers: [] });
    const err = configError(() => planMember(config(["--name", "n2", "--member-id", "0x12"]), stored));
    expect(err.issues.map((i) => i.key)).toEqual(["--member-id", "--name"]);
    expect(err.message).toMatch(
      /--name: this data directory belongs to member "n1" \(0000000000000011\); start it with --name n1/,
    );
  });
});

describe("the member's identity file", () => {
  const id = { name: "n1", memberId: 0xabcn, clusterId: 0x123n };
  const fresh = () => mkdtempSync(join(tmpdir(), "identity-"));

  it("is staged before the log exists and becomes member.json once it does", () => {
    // Proves a first start stopped at any point leaves a member that starts again under its ID:
    // before the log, the start is made again; after it, the staged identity is completed.
    const dir = fresh();
    try {
      expect(readIdentity(dir)).toBeUndefined();
      stageIdentity(dir, id);
      // Stopped before raft.db was created: nothing is kept, the next start is a first start.
      expect(readIdentity(dir)).toBeUndefined();
      expect(readdirSync(dir)).toEqual([]);
      stageIdentity(dir, id);
      writeFileSync(join(dir, "raft.db"), "");
      // Stopped after the log was created, before member.json: completed at the next start.
      expect(readIdentity(dir)).toEqual(id);
      expect(readdirSync(dir).sort()).toEqual(["member.json", "raft.db"]);
      expect(readIdentity(dir)).toEqual(id);
      writeIdentity(dir, { ...id, clusterId: 0x456n });
      expect(readIdentity(dir)).toEqual({ ...id, clusterId: 0x456n });
      stageIdentity(dir, { ...id, memberId: 0xdefn });
      commitIdentity(dir);
      expect(readIdentity(dir)).toEqual({ ...id, memberId: 0xdefn });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops the start, naming the file, when a log has no identity or member.json is torn", () => {
    // Proves a member never goes on under an ID derived again from its flags (wrong for a member
    // added with a server-chosen ID): the message names the file and what to do.
    const dir = fresh();
    try {
      writeFileSync(join(dir, "raft.db"), "");
      expect(configError(() => readIdentity(dir)).message).toMatch(
        /^--data-dir: .*member\.json is missing while raft\.db is there, so this member does not know its ID: remove the member/,
      );
      writeFileSync(join(dir, "member.json"), '{"name":"n1","memb');
      expect(configError(() => readIdentity(dir)).message).toMatch(/member\.json cannot be read \(/);
      writeFileSync(join(dir, "member.json"), "{}\n");
      expect(configError(() => readIdentity(dir)).message).toMatch(
        /member\.json does not hold a name, memberId and clusterId/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
