// MvccStore.restore and the store's files: what a restore leaves open, what it refuses, and what a
// crash in the middle of one leaves for the next start.
import { existsSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DatabaseStillOpenError, WalCheckpointer } from "@photoncloud/raft";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { entriesFor } from "../testing/commands.js";
import { putRequest, rangeRequest } from "./messages.js";
import { MvccStore } from "./store.js";

/** This process's descriptors open on files in `folder` (worker threads' included). */
function openIn(folder: string): string[] {
  const prefix = `${realpathSync(folder)}/`;
  const found: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(prefix)) found.push(target);
    } catch {
      // closed since the listing
    }
  }
  return found;
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
