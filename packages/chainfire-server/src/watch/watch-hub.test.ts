import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { mvccpb } from "@photoncloud/chainfire-api";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { entriesFor } from "../testing/commands.js";
import { putRequest } from "../mvcc/messages.js";
import { MvccStore } from "../mvcc/store.js";
import { WatchHub } from "./watch-hub.js";

let dir: string;
let store: MvccStore;
let hub: WatchHub;
let index = 1n;

function putMany(count: number): void {
  const cmds = Array.from({ length: count }, (_, i) => ({
    put: putRequest({ key: Buffer.from(`k${i % 7}`), value: Buffer.from(String(index + BigInt(i))) }),
  }));
  store.applyBatch(entriesFor(cmds, index));
  index += BigInt(count);
}

/** A watch on the keys from "k" up to "l", from now on, without filters. */
const keysKtoL = {
  key: Buffer.from("k"),
  rangeEnd: Buffer.from("l"),
  startRevision: 0n,
  prevKv: false,
  noPut: false,
  noDelete: false,
};

/** A watch on key k3 with prev_kv from `startRevision`, collecting every event it is sent. */
function watchK3From(startRevision: bigint) {
  const received: mvccpb.Event[] = [];
  const spec = {
    ...keysKtoL,
    key: Buffer.from("k3"),
    rangeEnd: Buffer.alloc(0),
    startRevision,
    prevKv: true,
  };
  const watcher = hub.watch(0n, spec, (_w, delivery) => {
    received.push(...delivery.events);
    return true;
  });
  return { watcher, received };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chainfire-hub-"));
  store = new MvccStore({ path: join(dir, "mvcc.db") });
  hub = new WatchHub(store, { catchUpRowsMax: 16, catchUpIntervalMs: 1 });
});
afterEach(() => {
  hub.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

it("moves a refusing watcher to catch-up and later delivers every event once, in order", async () => {
  // Proves the bounded slow-watcher path: refusals cost storage reads, not buffered events.
  const received: mvccpb.Event[] = [];
  let accepting = false;
  const watcher = hub.watch(0n, keysKtoL, (_w, delivery) => {
    if (!accepting) return false;
    received.push(...delivery.events);
    return true;
  });
  putMany(50);
  expect(watcher.synced).toBe(false);
  putMany(50);
  accepting = true;
  hub.resume();
  await until(() => watcher.synced, "the watcher to be synced again");
  putMany(10);
  const revisions = received.map((e) => e.kv!.modRevision);
  expect(revisions).toEqual(Array.from({ length: 110 }, (_, i) => BigInt(i + 2)));
});

it("reads nothing for a watcher whose stream is blocked until it resumes, then says when it is synced", async () => {
  // Proves a client that stops reading costs no storage reads: before, every catch-up round read a
  // chunk of history for it only to be refused, every few milliseconds for as long as it stalled.
  let blocked = true;
  let looks = 0;
  let syncedCalls = 0;
  const received: mvccpb.Event[] = [];
  const watcher = hub.watch(
    0n,
    { ...keysKtoL, startRevision: 1n },
    (_w, delivery) => {
      if (blocked) return false;
      received.push(...delivery.events);
      return true;
    },
    {
      blocked: () => {
        looks++;
        return blocked;
      },
      synced: () => syncedCalls++,
    },
  );
  putMany(100);
  const reads = vi.spyOn(store, "eventsBetween");
  // A catch-up round looks at the watcher, finds its stream blocked and reads nothing for it.
  await until(() => looks > 0, "a catch-up round");
  expect(reads).not.toHaveBeenCalled();
  expect(watcher.synced).toBe(false);
  blocked = false;
  hub.resume();
  await until(() => watcher.synced, "the watcher to catch up once resumed");
  expect(reads).toHaveBeenCalled();
  expect(syncedCalls).toBe(1);
  expect(received.map((e) => e.kv!.modRevision)).toEqual(
    Array.from({ length: 100 }, (_, i) => BigInt(i + 2)),
  );
});

it("catches up from a past start revision in chunks, then follows live writes", async () => {
  // Proves history catch-up across several bounded reads with prev_kv filled from storage.
  putMany(40);
  const { watcher, received } = watchK3From(2n);
  await until(() => watcher.synced, "synced");
  putMany(7);
  expect(received.map((e) => e.kv!.key.toString())).toEqual(Array(7).fill("k3"));
  expect(received[1]!.prevKv!.value.toString()).toBe(received[0]!.kv!.value.toString());
});

it("resumes a congested watcher on a quiet key from its delivery, not from before a compaction", async () => {
  // Proves a synced watcher that falls behind is never wrongly cancelled by an unrelated compaction.
  let accepting = false;
  const received: mvccpb.Event[] = [];
  let compactRevision: bigint | undefined;
  const watcher = hub.watch(
    0n,
    {
      key: Buffer.from("quiet"),
      rangeEnd: Buffer.alloc(0),
      startRevision: 0n,
      prevKv: false,
      noPut: false,
      noDelete: false,
    },
    (_w, delivery) => {
      if (!accepting) return false;
      compactRevision ??= delivery.compactRevision;
      received.push(...delivery.events);
      return true;
    },
  );
  putMany(30);
  store.applyBatch(entriesFor([{ compaction: { revision: 25n, physical: true } }], index++));
  store.applyBatch(
    entriesFor([{ put: putRequest({ key: Buffer.from("quiet"), value: Buffer.from("v") }) }], index++),
  );
  expect(watcher.synced).toBe(false);
  accepting = true;
  hub.resume();
  await until(() => watcher.synced, "synced");
  expect([compactRevision, received.map((e) => e.kv!.key.toString())]).toEqual([undefined, ["quiet"]]);
});

it("leaves out prev_kv of an event at the compact revision, as etcd does, and keeps it above", async () => {
  // Proves what etcd gives: an event's prev_kv is the key's version before it, which a compaction
  // at the event's own revision removes; the next event's prev_kv is the version the compaction kept.
  putMany(21);
  store.applyBatch(entriesFor([{ compaction: { revision: 12n, physical: true } }], index++));
  const { watcher, received } = watchK3From(12n);
  await until(() => watcher.synced, "synced");
  expect(received.map((e) => [e.kv!.modRevision, e.prevKv?.modRevision])).toEqual([
    [12n, undefined],
    [19n, 12n],
  ]);
});

it("cancels a watch from a negative start revision as compacted, as etcd does", async () => {
  // Proves `etcdctl watch --rev -5` ends as etcd's does (compact revision -1 on a never-compacted
  // store), instead of watching from now.
  putMany(3);
  let compactRevision: bigint | undefined;
  const watcher = hub.watch(
    0n,
    {
      key: Buffer.from("k0"),
      rangeEnd: Buffer.alloc(0),
      startRevision: -5n,
      prevKv: false,
      noPut: false,
      noDelete: false,
    },
    (_w, delivery) => {
      compactRevision ??= delivery.compactRevision;
      return true;
    },
  );
  await until(() => watcher.canceled, "the watch to be canceled");
  expect(compactRevision).toBe(-1n);
});

it("delivers nothing before a future start revision, however many commits come first", () => {
  // Proves a watch from current + 5 starts at current + 5: quiet commits before it do not pull it back.
  putMany(1);
  const start = store.currentRevision() + 5n;
  const revisions: bigint[] = [];
  hub.watch(
    0n,
    {
      key: Buffer.from("k0"),
      rangeEnd: Buffer.alloc(0),
      startRevision: start,
      prevKv: false,
      noPut: false,
      noDelete: false,
    },
    (_w, delivery) => {
      for (const e of delivery.events) revisions.push(e.kv!.modRevision);
      return true;
    },
  );
  for (let i = 0; i < 8; i++) {
    store.applyBatch(
      entriesFor([{ put: putRequest({ key: Buffer.from("k0"), value: Buffer.from("v") }) }], index),
    );
    index += 1n;
  }
  expect(revisions).toEqual([start, start + 1n, start + 2n, start + 3n]);
});

it("sends a synced watcher one response per revision, as etcd does, when a batch holds several", () => {
  // Proves etcd's live delivery: each write's events in a response of their own, whose header is
  // that write's revision. Before, a batch's events went out in one response with its last revision.
  const deliveries: { revision: bigint; keys: string[] }[] = [];
  hub.watch(0n, keysKtoL, (_w, delivery) => {
    deliveries.push({
      revision: delivery.revision,
      keys: delivery.events.map((e) => e.kv!.key.toString()),
    });
    return true;
  });
  const txn = {
    txn: {
      compare: [],
      success: [
        { requestPut: putRequest({ key: Buffer.from("k5"), value: Buffer.from("t") }) },
        { requestPut: putRequest({ key: Buffer.from("k6"), value: Buffer.from("t") }) },
      ],
      failure: [],
    },
  };
  const cmds = [
    { put: putRequest({ key: Buffer.from("k1"), value: Buffer.from("a") }) },
    { put: putRequest({ key: Buffer.from("x"), value: Buffer.from("not watched") }) },
    txn,
    { put: putRequest({ key: Buffer.from("k2"), value: Buffer.from("b") }) },
  ];
  store.applyBatch(entriesFor(cmds, index));
  index += BigInt(cmds.length);
  expect(deliveries).toEqual([
    { revision: 2n, keys: ["k1"] },
    { revision: 4n, keys: ["k5", "k6"] },
    { revision: 5n, keys: ["k2"] },
  ]);
});
