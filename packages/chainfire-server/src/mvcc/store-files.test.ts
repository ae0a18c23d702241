// MvccStore.restore and the store's files: what a restore leaves open, what it refuses, and what a
// crash in the middle of one leaves for the next start.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  DatabaseStillOpenError,
  DEFAULT_NODE_CONFIG,
  encodeEnvelope,
  encodeLayerSnapshot,
  EntryType,
  type MemberInfo,
  RaftNode,
  SqliteLogStore,
  WalCheckpointer,
} from "@photoncloud/raft";
import { openFiles } from "@photoncloud/daemon/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { encodeCommand, entriesFor } from "../testing/commands.js";
import { putRequest, rangeRequest } from "./messages.js";
import { MvccStore } from "./store.js";

/** This process's descriptors open on files in `folder` (worker threads' included). */
function openIn(folder: string): string[] {
  const prefix = `${realpathSync(folder)}/`;
  return openFiles().filter((target) => target.startsWith(prefix));
}

/** What was open in the folder each time a file was renamed into it (a restore's replacement). */
const atRename = vi.hoisted(() => [] as string[][]);
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    renameSync: (from: string, to: string) => {
      atRename.push(openIn(dirname(to)));
      fs.renameSync(from, to);
    },
  };
});

const b = (s: string) => Buffer.from(s);
let dir: string;
let path: string;
const stores: MvccStore[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chainfire-files-"));
  path = join(dir, "mvcc.db");
  atRename.length = 0;
});
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(options: { backgroundCheckpoints?: boolean } = {}): MvccStore {
  const store = new MvccStore({ path, ...options });
  stores.push(store);
  return store;
}

/** Applies one put per key, at the indexes after the store's applied index. */
function putKeys(store: MvccStore, ...keys: string[]): void {
  const cmds = keys.map((key) => ({ put: putRequest({ key: b(key), value: b(`value of ${key}`) }) }));
  store.applyBatch(entriesFor(cmds, store.appliedIndex() + 1n));
}

function keys(store: MvccStore): string[] {
  return store.range(rangeRequest({ key: b("\0"), rangeEnd: b("\0") })).kvs.map((kv) => kv.key.toString());
}

/** An image of a store holding `names`, applied up to index `names.length`. */
function imageOf(...names: string[]): Uint8Array {
  const source = new MvccStore({ path: ":memory:" });
  putKeys(source, ...names);
  const image = source.snapshot();
  source.close();
  return image;
}

describe("MvccStore.restore", () => {
  it("closes every connection to the file before replacing it, then takes snapshots off the loop again", async () => {
    // Proves that when the new file is renamed into place no connection is open on the old one
    // (the snapshot worker's, with a snapshot being made; the background checkpointer's; the
    // writer's), and that the worker comes back on the new file.
    const store = open({ backgroundCheckpoints: true });
    await store.startSnapshotWorker();
    for (let i = 0; i < 20; i++) putKeys(store, `old${i}`);
    const job = store.beginSnapshot();
    job.image.catch(() => {}); // made before the worker closed, or failed by its close
    store.restore(imageOf("new"), 30n);
    expect(atRename).toEqual([[]]);
    expect([keys(store), store.appliedIndex()]).toEqual([["new"], 30n]);
    await vi.waitFor(() => expect(store.snapshotsOffLoop).toBe(true), { timeout: 20_000 });
    const again = store.beginSnapshot();
    const copy = new MvccStore({ path: join(dir, "copy.db") });
    stores.push(copy);
    copy.restore(await again.image, again.index);
    expect([keys(copy), copy.appliedIndex()]).toEqual([["new"], 30n]);
  });

  it("refuses to replace the file while the checkpointer's connection is still open, changing nothing", () => {
    // Proves a restore whose background checkpointer did not close in time fails with a clear
    // error and leaves the old file, its data and its applied index as they were.
    const store = open({ backgroundCheckpoints: true });
    putKeys(store, "kept", "also-kept");
    const close = WalCheckpointer.prototype.close;
    const stuck = vi.spyOn(WalCheckpointer.prototype, "close").mockImplementationOnce(function (
      this: WalCheckpointer,
    ) {
      close.call(this);
      return false; // as when the worker is still in a checkpoint at the deadline
    });
    expect(() => store.restore(imageOf("new"), 9n)).toThrow(DatabaseStillOpenError);
    stuck.mockRestore();
    expect(atRename).toEqual([]);
    expect(existsSync(`${path}.restore`)).toBe(false);
    const reopened = open();
    expect([keys(reopened), reopened.appliedIndex()]).toEqual([["also-kept", "kept"], 2n]);
  });
});

