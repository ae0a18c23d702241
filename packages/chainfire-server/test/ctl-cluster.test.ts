// chainfirectl against real 3-member chainfire clusters: the membership sequence, leader transfer,
// endpoint commands on every member, and snapshot save → offline restore into a fresh 3-member
// cluster that then holds every key and revision.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, type ClusterMember } from "../bench/cluster.js";
import { runCtl } from "../src/ctl/program.js";
import { ctl, until } from "../src/ctl/testing.js";

let dir: string;
let cluster: Cluster;
let ep: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ctl-cluster-"));
  cluster = await Cluster.start({
    kind: "chainfire",
    dir: join(dir, "a"),
    heartbeatMs: 50,
    electionMs: 500,
    token: "ctl-a",
  });
  ep = `--endpoints=${cluster.members[0]!.endpoint}`;
}, 120_000);

afterAll(() => {
  cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** etcdctl's JSON for a member (pb.Member's names; Go leaves out empty fields). */
interface MemberJson {
  ID: string;
  name?: string;
  peerURLs?: string[];
  clientURLs?: string[];
  isLearner?: boolean;
}

async function members(): Promise<MemberJson[]> {
  const run = await ctl([ep, "member", "list", "-w", "json"]);
  expect(run.code, run.err).toBe(0);
  return (JSON.parse(run.out.replace(/"ID":(\d+)/g, '"ID":"$1"')) as { members: MemberJson[] }).members;
}

// etcdctl's %x: the form `member list` and `endpoint status` print.
const hexOf = (m: MemberJson) => BigInt(m.ID).toString(16);

async function leaderName(): Promise<string> {
  const status = (await ctl([`--endpoints=${cluster.endpoints}`, "endpoint", "status"])).out
    .trim()
    .split("\n");
  const leaderLine = status.find((line) => line.split(", ")[4] === "true");
  const id = leaderLine?.split(", ")[1];
  return (await members()).find((m) => hexOf(m) === id)?.name ?? "";
}

describe("chainfirectl against a 3-member chainfire", () => {
  it("lists members and reports status and health of every member", async () => {
    // Proves member list and the per-endpoint commands see the whole cluster, with one leader.
    const list = await members();
    expect(list.map((m) => m.name).sort()).toEqual(["m1", "m2", "m3"]);
    // etcdctl's JSON names: pb.Member's, and the header's snake case.
    expect(Object.keys(list[0]!).sort()).toEqual(["ID", "clientURLs", "name", "peerURLs"]);
    const listed = JSON.parse((await ctl([ep, "member", "list", "-w", "json"])).out);
    expect(Object.keys(listed.header).sort()).toEqual(["cluster_id", "member_id", "raft_term"]);
    const simple = (await ctl([ep, "member", "list"])).out.trim().split("\n");
    expect(simple).toHaveLength(3);
    expect(simple[0]).toMatch(
      /^[1-9a-f][0-9a-f]{0,15}, started, m\d, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false$/,
    );
    const status = await ctl([ep, "endpoint", "status", "--cluster"]);
    expect(status.code, status.err).toBe(0);
    const lines = status.out.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines.filter((l) => l.split(", ")[4] === "true")).toHaveLength(1);
    const health = await ctl([ep, "endpoint", "health", "--cluster"]);
    expect(health.code, health.err).toBe(0);
    expect(health.out.trim().split("\n")).toHaveLength(3);
  });

  it("transfers leadership by name and by ID", async () => {
    // Proves `leader transfer` accepts both forms and the cluster agrees on the new leader.
    const current = await leaderName();
    const target = ["m1", "m2", "m3"].find((n) => n !== current)!;
    const byName = await ctl([ep, "leader", "transfer", target]);
    expect(byName.code, byName.err).toBe(0);
    await until(async () => (await leaderName()) === target, `${target} to lead`, 60_000);
    const next = (await members()).find((m) => m.name !== target)!;
    const byId = await ctl([ep, "leader", "transfer", hexOf(next)]);
    expect(byId.code, byId.err).toBe(0);
    await until(async () => (await leaderName()) === next.name, `${next.name} to lead`, 60_000);
    const unknown = await ctl([ep, "leader", "transfer", "nobody"]);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('no member named or with ID "nobody"');
  }, 180_000);

  it("keeps watching when its member is killed and restarted, losing and repeating no event", async () => {
    // Proves watch moves to the next endpoint when its member goes away and resumes after the last
    // revision it printed, as etcdctl's watch does: events made while it was cut off are printed
    // once, and so is every later one. A follower is killed, so writes go on through the leader.
    const leaderAt = await leaderName();
    const leader = cluster.members.find((m) => m.name === leaderAt)!;
    const follower = cluster.members.find((m) => m.name !== leaderAt)!;
    const write = `--endpoints=${leader.endpoint}`;
    const put = async (key: string, value: string) => {
      const run = await ctl([write, "put", key, value, "-w", "json"]);
      expect(run.code, run.err).toBe(0);
      return JSON.parse(run.out).header.revision as number;
    };
    const first = await put("rw/a", "1");
    const controller = new AbortController();
    const lines: string[] = [];
    const watching = runCtl(
      [
        `--endpoints=${follower.endpoint},${leader.endpoint}`,
        "--dial-timeout=5s",
        "watch",
        "rw/",
        "--prefix",
        `--rev=${first}`,
      ],
      {
        out: (t) => lines.push(t),
        err: (t) => lines.push(`ERR ${t}`),
        stderrIsTty: false,
        signal: controller.signal,
      },
    );
    try {
      await until(() => lines.length >= 3, "the first event");
      cluster.stopMember(follower);
      await put("rw/b", "2");
      await put("rw/c", "3");
      await until(() => lines.length >= 9, "the events made while the watch's member was down");
      cluster.startMember(follower);
      await cluster.waitReady();
      await put("rw/d", "4");
      await until(() => lines.length >= 12, "an event after the restart");
    } finally {
      controller.abort();
    }
    expect(await watching).toBe(0);
    expect(lines).toEqual(["PUT", "rw/a", "1", "PUT", "rw/b", "2", "PUT", "rw/c", "3", "PUT", "rw/d", "4"]);
  }, 180_000);

  it("adds a learner, promotes it, updates its URLs in place and removes it", async () => {
    // Proves the seed's membership sequence through the CLI, with data readable throughout.
    await ctl([ep, "put", "before-m4", "1"]);
    const m4: ClusterMember = await cluster.planExtra("m4");
    const peer = `http://127.0.0.1:${m4.peerPort}`;
    const add = await ctl([
      ep,
      "member",
      "add",
      "m4",
      "--learner",
      `--peer-urls=${peer}`,
      `--client-urls=http://${m4.endpoint}`,
    ]);
    expect(add.code, add.err).toBe(0);
    // etcdctl's lines: the new member's ID, then the environment it starts with.
    // etcdctl's %16x: each ID right-aligned in 16 columns.
    expect(add.out).toMatch(/^Member [ 0-9a-f]{16} added to cluster [ 0-9a-f]{16}\n\nETCD_NAME="m4"\n/);
    expect(add.out).toContain(
      `ETCD_INITIAL_ADVERTISE_PEER_URLS="${peer}"\nETCD_INITIAL_CLUSTER_STATE="existing"\n`,
    );
    expect(add.out).toMatch(/ETCD_INITIAL_CLUSTER="[^"]*m4=http:\/\/127\.0\.0\.1:\d+[^"]*"/);
    cluster.startMember(m4, { initialCluster: `${cluster.initialCluster},m4=${peer}` });
    try {
      await until(
        async () =>
          (await ctl([`--endpoints=${m4.endpoint}`, "get", "before-m4", "--consistency=s"])).out ===
          "before-m4\n1\n",
        "m4 to catch up",
        60_000,
      );
      const id = hexOf((await members()).find((m) => m.name === "m4")!);
      // A learner is promotable once caught up; an answer lost to a timeout may still have promoted it.
      let lastAnswer = "";
      await until(
        async () => {
          if (!(await members()).find((m) => m.name === "m4")!.isLearner) return true;
          lastAnswer = (await ctl([ep, "member", "promote", id])).err;
          return false;
        },
        "m4 promoted",
        120_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last answer: ${lastAnswer}; m4 output: ${m4.log}`);
      });
      // A voter: etcd's JSON leaves isLearner out.
      expect((await members()).find((m) => m.name === "m4")).not.toHaveProperty("isLearner");
      const again = await ctl([ep, "member", "promote", id]);
      expect(again.code).toBe(128);
      expect(again.err).toContain("already a voter");
      // m4 publishes its own advertised client URLs after it starts (etcd's publish), retrying until
      // one attempt succeeds; an update that lands before that publish is overwritten by it. So the
      // update is made again until the list shows it (then it stays: m4 publishes only once).
      await until(
        async () => {
          const update = await ctl([
            ep,
            "member",
            "update",
            id,
            `--client-urls=http://127.0.0.1:${m4.clientPort},http://localhost:${m4.clientPort}`,
          ]);
          expect(update.code, update.err).toBe(0);
          return (await members()).find((m) => m.name === "m4")!.clientURLs?.length === 2;
        },
        "m4's client URLs updated in place",
        60_000,
      );
      const remove = await ctl([ep, "member", "remove", id]);
      expect(remove.code, remove.err).toBe(0);
      expect((await members()).map((m) => m.name).sort()).toEqual(["m1", "m2", "m3"]);
      expect((await ctl([ep, "get", "before-m4", "--print-value-only"])).out).toBe("1\n");
    } finally {
      cluster.stopMember(m4);
    }
    const unknown = await ctl([ep, "member", "remove", "1234abcd"]);
    expect(unknown.code).toBe(1);
    const badUrl = await ctl([ep, "member", "add", "m5", "--peer-urls=localhost"]);
    expect(badUrl.code).toBe(128);
    expect(badUrl.err).toContain('--peer-urls: "localhost" is not a URL');
  }, 240_000);

  it("restores a snapshot into a fresh 3-member cluster holding every key and revision", async () => {
    // Proves save → restore on every member of a new cluster preserves the MVCC state and gives a new identity.
    for (let i = 0; i < 30; i++) await ctl([ep, "put", `restore/${i % 10}`, `v${i}`]);
    await ctl([ep, "del", "restore/3"]);
    const snapshot = join(dir, "snap.db");
    const save = await ctl([ep, "snapshot", "save", snapshot]);
    expect(save.code, save.err).toBe(0);
    const before = JSON.parse((await ctl([ep, "get", "", "--from-key", "-w", "json"])).out);

    const corrupt = join(dir, "corrupt.db");
    const bytes = Buffer.from(readFileSync(snapshot));
    bytes[100]! ^= 1;
    writeFileSync(corrupt, bytes);

    const fresh = await Cluster.plan({
      kind: "chainfire",
      dir: join(dir, "b"),
      heartbeatMs: 50,
      electionMs: 500,
      token: "ctl-b",
      keepDataDirs: true,
    });
    const refused = await ctl(["snapshot", "restore", corrupt, ...restoreArgs(fresh, fresh.members[0]!)]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("sha256 mismatch");
    expect(existsSync(fresh.members[0]!.dataDir)).toBe(false);

    for (const m of fresh.members) {
      const restore = await ctl(["snapshot", "restore", snapshot, ...restoreArgs(fresh, m)]);
      expect(restore.code, restore.err).toBe(0);
    }
    fresh.startAll();
    try {
      await fresh.waitReady();
      for (const m of fresh.members) {
        const after = JSON.parse(
          (await ctl([`--endpoints=${m.endpoint}`, "get", "", "--from-key", "-w", "json"])).out,
        );
        expect(after.kvs).toEqual(before.kvs);
        expect(after.header.revision).toBe(before.header.revision);
        expect(after.header.cluster_id).not.toBe(before.header.cluster_id);
      }
      const next = JSON.parse(
        (await ctl([`--endpoints=${fresh.members[1]!.endpoint}`, "put", "after", "x", "-w", "json"])).out,
      );
      expect(next.header.revision).toBe(before.header.revision + 1);
    } finally {
      fresh.stop();
    }
  }, 240_000);
});

function restoreArgs(fresh: Cluster, m: ClusterMember): string[] {
  return [
    `--name=${m.name}`,
    `--data-dir=${m.dataDir}`,
    `--initial-cluster=${fresh.initialCluster}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
    "--initial-cluster-token=ctl-b",
  ];
}
