// SqlStateMachine.restore and the database's files: what a restore leaves open, what it refuses,
// and what a crash in the middle of one leaves for the next start.
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
import { SqlStateMachine } from "../src/sql/state-machine.js";
import { applySql, execCommand, rows, stmt } from "./helpers.js";

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

let dir: string;
let path: string;
const machines: SqlStateMachine[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "flaredb-files-"));
  path = join(dir, "db.sqlite");
  atRename.length = 0;
});
afterEach(() => {
  for (const m of machines.splice(0)) m.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(options: { path?: string; backgroundCheckpoints?: boolean } = {}): SqlStateMachine {
  const sm = new SqlStateMachine({ path, ...options });
  machines.push(sm);
  return sm;
}

/** An image of a database whose table `t` holds `names`. */
function imageOf(...names: string[]): Uint8Array {
  const source = new SqlStateMachine({ path: join(dir, "source.sqlite") });
  applySql(source, "CREATE TABLE t (name TEXT)", ...names.map((n) => `INSERT INTO t VALUES ('${n}')`));
  const image = source.snapshot();
  source.close();
  return image;
}

const names = (sm: SqlStateMachine) => rows(sm, "SELECT name FROM t ORDER BY name").map((r) => r[0]);

describe("SqlStateMachine.restore", () => {
  it("closes every connection to the file before replacing it, then takes snapshots off the loop again", async () => {
    // Proves that when the new file is renamed into place no connection is open on the old one
    // (the snapshot worker's, with a snapshot being made; the background checkpointer's; the
    // writer's), and that the worker comes back on the new file.
    const image = imageOf("new");
    const sm = open({ backgroundCheckpoints: true });
    await sm.startSnapshotWorker();
    applySql(sm, "CREATE TABLE t (name TEXT)", "INSERT INTO t VALUES ('old')");
    const job = sm.beginSnapshot();
    job.image.catch(() => {}); // made before the worker closed, or failed by its close
    sm.restore(image, 30n);
    expect(atRename).toEqual([[]]);
    expect([names(sm), sm.appliedIndex()]).toEqual([["new"], 30n]);
    await vi.waitFor(() => expect(sm.snapshotsOffLoop).toBe(true), { timeout: 20_000 });
    const again = sm.beginSnapshot();
    const copy = open({ path: join(dir, "copy.sqlite") });
    copy.restore(await again.image, again.index);
    expect([names(copy), copy.appliedIndex()]).toEqual([["new"], 30n]);
  });

  it("refuses to replace the file while the checkpointer's connection is still open, changing nothing", () => {
    // Proves a restore whose background checkpointer did not close in time fails with a clear
    // error and leaves the old file, its rows and its applied index as they were.
    const image = imageOf("new");
    const sm = open({ backgroundCheckpoints: true });
    applySql(sm, "CREATE TABLE t (name TEXT)", "INSERT INTO t VALUES ('kept')");
    const close = WalCheckpointer.prototype.close;
    const stuck = vi.spyOn(WalCheckpointer.prototype, "close").mockImplementationOnce(function (
      this: WalCheckpointer,
    ) {
      close.call(this);
      return false; // as when the worker is still in a checkpoint at the deadline
    });
    expect(() => sm.restore(image, 9n)).toThrow(DatabaseStillOpenError);
    stuck.mockRestore();
    expect(atRename).toEqual([]);
    expect(existsSync(`${path}.restore`)).toBe(false);
    const reopened = open();
    expect([names(reopened), reopened.appliedIndex()]).toEqual([["kept"], 2n]);
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
 * one committed entry per SQL statement after it.
 */
async function logAfterInstall(raftDir: string, index: bigint, image: Uint8Array, sqls: string[]) {
  mkdirSync(raftDir, { recursive: true });
  const log = new SqliteLogStore({ path: join(raftDir, "raft.db"), bootstrapVoters: [member.id] });
  const entries = sqls.map((sql, i) => ({
    index: index + 1n + BigInt(i),
    term: 2n,
    type: EntryType.Normal,
    data: encodeEnvelope({
      proposer: 2n,
      requestId: BigInt(i + 1),
      timestampMs: 1_700_000_000_000,
      seed: 7n,
      command: execCommand([stmt(sql)]),
    }),
  }));
  const snapshot = {
    metadata: { index, term: 2n, confState: { voters: [member.id], learners: [] } },
    data: encodeLayerSnapshot([member], image),
  };
  log.persist({ hardState: { term: 2n, vote: 0n, commit: index + BigInt(sqls.length) }, entries, snapshot });
  await log.sync();
  log.close();
}

describe("SqlStateMachine.restore in memory", () => {
  it("installs the image in memory, writing no file", () => {
    // Proves an in-memory machine restores an image of a file database (which says WAL mode in its
    // header) with its rows and the given applied index, instead of a file named ":memory:".
    const image = imageOf("a", "b");
    const sm = open({ path: ":memory:" });
    applySql(sm, "CREATE TABLE other (x)");
    sm.restore(image, 7n);
    expect([names(sm), sm.appliedIndex()]).toEqual([["a", "b"], 7n]);
    applySql(sm, "INSERT INTO t VALUES ('c')");
    expect([names(sm), sm.appliedIndex()]).toEqual([["a", "b", "c"], 8n]);
    expect(existsSync(":memory:") || existsSync(":memory:.restore")).toBe(false);
  });
});

describe("a restore interrupted by a crash", () => {
  it("leaves no file to trust: the machine starts empty, the node installs its snapshot again and applies the log after it", async () => {
    // Proves the recovery end to end: the old file without its WAL and a half-written staged image
    // (what a crash during replaceDatabaseFile leaves) are discarded when the machine opens, and
    // the member ends with the snapshot's rows plus the entries after it, at the right applied index.
    const old = new SqlStateMachine({ path });
    applySql(old, "CREATE TABLE t (name TEXT)", "INSERT INTO t VALUES ('old')");
    old.close();
    // Its pages as a checkpoint cut short would leave them, with the WAL that held the rest gone.
    const pages = readFileSync(path);
    pages.fill(0xa5, 4096);
    writeFileSync(path, pages);
    const image = imageOf("a", "b");
    writeFileSync(`${path}.restore`, image.subarray(0, image.length >> 1));
    const raftDir = join(dir, "raft");
    await logAfterInstall(raftDir, 10n, image, ["INSERT INTO t VALUES ('c')", "INSERT INTO t VALUES ('d')"]);

    const sm = open();
    expect([rows(sm, "SELECT name FROM sqlite_schema WHERE name = 't'"), sm.appliedIndex()]).toEqual([
      [],
      0n,
    ]);
    expect(readdirSync(dir).filter((f) => f.startsWith("db.sqlite."))).toEqual([]);
    const config = { ...DEFAULT_NODE_CONFIG, tickMs: 10, id: member.id, dataDir: raftDir, logger: silent };
    const node = new RaftNode({ ...config, initialMembers: [member] }, sm);
    try {
      expect([names(sm), sm.appliedIndex(), node.appliedIndex()]).toEqual([["a", "b"], 10n, 10n]);
      node.start();
      await vi.waitFor(() => expect(sm.appliedIndex()).toBe(12n), { timeout: 20_000 });
      expect(names(sm)).toEqual(["a", "b", "c", "d"]);
    } finally {
      node.stop();
    }
  });
});