const member: MemberInfo = {
  id: 1n,
  name: "m1",
  peerUrls: ["http://127.0.0.1:1"],
  clientUrls: [],
  isLearner: false,
};
const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A member's Raft log as it is when the node has stored a snapshot from the leader and is
 * restoring it into the machine: the snapshot at `index` (synced before `restore` is called), then
 * one committed entry per key after it.
 */
async function logAfterInstall(raftDir: string, index: bigint, image: Uint8Array, keys: string[]) {
  mkdirSync(raftDir, { recursive: true });
  const log = new SqliteLogStore({ path: join(raftDir, "raft.db"), bootstrapVoters: [member.id] });
  const entries = keys.map((key, i) => ({
    index: index + 1n + BigInt(i),
    term: 2n,
    type: EntryType.Normal,
    data: encodeEnvelope({
      proposer: 2n,
      requestId: BigInt(i + 1),
      timestampMs: 0,
      seed: 0n,
      command: encodeCommand({ put: putRequest({ key: b(key), value: b(`value of ${key}`) }) }),
    }),
  }));
  const snapshot = {
    metadata: { index, term: 2n, confState: { voters: [member.id], learners: [] } },
    data: encodeLayerSnapshot([member], image),
  };
  log.persist({ hardState: { term: 2n, vote: 0n, commit: index + BigInt(keys.length) }, entries, snapshot });
  await log.sync();
  log.close();
}

describe("MvccStore.restore in memory", () => {
  it("installs an image of a file store, which says WAL mode in its header", () => {
    // Proves an in-memory store restores what a file store's snapshot produces (SQLite cannot
    // open a WAL-mode image in memory as it is).
    const file = open();
    putKeys(file, "a", "b");
    const memory = new MvccStore({ path: ":memory:" });
    stores.push(memory);
    memory.restore(file.snapshot(), 7n);
    expect([keys(memory), memory.appliedIndex()]).toEqual([["a", "b"], 7n]);
  });
});

describe("a restore interrupted by a crash", () => {
  it("leaves no file to trust: the store starts empty, the node installs its snapshot again and applies the log after it", async () => {
    // Proves the recovery end to end: the old file without its WAL and a half-written staged image
    // (what a crash during replaceDatabaseFile leaves) are discarded when the store opens, and the
    // member ends with the snapshot's keys plus the entries after it, at the right applied index.
    const old = new MvccStore({ path });
    old.applyBatch(entriesFor([{ put: putRequest({ key: b("old"), value: b("v") }) }], 5n));
    old.close();
    // Its pages as a checkpoint cut short would leave them, with the WAL that held the rest gone.
    const pages = readFileSync(path);
    pages.fill(0xa5, 4096);
    writeFileSync(path, pages);
    const image = imageOf("a", "b");
    writeFileSync(`${path}.restore`, image.subarray(0, image.length >> 1));
    const raftDir = join(dir, "raft");
    await logAfterInstall(raftDir, 10n, image, ["c", "d"]);

    const store = open();
    expect([keys(store), store.appliedIndex()]).toEqual([[], 0n]);
    expect(readdirSync(dir).filter((f) => f.startsWith("mvcc.db."))).toEqual([]);
    const config = { ...DEFAULT_NODE_CONFIG, tickMs: 10, id: member.id, dataDir: raftDir, logger: silent };
    const node = new RaftNode({ ...config, initialMembers: [member] }, store);
    try {
      expect([keys(store), store.appliedIndex(), node.appliedIndex()]).toEqual([["a", "b"], 10n, 10n]);
      node.start();
      await vi.waitFor(() => expect(store.appliedIndex()).toBe(12n), { timeout: 20_000 });
      expect(keys(store)).toEqual(["a", "b", "c", "d"]);
    } finally {
      node.stop();
    }
  });
});
