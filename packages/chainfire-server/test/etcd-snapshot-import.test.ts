// Proves a cluster moves from etcd 3.4 to chainfire by snapshot: a file `etcdctl snapshot save`
// wrote is reported by `chainfirectl snapshot status` exactly as etcdctl reports it, and
// `chainfirectl snapshot restore` makes a data dir holding every key with its revisions, version,
// value and lease, the leases, the revision and the compaction etcd had; a damaged file is refused
// before anything is written.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChainfireClients, createClients, type etcd } from "@photoncloud/chainfire-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, hasBinary } from "../bench/cluster.js";
import { ctl } from "../src/ctl/testing.js";
import { rangeRequest } from "../src/mvcc/messages.js";
import { MvccStore } from "../src/mvcc/store.js";

const hasEtcd = hasBinary("etcd") && hasBinary("etcdctl");

function etcdctl(args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "etcdctl",
      ["--dial-timeout=10s", "--command-timeout=30s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 60_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`etcdctl ${args.join(" ")}: ${stderr}`)) : resolve(stdout),
    );
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

const restoreFlags = (dataDir: string) => [
  "--name=m1",
  `--data-dir=${dataDir}`,
  "--initial-cluster=m1=http://127.0.0.1:2380",
  "--initial-advertise-peer-urls=http://127.0.0.1:2380",
];

let dir: string;
let etcdCluster: Cluster;
let clients: ChainfireClients;
let snapshot: string;
let compactedAt: bigint;

beforeAll(async () => {
  if (!hasEtcd) return;
  dir = mkdtempSync(join(tmpdir(), "etcd-import-"));
  etcdCluster = await Cluster.start({ kind: "etcd", dir: join(dir, "etcd"), size: 1 });
  const ep = `--endpoints=${etcdCluster.endpoints}`;
  clients = createClients(etcdCluster.members[0]!.endpoint);
  // Overwrites (versions), a deletion, keys on a lease, a compaction, then a large value.
  for (let i = 0; i < 30; i++) await etcdctl([ep, "put", `k${i % 7}`, `v${i}`]);
  await etcdctl([ep, "del", "k3"]);
  const lease = (await etcdctl([ep, "lease", "grant", "600"])).split(" ")[1]!;
  await etcdctl([ep, "put", `--lease=${lease}`, "leased/1", "a"]);
  await etcdctl([ep, "put", `--lease=${lease}`, "leased/2", "b"]);
  compactedAt = 20n;
  await etcdctl([ep, "compaction", String(compactedAt)]);
  await etcdctl([ep, "put", "big", "x".repeat(20_000)]);
  // Enough entries that bbolt's key bucket grows branch pages (three txns of 100 puts each).
  for (let t = 0; t < 3; t++) {
    const puts = Array.from({ length: 100 }, (_, i) => `put many/${t}/${i} ${"m".repeat(40)}`).join("\n");
    await etcdctl([ep, "txn"], `\n${puts}\n\n\n`);
  }
  await etcdctl([ep, "put", "k1", "after the compaction"]);
  snapshot = join(dir, "etcd.snap");
  await etcdctl([ep, "snapshot", "save", snapshot]);
}, 120_000);

afterAll(async () => {
  if (!hasEtcd) return;
  clients.close();
  await etcdCluster.stopGracefully();
  rmSync(dir, { recursive: true, force: true });
});

describe.runIf(hasEtcd)("etcd 3.4 snapshot files in chainfirectl", { timeout: 120_000 }, () => {
  it("reports an etcd snapshot file as etcdctl does", async () => {
    const theirs = JSON.parse(await etcdctl(["snapshot", "status", snapshot, "-w", "json"]));
    const ours = await ctl(["snapshot", "status", snapshot, "-w", "json"]);
    expect(ours.code).toBe(0);
    expect(JSON.parse(ours.out)).toEqual(theirs);
    expect(theirs.totalKey).toBeGreaterThan(0);
  });

  it("restores it into a data dir with every key, revision, lease and the compaction etcd had", async () => {
    const dataDir = join(dir, "restored");
    const run = await ctl(["snapshot", "restore", snapshot, ...restoreFlags(dataDir)]);
    expect(run.code).toBe(0);
    const all = rangeRequest({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]) });
    const theirs = await new Promise<etcd.RangeResponse>((resolve, reject) =>
      clients.kv.range(all, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    const leases = await new Promise<etcd.LeaseLeasesResponse>((resolve, reject) =>
      clients.lease.leaseLeases({}, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    const store = new MvccStore({ path: join(dataDir, "mvcc.db") });
    try {
      const ours = store.range(all);
      expect(ours.kvs).toEqual(theirs.kvs);
      expect(ours.kvs.length).toBeGreaterThan(300);
      expect(ours.kvs.filter((kv) => kv.lease !== 0n).map((kv) => kv.key.toString())).toEqual([
        "leased/1",
        "leased/2",
      ]);
      expect(store.currentRevision()).toBe(theirs.header!.revision);
      expect(store.compactRevision()).toBe(compactedAt);
      expect(() => store.range(rangeRequest({ key: Buffer.from("k1"), revision: compactedAt - 1n }))).toThrow(
        "etcdserver: mvcc: required revision has been compacted",
      );
      // History kept since the compaction reads as etcd's does.
      const before = rangeRequest({ key: Buffer.from("k1"), revision: compactedAt });
      const old = await new Promise<etcd.RangeResponse>((resolve, reject) =>
        clients.kv.range(before, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      expect(store.range(before).kvs).toEqual(old.kvs);
      expect(store.lessor.ids()).toEqual(leases.leases.map((l) => l.ID));
      expect(store.lessor.get(leases.leases[0]!.ID)!.ttlSeconds).toBe(600n);
      expect(store.appliedIndex()).toBe(0n);
    } finally {
      store.close();
    }
  });

  it("refuses a damaged etcd snapshot file, writing nothing", async () => {
    const bytes = readFileSync(snapshot);
    const image = bytes.subarray(0, bytes.length - 32);
    const pageSize = image.readUInt32LE(16 + 8);
    // Both meta pages fail their checksum; the pages past the first two are cut off.
    const badMeta = Buffer.from(image);
    for (const page of [0, pageSize]) badMeta[page + 16 + 40]! ^= 0xff;
    const cut = image.subarray(0, 2 * pageSize);
    for (const [name, file, message] of [
      ["flipped", Buffer.from(bytes).fill(0x55, 3 * pageSize, 3 * pageSize + 8), "sha256 mismatch"],
      ["meta", badMeta, "its first meta page is not a valid bbolt meta page"],
      ["cut", cut, "lies outside the file"],
    ] as const) {
      const path = join(dir, `${name}.snap`);
      writeFileSync(path, file);
      const dataDir = join(dir, `never-${name}`);
      const flags = name === "flipped" ? [] : ["--skip-hash-check"];
      const run = await ctl(["snapshot", "restore", path, ...flags, ...restoreFlags(dataDir)]);
      expect([run.code, run.err]).toEqual([1, expect.stringContaining(message)]);
      expect(existsSync(dataDir)).toBe(false);
    }
  });
});
