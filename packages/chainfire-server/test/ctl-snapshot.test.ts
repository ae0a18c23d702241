// chainfirectl snapshot save/status/restore against a single-member chainfire server, and the
// refusal of corrupt, truncated or misdirected restores before anything is written.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rangeRequest } from "../src/mvcc/messages.js";
import { MvccStore } from "../src/mvcc/store.js";
import { startTestServer, type TestServer } from "../src/testing/test-server.js";
import { ctl } from "../src/ctl/testing.js";
import { entriesFor } from "../src/testing/commands.js";

let server: TestServer;
let dir: string;
let snapshot: string;

const restoreFlags = (dataDir: string) => [
  "--name=n1",
  `--data-dir=${dataDir}`,
  "--initial-cluster=n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381",
  "--initial-advertise-peer-urls=http://127.0.0.1:2380",
  "--initial-cluster-token=restored",
];

beforeAll(async () => {
  server = await startTestServer();
  dir = mkdtempSync(join(tmpdir(), "ctl-snapshot-"));
  snapshot = join(dir, "snap.db");
  const ep = `--endpoints=${server.endpoint}`;
  for (let i = 0; i < 50; i++) await ctl([ep, "put", `key/${i % 20}`, `value-${i}`]);
  await ctl([ep, "del", "key/1"]);
  await ctl([ep, "put", "big", "x".repeat(100_000)]);
  expect((await ctl([ep, "snapshot", "save", snapshot])).out).toBe(`Snapshot saved at ${snapshot}\n`);
});

afterAll(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

function allKeys(store: MvccStore) {
  return store.range(rangeRequest({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]) })).kvs;
}

