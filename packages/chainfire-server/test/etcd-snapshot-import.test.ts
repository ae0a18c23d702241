// Proves a cluster moves from etcd 3.4 to chainfire by snapshot: a file `etcdctl snapshot save`
// wrote is reported by `chainfirectl snapshot status` exactly as etcdctl reports it, and
// `chainfirectl snapshot restore` makes a data dir holding every key with its revisions, version,
// value and lease, the leases, the revision and the compaction etcd had; a damaged file is refused
// before anything is written, and so is one with etcd authentication unless told to drop it.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChainfireClients, createClients, type etcd } from "@photoncloud/chainfire-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, hasBinary } from "../bench/cluster.js";
import { ctl } from "../src/ctl/testing.js";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import { MvccStore } from "../src/mvcc/store.js";

const hasEtcd = hasBinary("etcd") && hasBinary("etcdctl");

function etcdctl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      "etcdctl",
      ["--dial-timeout=10s", "--command-timeout=30s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 60_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`etcdctl ${args.join(" ")}: ${stderr}`)) : resolve(stdout),
    ),
  );
}

/** Promisifies one generated unary method. */
function call<Res>(client: object, method: string, request: object): Promise<Res> {
  return new Promise((resolve, reject) =>
    (client as Record<string, (r: object, cb: (e: Error | null, res: Res) => void) => void>)[method]!.call(
      client,
      request,
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  );
}

const restoreFlags = (dataDir: string) => [
  "--name=m1",
  `--data-dir=${dataDir}`,
  "--initial-cluster=m1=http://127.0.0.1:2380",
  "--initial-advertise-peer-urls=http://127.0.0.1:2380",
];

/** The file with `image` and its sha256 after it, as `snapshot save` writes one. */
const withHash = (image: Buffer) => Buffer.concat([image, createHash("sha256").update(image).digest()]);

let dir: string;
let etcdCluster: Cluster;
let clients: ChainfireClients;
let ep: string;
let snapshot: string;
const compactedAt = 20n;

beforeAll(async () => {
  if (!hasEtcd) return;
  dir = mkdtempSync(join(tmpdir(), "etcd-import-"));
  etcdCluster = await Cluster.start({ kind: "etcd", dir: join(dir, "etcd"), size: 1 });
  ep = `--endpoints=${etcdCluster.endpoints}`;
  clients = createClients(etcdCluster.members[0]!.endpoint);
  const put = (key: string, value: string, lease = 0n) =>
    call(clients.kv, "put", putRequest({ key: Buffer.from(key), value: Buffer.from(value), lease }));
  // Overwrites (versions), a deletion, keys on a lease, a compaction, then a value larger than a
  // page and enough entries that the key bucket needs branch pages.
  for (let i = 0; i < 30; i++) await put(`k${i % 7}`, `v${i}`);
  await call(clients.kv, "deleteRange", { key: Buffer.from("k3"), rangeEnd: Buffer.alloc(0), prevKv: false });
  const { ID } = await call<etcd.LeaseGrantResponse>(clients.lease, "leaseGrant", { TTL: 600n, ID: 0n });
  await put("leased/1", "a", ID);
  await put("leased/2", "b", ID);
  await call(clients.kv, "compact", { revision: compactedAt, physical: true });
  await put("big", "x".repeat(20_000));
  await put("k1", "after the compaction");
  for (let t = 0; t < 3; t++) {
    const success = Array.from({ length: 100 }, (_, i) => ({
      requestPut: putRequest({ key: Buffer.from(`many/${t}/${i}`), value: Buffer.from("m".repeat(40)) }),
    }));
    await call(clients.kv, "txn", { compare: [], success, failure: [] });
  }
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
  it("reports an etcd snapshot file as etcdctl does, in each output format", async () => {
    for (const format of ["json", "simple", "table"]) {
      const ours = await ctl(["snapshot", "status", snapshot, "-w", format]);
      expect([ours.code, ours.out]).toEqual([
        0,
        await etcdctl(["snapshot", "status", snapshot, "-w", format]),
      ]);
    }
    // A bare database, as copied from an etcd data dir (member/snap/db), has no sha256: etcdctl
    // reports on it too.
    const bytes = readFileSync(snapshot);
    const bare = join(dir, "bare.db");
    writeFileSync(bare, bytes.subarray(0, bytes.length - 32));
    const ours = await ctl(["snapshot", "status", bare, "-w", "json"]);
    expect([ours.code, ours.out]).toEqual([0, await etcdctl(["snapshot", "status", bare, "-w", "json"])]);
  });

  it("restores it into a data dir with every key, revision, lease and the compaction etcd had", async () => {
    const dataDir = join(dir, "restored");
    const run = await ctl(["snapshot", "restore", snapshot, ...restoreFlags(dataDir)]);
    expect(run.code).toBe(0);
    const all = rangeRequest({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]) });
    const theirs = await call<etcd.RangeResponse>(clients.kv, "range", all);
    const leases = await call<etcd.LeaseLeasesResponse>(clients.lease, "leaseLeases", {});
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
      const old = await call<etcd.RangeResponse>(clients.kv, "range", before);
      expect(store.range(before).kvs).toEqual(old.kvs);
      expect(store.lessor.ids()).toEqual(leases.leases.map((l) => l.ID));
      expect(store.lessor.get(leases.leases[0]!.ID)!.ttlSeconds).toBe(600n);
      expect(store.appliedIndex()).toBe(0n);
    } finally {
      store.close();
    }
  });

  it("reads past a damaged first meta page to the second, as bbolt does", async () => {
    const bytes = readFileSync(snapshot);
    const image = Buffer.from(bytes.subarray(0, bytes.length - 32));
    image[16 + 40]! ^= 0x01; // meta page 0's page count: its checksum no longer holds
    const torn = join(dir, "torn.snap");
    writeFileSync(torn, withHash(image));
    const ours = await ctl(["snapshot", "status", torn, "-w", "json"]);
    expect([ours.code, ours.out]).toEqual([0, await etcdctl(["snapshot", "status", torn, "-w", "json"])]);
    expect((await ctl(["snapshot", "restore", torn, ...restoreFlags(join(dir, "from-torn"))])).code).toBe(0);
  });

  it("refuses a damaged etcd snapshot file, writing nothing", async () => {
    const bytes = readFileSync(snapshot);
    const image = bytes.subarray(0, bytes.length - 32);
    const pageSize = image.readUInt32LE(16 + 8);
    // Both meta pages fail their checksum.
    const badMeta = Buffer.from(image);
    for (const page of [0, pageSize]) badMeta[page + 16 + 40]! ^= 0xff;
    // A branch page of the key bucket names its first child twice: without the check a crafted
    // file of such pages takes time and memory doubling with each level.
    const shared = Buffer.from(image);
    const branch = keyBucketBranch(shared, pageSize);
    shared.writeBigUInt64LE(shared.readBigUInt64LE(branch + 16 + 8), branch + 16 + 16 + 8);
    for (const [name, file, message] of [
      ["flipped", Buffer.from(bytes).fill(0x55, 3 * pageSize, 3 * pageSize + 8), "sha256 mismatch"],
      ["meta", withHash(badMeta), "neither of its meta pages is a valid bbolt meta page"],
      ["cut", withHash(image.subarray(0, 2 * pageSize)), "lies outside the file"],
      ["shared", withHash(shared), "is referred to more than once"],
    ] as const) {
      const path = join(dir, `${name}.snap`);
      writeFileSync(path, file);
      const dataDir = join(dir, `never-${name}`);
      const run = await ctl(["snapshot", "restore", path, ...restoreFlags(dataDir)]);
      expect([run.code, run.err]).toEqual([1, expect.stringContaining(message)]);
      expect(existsSync(dataDir)).toBe(false);
    }
  });

  it("restores a snapshot with etcd authentication only when told to leave it behind", async () => {
    // Last: it turns authentication on in the etcd the other tests read.
    await etcdctl([ep, "user", "add", "root", "--new-user-password=secret"]);
    await etcdctl([ep, "auth", "enable"]);
    const guarded = join(dir, "auth.snap");
    await etcdctl([ep, "--user=root:secret", "snapshot", "save", guarded]);
    const refused = await ctl(["snapshot", "restore", guarded, ...restoreFlags(join(dir, "open"))]);
    expect([refused.code, refused.err]).toEqual([
      1,
      expect.stringContaining("etcd authentication is enabled"),
    ]);
    expect(existsSync(join(dir, "open"))).toBe(false);
    const dataDir = join(dir, "auth-dropped");
    const dropped = await ctl(["snapshot", "restore", guarded, "--drop-etcd-auth", ...restoreFlags(dataDir)]);
    expect(dropped.code).toBe(0);
    const store = new MvccStore({ path: join(dataDir, "mvcc.db") });
    try {
      expect(store.range(rangeRequest({ key: Buffer.from("leased/1") })).kvs[0]!.value.toString()).toBe("a");
    } finally {
      store.close();
    }
  });
});

/** The offset of the key bucket's root page, a branch page of at least two children. */
function keyBucketBranch(image: Buffer, pageSize: number): number {
  const metaRoot = (page: number) => image.readBigUInt64LE(page * pageSize + 16 + 16);
  const txid = (page: number) => image.readBigUInt64LE(page * pageSize + 16 + 48);
  const rootPage = Number(txid(1) > txid(0) ? metaRoot(1) : metaRoot(0));
  const root = rootPage * pageSize;
  expect(image.readUInt16LE(root + 8)).toBe(0x02); // a leaf of bucket headers
  for (let i = 0; i < image.readUInt16LE(root + 10); i++) {
    const e = root + 16 + i * 16;
    const key = e + image.readUInt32LE(e + 4);
    if (image.subarray(key, key + image.readUInt32LE(e + 8)).toString() !== "key") continue;
    const page = Number(image.readBigUInt64LE(key + 3)) * pageSize;
    expect([image.readUInt16LE(page + 8), image.readUInt16LE(page + 10) >= 2]).toEqual([0x01, true]);
    return page;
  }
  throw new Error("no key bucket");
}