describe("chainfirectl snapshot", () => {
  it("saves a verified file whose status gives the server's hash, revision and key count", async () => {
    // Proves save writes image ‖ sha256 and status reads revision and live keys from it.
    expect(readFileSync(snapshot).length % 512).toBe(32);
    expect(existsSync(`${snapshot}.part`)).toBe(false);
    const [hash, revision, keys, size] = (await ctl(["snapshot", "status", snapshot])).out.trim().split(", ");
    expect(BigInt(revision!)).toBe(server.store.currentRevision());
    expect(Number(keys)).toBe(20);
    expect(size).toMatch(/ kB$/);
    expect(Number.parseInt(hash!, 16)).toBe((await server.store.hash()).hash);
    const json = JSON.parse((await ctl(["snapshot", "status", snapshot, "-w", "json"])).out);
    expect([json.totalKey, json.totalSize > 0]).toEqual([20, true]);
    expect((await ctl(["snapshot", "status", snapshot, "-w", "table"])).out).toContain("TOTAL KEYS");
  });

  it("restores with etcdctl's defaults when only the data dir is given: a one-member cluster", async () => {
    // Proves `snapshot restore snap.db --data-dir X`, as etcd's backup guides run it, works: the
    // member "default" on http://localhost:2380, alone in its cluster.
    const dataDir = join(dir, "defaults");
    const run = await ctl(["snapshot", "restore", snapshot, `--data-dir=${dataDir}`]);
    expect(run.code).toBe(0);
    expect(JSON.parse(readFileSync(join(dataDir, "restored-for.json"), "utf8"))).toEqual({
      name: "default",
      initialCluster: "default=http://localhost:2380",
      initialAdvertisePeerUrls: ["http://localhost:2380"],
      initialClusterToken: "photoncloud-cluster",
    });
  });

  it("restores into a data dir holding every key and revision, with a fresh Raft position", async () => {
    // Proves restore keeps the MVCC state (values, revisions, versions) and resets applied_index.
    const dataDir = join(dir, "restored");
    const run = await ctl(["snapshot", "restore", snapshot, ...restoreFlags(dataDir)]);
    expect(run.code).toBe(0);
    expect(run.out).toContain("--initial-cluster-token=restored");
    expect(readdirSync(dataDir).sort()).toEqual(["mvcc.db", "restored-for.json"]);
    expect(JSON.parse(readFileSync(join(dataDir, "restored-for.json"), "utf8"))).toEqual({
      name: "n1",
      initialCluster: "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381",
      initialAdvertisePeerUrls: ["http://127.0.0.1:2380"],
      initialClusterToken: "restored",
    });
    const restored = new MvccStore({ path: join(dataDir, "mvcc.db") });
    try {
      expect(restored.appliedIndex()).toBe(0n);
      expect(restored.currentRevision()).toBe(server.store.currentRevision());
      expect(allKeys(restored)).toEqual(allKeys(server.store));
    } finally {
      restored.close();
    }
  });

  it("refuses a corrupt or truncated file and a non-empty data dir, writing nothing", async () => {
    // Proves the hash and shape checks run before anything reaches the disk.
    const bytes = readFileSync(snapshot);
    const corrupt = join(dir, "corrupt.db");
    const flipped = Buffer.from(bytes);
    flipped[5000]! ^= 0xff;
    writeFileSync(corrupt, flipped);
    const truncated = join(dir, "truncated.db");
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
    for (const [file, message] of [
      [corrupt, "sha256 mismatch"],
      [truncated, "truncated"],
    ] as const) {
      const dataDir = join(dir, `never-${message.length}`);
      const run = await ctl(["snapshot", "restore", file, ...restoreFlags(dataDir)]);
      expect(run.code).toBe(1);
      expect(run.err).toContain(message);
      expect(existsSync(dataDir)).toBe(false);
      expect((await ctl(["snapshot", "status", file])).code).toBe(1);
    }
    expect(readdirSync(dir).filter((n) => n.includes("restoring"))).toEqual([]);
    const busy = join(dir, "busy");
    mkdirSync(busy);
    writeFileSync(join(busy, "keep"), "x");
    const run = await ctl(["snapshot", "restore", snapshot, ...restoreFlags(busy)]);
    expect(run.err).toContain("already exists and is not empty");
    expect(readdirSync(busy)).toEqual(["keep"]);
  });

  it("refuses restore flags that do not describe this member", async () => {
    // Proves a name missing from --initial-cluster or mismatched peer URLs are named, not guessed.
    const dataDir = join(dir, "misdirected");
    const wrongName = await ctl(["snapshot", "restore", snapshot, ...restoreFlags(dataDir), "--name=n9"]);
    expect(wrongName.code).toBe(128);
    expect(wrongName.err).toContain('--name "n9" is not in --initial-cluster');
    const wrongUrl = await ctl([
      "snapshot",
      "restore",
      snapshot,
      ...restoreFlags(dataDir),
      "--initial-advertise-peer-urls=http://127.0.0.1:9999",
    ]);
    expect(wrongUrl.err).toContain("must equal n1's URLs");
    const badCluster = await ctl([
      "snapshot",
      "restore",
      snapshot,
      ...restoreFlags(dataDir),
      "--initial-cluster=n1",
    ]);
    expect(badCluster.err).toContain('--initial-cluster: "n1" has no name');
    // What the daemon would refuse at the restored member's first start is refused here, before
    // a data dir it could never start from is written.
    const refusals: [string[], string][] = [
      [
        ["--initial-cluster=n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2380"],
        "--initial-cluster: peer URL http://127.0.0.1:2380 is listed twice",
      ],
      [
        [
          "--initial-cluster=n1=http://127.0.0.1:99999",
          "--initial-advertise-peer-urls=http://127.0.0.1:99999",
        ],
        '--initial-cluster: member "n1": ',
      ],
      [
        ["--initial-cluster=n1=http://127.0.0.1:0", "--initial-advertise-peer-urls=http://127.0.0.1:0"],
        "--initial-advertise-peer-urls: http://127.0.0.1:0 cannot be reached by peers",
      ],
    ];
    for (const [flags, message] of refusals) {
      const run = await ctl(["snapshot", "restore", snapshot, ...restoreFlags(dataDir), ...flags]);
      expect({ code: run.code, err: run.err }).toMatchObject({
        code: 128,
        err: expect.stringContaining(message),
      });
    }
    expect(existsSync(dataDir)).toBe(false);
  });

  it("reads a member's bare mvcc.db, and refuses it while its WAL still holds writes", async () => {
    // Proves a store file copied from a member is not restored without its last commits: in WAL
    // mode they sit in mvcc.db-wal until a checkpoint, and a member killed leaves them there.
    const memberDir = join(dir, "member");
    mkdirSync(memberDir);
    const path = join(memberDir, "mvcc.db");
    const store = new MvccStore({ path, backendBatchIntervalMs: 0 });
    const put = (key: string) => ({
      put: {
        key: Buffer.from(key),
        value: Buffer.from("v"),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      },
    });
    store.applyBatch(entriesFor([put("a"), put("b")], 1n));
    const dataDir = join(dir, "from-member");
    const restore = () => ctl(["snapshot", "restore", path, "--skip-hash-check", ...restoreFlags(dataDir)]);
    for (const run of [await ctl(["snapshot", "status", path]), await restore()]) {
      expect(run.code).toBe(1);
      expect(run.err).toMatch(
        /mvcc\.db-wal \(\d+ bytes\) holds writes not yet in .*mvcc\.db: start and stop the member/,
      );
    }
    expect(existsSync(dataDir)).toBe(false);
    // Closed cleanly, the file holds everything: status reads it as etcdctl reads a bare db, and
    // the restore takes it.
    store.close();
    const status = await ctl(["snapshot", "status", path, "-w", "json"]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.out)).toMatchObject({ revision: 3, totalKey: expect.any(Number) });
    expect((await restore()).code).toBe(0);
    const restored = new MvccStore({ path: join(dataDir, "mvcc.db") });
    expect(allKeys(restored).map((kv) => kv.key.toString())).toEqual(["a", "b"]);
    restored.close();
  });
});
