import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { type command, etcd, mvccpb } from "@photoncloud/chainfire-api";
import { status } from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { errorFromResult } from "../errors.js";
import { decodeResult, entriesFor } from "../testing/commands.js";
import { keyRange } from "./key-range.js";
import { deleteRangeRequest, putRequest, rangeRequest } from "./messages.js";
import { MvccStore } from "./store.js";

const b = (s: string) => Buffer.from(s);
let dir: string;
let store: MvccStore;
let nextIndex: bigint;

function apply(...cmds: command.MvccCommand[]): command.MvccResult[] {
  const results = store.applyBatch(entriesFor(cmds, nextIndex, 1_000_000));
  nextIndex += BigInt(cmds.length);
  return results.map(decodeResult);
}
const put = (key: string, value: string, extra: Partial<etcd.PutRequest> = {}) =>
  apply({ put: putRequest({ key: b(key), value: b(value), ...extra }) })[0]!;
const keysOf = (r: etcd.RangeResponse) => r.kvs.map((kv) => kv.key.toString());
/** The client images beside the store file `name`. */
const imageFiles = (name: string) => readdirSync(dir).filter((f) => f.startsWith(`${name}.client-image-`));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chainfire-mvcc-"));
  store = new MvccStore({ path: join(dir, "mvcc.db") });
  nextIndex = 1n;
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("MvccStore", () => {
  it("tracks the global revision and per-key create/mod revision and version", () => {
    // Proves etcd's per-key bookkeeping across puts and a delete/recreate.
    put("a", "1");
    put("b", "1");
    put("a", "2");
    const a = store.range(rangeRequest({ key: b("a") })).kvs[0]!;
    expect([a.createRevision, a.modRevision, a.version, a.value.toString()]).toEqual([2n, 4n, 2n, "2"]);
    apply({ deleteRange: deleteRangeRequest({ key: b("a") }) });
    put("a", "3");
    const again = store.range(rangeRequest({ key: b("a") })).kvs[0]!;
    expect([again.createRevision, again.version, store.currentRevision()]).toEqual([6n, 1n, 6n]);
  });

  it("reads history at a revision and refuses compacted and future revisions with etcd's errors", async () => {
    // Proves Range at a revision, and compaction removing history with the exact error texts.
    put("k", "v1");
    put("k", "v2");
    expect(store.range(rangeRequest({ key: b("k"), revision: 2n })).kvs[0]!.value.toString()).toBe("v1");
    expect(() => store.range(rangeRequest({ key: b("k"), revision: 9n }))).toThrow(
      "etcdserver: mvcc: required revision is a future revision",
    );
    const [compacted] = apply({ compaction: { revision: 3n, physical: true } });
    expect(compacted!.compaction).toBeDefined();
    expect(() => store.range(rangeRequest({ key: b("k"), revision: 2n }))).toThrow(
      "etcdserver: mvcc: required revision has been compacted",
    );
    expect(store.range(rangeRequest({ key: b("k"), revision: 3n })).kvs[0]!.value.toString()).toBe("v2");
    const [again] = apply({ compaction: { revision: 3n, physical: true } });
    expect(again!.error?.message).toBe("etcdserver: mvcc: required revision has been compacted");
    // HashKV at the compaction revision or below is refused as etcd refuses it; above, or 0 (now), served.
    for (const rev of [2n, 3n]) {
      await expect(store.hashKV(rev)).rejects.toThrow(
        "etcdserver: mvcc: required revision has been compacted",
      );
    }
    put("k", "v3");
    expect(await store.hashKV(4n)).toMatchObject({ revision: 4n, compactRevision: 3n });
    expect((await store.hashKV(0n)).hash).toBe((await store.hashKV(4n)).hash);
    await expect(store.hashKV(5n)).rejects.toThrow(
      "etcdserver: mvcc: required revision is a future revision",
    );
  });

  it("counts puts, deletes, ranges and txns as etcd 3.4's store does", () => {
    // Proves the figures behind etcd_mvcc_{put,delete,range,txn}_total. Each step's expected
    // change is what an etcd 3.4.23 member's /metrics showed for the same request through etcdctl.
    const counts = () => ({ ...store.stats });
    let last = counts();
    const step = (expected: Partial<typeof last>) => {
      const now = counts();
      const delta = {
        puts: now.puts - last.puts,
        deletes: now.deletes - last.deletes,
        ranges: now.ranges - last.ranges,
        txns: now.txns - last.txns,
      };
      last = now;
      return expect(delta).toEqual({ puts: 0, deletes: 0, ranges: 0, txns: 0, ...expected });
    };
    const cmp = (key: string, value: string): etcd.Compare => ({
      result: etcd.Compare_CompareResult.EQUAL,
      target: etcd.Compare_CompareTarget.VALUE,
      key: b(key),
      value: b(value),
      rangeEnd: Buffer.alloc(0),
    });
    put("a", "1");
    step({ puts: 1 });
    put("a", "2", { prevKv: true });
    step({ puts: 1, ranges: 1, txns: 1 });
    store.range(rangeRequest({ key: b("a") }));
    step({ ranges: 1 });
    apply({ deleteRange: deleteRangeRequest({ key: b("a"), prevKv: true }) });
    step({ deletes: 1, ranges: 1, txns: 1 });
    put("b", "1");
    step({ puts: 1 });
    // A txn's compares are read in one store transaction and its operations run in another.
    const getB = { requestRange: rangeRequest({ key: b("b") }) };
    const putC = { requestPut: putRequest({ key: b("c"), value: b("1") }) };
    apply({ txn: { compare: [cmp("b", "1"), cmp("b", "1")], success: [putC, getB], failure: [] } });
    step({ puts: 1, ranges: 3, txns: 2 });
    // A read-only txn is one store transaction.
    store.readTxn({ compare: [cmp("b", "1")], success: [getB], failure: [] });
    step({ ranges: 2, txns: 1 });
    const putD = { requestPut: putRequest({ key: b("d"), value: b("1"), prevKv: true }) };
    apply({ txn: { compare: [cmp("b", "1")], success: [putD], failure: [] } });
    step({ puts: 1, ranges: 2, txns: 1 });
    // A revoked lease deletes each of its keys in one store transaction.
    apply({ leaseGrant: { TTL: 100n, ID: 9n } });
    put("k1", "v", { lease: 9n });
    put("k2", "v", { lease: 9n });
    step({ puts: 2 });
    apply({ leaseRevoke: { ID: 9n } });
    step({ deletes: 2, txns: 1 });
    apply({ deleteRange: deleteRangeRequest({ key: b("b") }) });
    step({ deletes: 1 });
  });

  it("hashes its history as etcd 3.4 does", async () => {
    // Proves HashKV gives etcd's number for the same history. The expected values are what an
    // etcd 3.4.23 member answered for an empty store and after `put a 1`, `put a 2`; the
    // differential test compares longer histories (txns, deletions, compaction) with a live etcd.
    expect(await store.hashKV(0n)).toEqual({ hash: 1084519789, revision: 1n, compactRevision: -1n });
    put("a", "1");
    put("a", "2");
    expect((await store.hashKV(0n)).hash).toBe(535221974);
    // A negative revision hashes no row (etcd maps only 0 to the current revision).
    expect(await store.hashKV(-1n)).toEqual({ hash: 1084519789, revision: 3n, compactRevision: -1n });
  });

  it("hashes the history as it was when asked, while later writes and a compaction go on", async () => {
    // Proves HashKV reads a pinned view a chunk at a time: writes and a compaction applied while
    // it runs (between its chunks) neither reach nor disturb it, and the member keeps applying.
    const value = "v".repeat(64);
    for (let i = 0; i < 40; i++) {
      apply(
        ...Array.from({ length: 50 }, (_, j) => ({
          put: putRequest({ key: b(`k${(i * 50 + j) % 300}`), value: b(value) }),
        })),
      );
    }
    const before = await store.hashKV(0n);
    const during = store.hashKV(0n);
    // One event-loop turn: the hash has pinned its view and read its first chunk of rows.
    await new Promise((resolve) => setImmediate(resolve));
    put("k1", "changed");
    apply({ compaction: { revision: 1500n, physical: true } });
    put("k2", "changed");
    expect(await during).toEqual(before);
    expect((await store.hashKV(0n)).hash).not.toBe(before.hash);
  });

  it("answers HashKV as of before or after a compaction that lands while it runs, never a mix", async () => {
    // Proves a compaction landing while HashKV reads which revisions the last compaction kept
    // (chunked across turns for many keys) or its rows gives the answer of a HashKV asked just
    // before or just after that compaction.
    const value = b("v".repeat(16));
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 120; i++) {
        apply(
          ...Array.from({ length: 100 }, (_, j) => ({
            put: putRequest({ key: b(`k${i * 100 + j}`), value }),
          })),
        );
      }
    }
    apply({ compaction: { revision: 3000n, physical: true } });
    const before = await store.hashKV(0n);
    const during = store.hashKV(0n);
    await new Promise((resolve) => setImmediate(resolve));
    apply({ compaction: { revision: 20000n, physical: true } });
    const after = await store.hashKV(0n);
    expect(after.hash).not.toBe(before.hash);
    expect([before, after]).toContainEqual(await during);
  });

  it("refuses a HashKV the store was closed under, instead of answering a partial hash", async () => {
    // Proves a hash interrupted by the store closing (shutdown, or a restore replacing the file)
    // fails with etcd's "server stopped" rather than returning the hash of some of the rows.
    for (let i = 0; i < 4; i++)
      apply(
        ...Array.from({ length: 200 }, (_, j) => ({
          put: putRequest({ key: b(`k${i}-${j}`), value: b("v") }),
        })),
      );
    const during = store.hashKV(0n);
    await new Promise((resolve) => setImmediate(resolve));
    store.close();
    await expect(during).rejects.toThrow("etcdserver: server stopped");
    store = new MvccStore({ path: join(dir, "mvcc.db") });
    // Closed before the hash began reading: refused too.
    const early = store.hashKV(0n);
    store.close();
    await expect(early).rejects.toThrow("etcdserver: server stopped");
    store = new MvccStore({ path: join(dir, "mvcc.db") });
  });

  it("reads the compaction of a data directory written before compact revision -1 existed", async () => {
    // Proves an older store (which recorded 0 for "never compacted" under compact_revision) opens
    // as never compacted, and one compacted at 3 opens compacted at 3.
    put("k", "v1");
    put("k", "v2");
    const path = join(dir, "mvcc.db");
    for (const [legacy, expected] of [
      [0n, -1n],
      [3n, 3n],
    ] as const) {
      store.close();
      const db = new Database(path);
      db.prepare("DELETE FROM meta WHERE name = 'compacted_revision'").run();
      db.prepare("INSERT OR REPLACE INTO meta (name, value) VALUES ('compact_revision', ?)").run(legacy);
      db.close();
      store = new MvccStore({ path });
      expect((await store.hashKV(0n)).compactRevision).toBe(expected);
    }
  });

  it("honours prefix, from-key, limit, count, sort, keys_only, count_only and revision filters", () => {
    // Proves every RangeRequest field on one data set.
    for (const [k, v] of [
      ["p/a", "3"],
      ["p/b", "1"],
      ["p/c", "2"],
      ["q", "0"],
    ])
      put(k!, v!);
    put("p/b", "9");
    const prefix = store.range(rangeRequest({ key: b("p/"), rangeEnd: b("p0") }));
    expect(keysOf(prefix)).toEqual(["p/a", "p/b", "p/c"]);
    expect(keysOf(store.range(rangeRequest({ key: b("p/b"), rangeEnd: Buffer.from([0]) })))).toEqual([
      "p/b",
      "p/c",
      "q",
    ]);
    const limited = store.range(rangeRequest({ key: b("p/"), rangeEnd: b("p0"), limit: 2n }));
    expect([keysOf(limited), limited.more, limited.count]).toEqual([["p/a", "p/b"], true, 3n]);
    const byValue = store.range(
      rangeRequest({ key: b("p/"), rangeEnd: b("p0"), sortTarget: etcd.RangeRequest_SortTarget.VALUE }),
    );
    expect(keysOf(byValue)).toEqual(["p/c", "p/a", "p/b"]);
    const desc = store.range(
      rangeRequest({
        key: b("p/"),
        rangeEnd: b("p0"),
        sortOrder: etcd.RangeRequest_SortOrder.DESCEND,
        limit: 1n,
      }),
    );
    expect([keysOf(desc), desc.more]).toEqual([["p/c"], true]);
    const keysOnly = store.range(rangeRequest({ key: b("p/a"), keysOnly: true }));
    expect(keysOnly.kvs[0]!.value.length).toBe(0);
    const countOnly = store.range(rangeRequest({ key: b("p/"), rangeEnd: b("p0"), countOnly: true }));
    expect([countOnly.kvs.length, countOnly.count]).toEqual([0, 3n]);
    const modded = store.range(rangeRequest({ key: b("p/"), rangeEnd: b("p0"), minModRevision: 5n }));
    expect(keysOf(modded)).toEqual(["p/b"]);
    const created = store.range(rangeRequest({ key: b("p/"), rangeEnd: b("p0"), maxCreateRevision: 3n }));
    expect(keysOf(created)).toEqual(["p/a", "p/b"]);
  });

  it("applies put options: prev_kv, ignore_value, ignore_lease, and refuses unknown leases", () => {
    // Proves Put's options and their errors, which change nothing.
    put("k", "v1");
    const r = put("k", "v2", { prevKv: true });
    expect(r.put!.prevKv!.value.toString()).toBe("v1");
    put("k", "", { ignoreValue: true });
    expect(store.range(rangeRequest({ key: b("k") })).kvs[0]!.value.toString()).toBe("v2");
    expect(put("missing", "", { ignoreValue: true }).error!.message).toBe("etcdserver: key not found");
    const before = store.currentRevision();
    expect(put("k", "v", { lease: 42n }).error!.message).toBe("etcdserver: requested lease not found");
    // Both wrong: a put alone checks the lease first, a put inside a txn the key first, as etcd does.
    expect(put("missing", "", { ignoreValue: true, lease: 42n }).error!.message).toBe(
      "etcdserver: requested lease not found",
    );
    const [inTxn] = apply({
      txn: {
        compare: [],
        success: [{ requestPut: putRequest({ key: b("missing"), ignoreValue: true, lease: 42n }) }],
        failure: [],
      },
    });
    expect(inTxn!.error!.message).toBe("etcdserver: key not found");
    expect(store.currentRevision()).toBe(before);
  });

  it("runs txns with compares on every target, nested txns and one revision", () => {
    // Proves txn branching, nested txns, reads of the txn's own writes and one revision per txn.
    put("x", "1");
    const [res] = apply({
      txn: {
        compare: [
          {
            result: etcd.Compare_CompareResult.EQUAL,
            target: etcd.Compare_CompareTarget.VALUE,
            key: b("x"),
            value: b("1"),
            rangeEnd: Buffer.alloc(0),
          },
          {
            result: etcd.Compare_CompareResult.LESS,
            target: etcd.Compare_CompareTarget.VERSION,
            key: b("y"),
            version: 1n,
            rangeEnd: Buffer.alloc(0),
          },
        ],
        success: [
          { requestPut: putRequest({ key: b("y"), value: b("2") }) },
          { requestPut: putRequest({ key: b("z"), value: b("3") }) },
          { requestRange: rangeRequest({ key: b("y") }) },
          {
            requestTxn: {
              compare: [
                {
                  result: etcd.Compare_CompareResult.EQUAL,
                  target: etcd.Compare_CompareTarget.LEASE,
                  key: b("x"),
                  lease: 0n,
                  rangeEnd: Buffer.alloc(0),
                },
              ],
              success: [{ requestDeleteRange: deleteRangeRequest({ key: b("x"), prevKv: true }) }],
              failure: [],
            },
          },
        ],
        failure: [],
      },
    });
    const txn = res!.txn!;
    expect(txn.succeeded).toBe(true);
    expect(txn.responses[2]!.responseRange!.kvs[0]!.value.toString()).toBe("2");
    expect(txn.responses[3]!.responseTxn!.responses[0]!.responseDeleteRange!.deleted).toBe(1n);
    expect(store.currentRevision()).toBe(3n);
    const z = store.range(rangeRequest({ key: b("z") })).kvs[0]!;
    expect(z.modRevision).toBe(3n);
  });

  it("takes compare targets and results outside etcd's enums as etcd does", () => {
    // Proves hand-made compares: an unknown target compares as equal, an unknown result holds,
    // for an existing key and for a missing one (etcd's compareKV).
    put("x", "1");
    const outcome = (target: number, result: number, key: string) =>
      apply({
        txn: {
          compare: [
            {
              result: result as etcd.Compare_CompareResult,
              target: target as etcd.Compare_CompareTarget,
              key: b(key),
              version: 5n,
              rangeEnd: Buffer.alloc(0),
            },
          ],
          success: [],
          failure: [],
        },
      })[0]!.txn!.succeeded;
    const { EQUAL, NOT_EQUAL } = etcd.Compare_CompareResult;
    expect([outcome(7, EQUAL, "x"), outcome(7, NOT_EQUAL, "x"), outcome(7, EQUAL, "missing")]).toEqual([
      true,
      false,
      true,
    ]);
    const { VERSION } = etcd.Compare_CompareTarget;
    expect([outcome(VERSION, 9, "x"), outcome(VERSION, 9, "missing")]).toEqual([true, true]);
  });

  it("gives each txn operation the revision the txn had reached, and a nested txn an empty header", () => {
    // Proves the headers etcd 3.4 puts in a txn's answer: reads and no-op deletes before the first
    // change carry the revision before the txn, everything after it the txn's own; a nested txn's
    // own header is empty while its operations' are filled.
    put("a", "1");
    const range = (key: string) => ({ requestRange: rangeRequest({ key: b(key) }) });
    const [res] = apply({
      txn: {
        compare: [],
        success: [
          range("a"),
          { requestDeleteRange: deleteRangeRequest({ key: b("none") }) },
          {
            requestTxn: {
              compare: [],
              success: [range("a"), { requestPut: putRequest({ key: b("n"), value: b("v") }) }, range("a")],
              failure: [],
            },
          },
          { requestDeleteRange: deleteRangeRequest({ key: b("none") }) },
        ],
        failure: [],
      },
    });
    const txn = res!.txn!;
    const nested = txn.responses[2]!.responseTxn!;
    expect([
      txn.header!.revision,
      txn.responses[0]!.responseRange!.header!.revision,
      txn.responses[1]!.responseDeleteRange!.header!.revision,
      nested.header,
      nested.responses.map((r) => (r.responseRange ?? r.responsePut)!.header!.revision),
      txn.responses[3]!.responseDeleteRange!.header!.revision,
    ]).toEqual([3n, 2n, 2n, { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n }, [2n, 3n, 3n], 3n]);
  });

  it("refuses a txn whose reads are at a compacted or future revision before any of it is applied", () => {
    // Proves etcd's check of every read revision in the chosen branch ahead of the writes: before,
    // a put ahead of the bad read was applied while the txn answered an error.
    put("b", "1");
    put("b", "2");
    put("b", "3");
    apply({ compaction: { revision: 3n, physical: true } });
    const before = store.currentRevision();
    const txnOf = (...success: etcd.RequestOp[]) => apply({ txn: { compare: [], success, failure: [] } })[0]!;
    const write = { requestPut: putRequest({ key: b("a"), value: b("1") }) };
    const readAt = (revision: bigint) => ({ requestRange: rangeRequest({ key: b("b"), revision }) });
    const nested = (op: etcd.RequestOp) => ({ requestTxn: { compare: [], success: [op], failure: [] } });
    const cases: [etcd.RequestOp[], string][] = [
      [[write, readAt(2n)], "etcdserver: mvcc: required revision has been compacted"],
      [[write, nested(readAt(2n))], "etcdserver: mvcc: required revision has been compacted"],
      [[write, readAt(-1n)], "etcdserver: mvcc: required revision has been compacted"],
      // The txn's own revision is a future one for its reads, as in etcd.
      [[write, readAt(before + 1n)], "etcdserver: mvcc: required revision is a future revision"],
    ];
    for (const [ops, message] of cases) {
      expect(txnOf(...ops).error?.message).toBe(message);
      expect(store.range(rangeRequest({ key: b("a") })).kvs).toEqual([]);
      expect(store.currentRevision()).toBe(before);
    }
    expect(() => store.readTxn({ compare: [], success: [readAt(before + 1n)], failure: [] })).toThrow(
      "etcdserver: mvcc: required revision is a future revision",
    );
    // Reads at the compaction revision and above, and at 0 (now), are served.
    const ok = txnOf(write, readAt(3n), readAt(0n)).txn!;
    expect(ok.responses.map((r) => r.responseRange?.kvs[0]?.value.toString())).toEqual([undefined, "2", "3"]);
    expect(store.range(rangeRequest({ key: b("a") })).kvs[0]!.modRevision).toBe(before + 1n);
  });

  it("sorts by a field without an order among the first keys only, as etcd does", () => {
    // Proves etcd's Range: a sort target without a sort order fetches limit + 1 keys in key order
    // and sorts those ascending; with an order it sorts every key before the limit.
    put("p/a", "3");
    put("p/b", "2");
    put("p/c", "1");
    const T = etcd.RangeRequest_SortTarget;
    const O = etcd.RangeRequest_SortOrder;
    const get = (sortOrder: etcd.RangeRequest_SortOrder) =>
      store.range(
        rangeRequest({ key: b("p/"), rangeEnd: b("p0"), sortTarget: T.VALUE, sortOrder, limit: 1n }),
      );
    const none = get(O.NONE);
    expect([keysOf(none), none.more, none.count]).toEqual([["p/b"], true, 3n]);
    const ascend = get(O.ASCEND);
    expect([keysOf(ascend), ascend.more, ascend.count]).toEqual([["p/c"], true, 3n]);
  });

  it("counts a nested txn's operations against what its parent leaves, and refuses an empty op, as etcd", () => {
    // Proves etcd's checkTxnRequest limits (128 operations by default here): before, every nested
    // txn had the whole limit again, and an empty operation answered another error text.
    const reads = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ requestRange: rangeRequest({ key: b(`r${i}`) }) }));
    const nested = (outer: number, inner: number) =>
      apply({
        txn: {
          compare: [],
          success: [...reads(outer - 1), { requestTxn: { compare: [], success: reads(inner), failure: [] } }],
          failure: [],
        },
      })[0]!;
    expect(nested(64, 64).txn!.succeeded).toBe(true);
    expect(nested(64, 65).error!.message).toBe("etcdserver: too many operations in txn request");
    expect(nested(100, 100).error!.message).toBe("etcdserver: too many operations in txn request");
    const [empty] = apply({ txn: { compare: [], success: [{}], failure: [] } });
    expect(empty!.error!.message).toBe("etcdserver: key not found");
  });

  it("reads a negative revision in a txn as now until the first compaction, as etcd does", () => {
    put("b", "1");
    const [res] = apply({
      txn: {
        compare: [],
        success: [{ requestRange: rangeRequest({ key: b("b"), revision: -1n }) }],
        failure: [],
      },
    });
    expect(res!.txn!.responses[0]!.responseRange!.kvs[0]!.value.toString()).toBe("1");
    const [below] = apply({
      txn: {
        compare: [],
        success: [{ requestRange: rangeRequest({ key: b("b"), revision: -2n }) }],
        failure: [],
      },
    });
    expect(below!.error?.message).toBe("etcdserver: mvcc: required revision has been compacted");
  });

  it("refuses duplicate keys and too many operations in a txn", () => {
    // Proves etcd's txn request checks, with the exact messages.
    const dup = apply({
      txn: {
        compare: [],
        success: [
          { requestPut: putRequest({ key: b("a"), value: b("1") }) },
          { requestDeleteRange: deleteRangeRequest({ key: b("a") }) },
        ],
        failure: [],
      },
    })[0]!;
    expect(dup.error!.message).toBe("etcdserver: duplicate key given in txn request");
    // A delete open at the end ("\0") holds every key from its key on: refused too, where etcd 3.4
    // takes that range as empty and applies both (README, "Two txns").
    const fromKey = apply({
      txn: {
        compare: [],
        success: [
          { requestPut: putRequest({ key: b("a/1"), value: b("1") }) },
          { requestDeleteRange: deleteRangeRequest({ key: b("a"), rangeEnd: Buffer.from([0]) }) },
        ],
        failure: [],
      },
    })[0]!;
    expect(fromKey.error!.message).toBe("etcdserver: duplicate key given in txn request");
    const ops = Array.from({ length: 129 }, (_, i) => ({
      requestPut: putRequest({ key: b(`k${i}`), value: b("v") }),
    }));
    const many = apply({ txn: { compare: [], success: ops, failure: [] } })[0]!;
    expect(many.error!.message).toBe("etcdserver: too many operations in txn request");
    expect(store.currentRevision()).toBe(1n);
  });

  it("gives no prev_kv where the revision before the event is compacted, where etcd's read fails", () => {
    put("k", "1");
    put("k", "2");
    put("k", "3");
    apply({ compaction: { revision: 3n, physical: true } });
    const events = store.eventsBetween(keyRange(b("k"), Buffer.alloc(0)), 3n, 4n, 100).events;
    expect(events.map((e) => [e.kv!.modRevision, e.prevKv?.value.toString()])).toEqual([
      [3n, undefined],
      [4n, "2"],
    ]);
  });

  it("gives a watch event the key's value from the revision before it as prev_kv, as etcd does", () => {
    // A txn that puts keys in one nested txn and deletes them in a later one (etcd's duplicate-key
    // check allows it): the delete's prev_kv is the value from before the txn (none for a key the
    // txn created), live and when read back from history.
    const live: mvccpb.Event[] = [];
    store.subscribe((events) => live.push(...events));
    put("a/1", "old");
    put("a/2", "old");
    const nested = (...ops: etcd.RequestOp[]) => ({ requestTxn: { compare: [], success: ops, failure: [] } });
    const putThenDelete = {
      txn: {
        compare: [],
        success: [
          nested(
            { requestPut: putRequest({ key: b("a/1"), value: b("new") }) },
            { requestPut: putRequest({ key: b("a/3"), value: b("new") }) },
          ),
          nested({ requestDeleteRange: deleteRangeRequest({ key: b("a/"), rangeEnd: b("a0") }) }),
        ],
        failure: [],
      },
    };
    expect(apply(putThenDelete)[0]!.error).toBeUndefined();
    const summary = (events: mvccpb.Event[]) =>
      events.map((e) => [e.type, e.kv!.key.toString(), e.kv!.modRevision, e.prevKv?.value.toString()]);
    const expected = [
      [mvccpb.Event_EventType.PUT, "a/1", 2n, undefined],
      [mvccpb.Event_EventType.PUT, "a/2", 3n, undefined],
      [mvccpb.Event_EventType.PUT, "a/1", 4n, "old"],
      [mvccpb.Event_EventType.PUT, "a/3", 4n, undefined],
      [mvccpb.Event_EventType.DELETE, "a/1", 4n, "old"],
      [mvccpb.Event_EventType.DELETE, "a/2", 4n, "old"],
      [mvccpb.Event_EventType.DELETE, "a/3", 4n, undefined],
    ];
    expect(summary(live)).toEqual(expected);
    const history = store.eventsBetween(keyRange(b("a/"), Buffer.from([0])), 2n, 4n, 100).events;
    expect(summary(history)).toEqual(expected);
  });

  it("grants, checkpoints and revokes leases, deleting attached keys in one revision", () => {
    // Proves lease grant (explicit and derived IDs), attachment and revoke.
    const grant = apply({ leaseGrant: { TTL: 60n, ID: 7n } })[0]!.leaseGrant!;
    expect([grant.ID, grant.TTL]).toEqual([7n, 60n]);
    expect(apply({ leaseGrant: { TTL: 60n, ID: 7n } })[0]!.error!.message).toBe(
      "etcdserver: lease already exists",
    );
    const auto = apply({ leaseGrant: { TTL: 1n, ID: 0n } })[0]!.leaseGrant!;
    expect(auto.ID > 0n && auto.TTL === 2n).toBe(true);
    put("l1", "a", { lease: 7n });
    put("l2", "b", { lease: 7n });
    apply({ leaseCheckpoint: { checkpoints: [{ ID: 7n, remainingTTL: 30n }] } });
    expect(store.lessor.get(7n)!.remainingTtlSeconds).toBe(30n);
    apply({ leaseRevoke: { ID: 7n } });
    expect(store.range(rangeRequest({ key: b("l"), rangeEnd: b("m") })).count).toBe(0n);
    expect(store.currentRevision()).toBe(4n);
    expect(apply({ leaseRevoke: { ID: 7n } })[0]!.error!.message).toBe(
      "etcdserver: requested lease not found",
    );
  });

  it("raises a stored lease's TTL to the minimum of the timing it reopens with, as etcd's lessor recovers", () => {
    // Proves a lease granted under shorter Raft timings (or restored from an etcd snapshot) is not
    // given less time than this member's election timing allows once the store is opened again.
    store.close();
    store = new MvccStore({ path: join(dir, "mvcc.db"), minLeaseTtlSeconds: 1n });
    expect(apply({ leaseGrant: { TTL: 1n, ID: 4n } })[0]!.leaseGrant!.TTL).toBe(1n);
    apply({ leaseGrant: { TTL: 30n, ID: 5n } });
    store.close();
    store = new MvccStore({ path: join(dir, "mvcc.db"), minLeaseTtlSeconds: 3n });
    expect(store.lessor.get(4n)!.ttlSeconds).toBe(3n);
    expect(store.lessor.get(5n)!.ttlSeconds).toBe(30n);
  });

  it("reports applies at or over the slow threshold with the request described without its value", () => {
    // Proves the "apply request took too long" report: counted, and the description names the keys
    // and the value's size, never the value (which may be a secret).
    store.close();
    store = new MvccStore({ path: join(dir, "mvcc.db"), slowApplyMs: 0 });
    const slow: string[] = [];
    store.onSlowApply = (request, tookMs) => {
      expect(tookMs).toBeGreaterThanOrEqual(0);
      slow.push(request);
    };
    put("db/password", "hunter2", { lease: 0n });
    apply({
      txn: {
        compare: [
          {
            key: b("db/password"),
            rangeEnd: b(""),
            target: etcd.Compare_CompareTarget.VALUE,
            result: etcd.Compare_CompareResult.EQUAL,
            value: b("hunter2"),
          },
        ],
        success: [{ requestPut: putRequest({ key: b("db/password"), value: b("swordfish") }) }],
        failure: [{ requestDeleteRange: deleteRangeRequest({ key: b("db/"), rangeEnd: b("db0") }) }],
      },
    });
    expect(slow).toEqual([
      'put:<key:"db/password" value_size:7>',
      'txn:<compare:<target:VALUE key:"db/password" result:EQUAL> success:<request_put:<key:"db/password" value_size:9>> failure:<request_delete_range:<key:"db/" range_end:"db0">>>',
    ]);
    expect(store.stats.slowApplies).toBe(2);
  });

  it("lets only the leader decide expiry and keeps the remaining TTL across a leader change", () => {
    // Proves the lessor API the server drives: expiry from the leader clock, checkpoints survive demotion.
    apply({ leaseGrant: { TTL: 10n, ID: 5n } });
    expect(store.lessor.expiredLeases(10_000_000)).toEqual([]);
    store.lessor.promote(0);
    expect(store.lessor.expiredLeases(9_999)).toEqual([]);
    expect(store.lessor.expiredLeases(10_000)).toEqual([5n]);
    const due = store.lessor.checkpointsDue(4_000);
    apply({ leaseCheckpoint: { checkpoints: due } });
    store.lessor.demote();
    store.lessor.promote(100_000);
    expect(store.lessor.remainingSeconds(store.lessor.get(5n)!, 100_000)).toBe(6n);
    apply({ leaseExpire: { ids: [5n, 99n] } });
    expect(store.lessor.get(5n)).toBeUndefined();
  });

  it("survives reopening, and restores from a snapshot image", async () => {
    // Proves durability of data, leases and applied index, and that a restored image, at the
    // applied index restore was given, is what reopens.
    put("k", "v");
    apply({ leaseGrant: { TTL: 60n, ID: 3n } });
    put("k", "w", { lease: 3n });
    const image = store.snapshot();
    const hash = (await store.hashKV(0n)).hash;
    store.close();
    store = new MvccStore({ path: join(dir, "mvcc.db") });
    expect([store.appliedIndex(), store.currentRevision()]).toEqual([3n, 3n]);
    expect(store.lessor.get(3n)!.keys.has("k")).toBe(true);
    put("other", "x");
    // The layer may restore an image at an index past the image's own (3): entries the machine
    // never sees, such as membership changes, come after it.
    store.restore(image, 5n);
    expect(store.range(rangeRequest({ key: b("other") })).count).toBe(0n);
    expect((await store.hashKV(0n)).hash).toBe(hash);
    expect(store.appliedIndex()).toBe(5n);
    // Nothing is left beside the file: the staged image was renamed over it.
    expect(existsSync(join(dir, "mvcc.db.restore"))).toBe(false);
    store.close();
    store = new MvccStore({ path: join(dir, "mvcc.db") });
    expect(store.range(rangeRequest({ key: b("other") })).count).toBe(0n);
    expect((await store.hashKV(0n)).hash).toBe(hash);
    expect(store.appliedIndex()).toBe(5n);
  });

  it("commits applied batches together (by interval or write limit); a crash before the commit re-applies from the log", async () => {
    // Proves the deferred backend commit is crash-consistent: the file always holds the applied
    // index of its own data, and re-applying the entries after it reaches the same state.
    store.close();
    const path = join(dir, "batched.db");
    store = new MvccStore({ path, backendBatchIntervalMs: 60_000, backendBatchLimit: 5 });
    const log = ["a", "b", "c", "d", "e", "f"].map(
      (key, i) => entriesFor([{ put: putRequest({ key: b(key), value: b(`v${i}`) }) }], BigInt(i + 1))[0]!,
    );
    /** What a crash now would leave on disk: the database and its WAL, as they are. */
    let copies = 0;
    const crashCopy = (): MvccStore => {
      const copy = join(dir, `crash-${copies++}.db`);
      copyFileSync(path, copy);
      if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
      return new MvccStore({ path: copy });
    };
    const keysAt = (s: MvccStore) => keysOf(s.range(rangeRequest({ key: b("\0"), rangeEnd: b("\0") })));

    store.applyBatch(log.slice(0, 1));
    store.applyBatch(log.slice(1, 2));
    expect(keysAt(store)).toEqual(["a", "b"]); // applied rows are readable at once
    let crashed = crashCopy();
    expect([crashed.appliedIndex(), keysAt(crashed)]).toEqual([0n, []]);
    crashed.close();

    store.applyBatch(log.slice(2, 5)); // the fifth row write reaches the limit: committed
    store.applyBatch(log.slice(5, 6));
    crashed = crashCopy();
    expect([crashed.appliedIndex(), keysAt(crashed)]).toEqual([5n, ["a", "b", "c", "d", "e"]]);
    crashed.applyBatch(log.slice(Number(crashed.appliedIndex())));
    expect(await crashed.hashKV(0n)).toEqual(await store.hashKV(0n));
    crashed.close();

    // Without reaching the limit, the interval commits them.
    store.close();
    store = new MvccStore({ path, backendBatchIntervalMs: 20 });
    store.applyBatch(entriesFor([{ put: putRequest({ key: b("g"), value: b("late") }) }], 7n));
    await vi.waitFor(
      () => {
        const s = crashCopy();
        const applied = s.appliedIndex();
        s.close();
        expect(applied).toBe(7n);
      },
      { timeout: 20_000, interval: 10 },
    );
  });

  it("takes a snapshot off the event loop, exactly at the applied index it began at", async () => {
    // Proves the worker's image is the state when beginSnapshot was called, although batches
    // (still in the open backend transaction, then committed) are applied while it is produced.
    store.close();
    store = new MvccStore({ path: join(dir, "snapjob.db"), backendBatchIntervalMs: 60_000 });
    await store.startSnapshotWorker();
    expect(store.snapshotsOffLoop).toBe(true);
    for (let i = 0; i < 50; i++) put(`k${i}`, `v${i}`);
    const expected = await store.hashKV(0n);
    const job = store.beginSnapshot();
    expect(job.index).toBe(store.appliedIndex());
    for (let i = 0; i < 50; i++) put(`k${i}`, "later");
    store.snapshot(); // commits the later batches while the worker may still be reading
    const copy = new MvccStore({ path: join(dir, "from-image.db") });
    copy.restore(await job.image, job.index);
    expect(await copy.hashKV(0n)).toEqual(expected);
    expect(copy.range(rangeRequest({ key: b("k7") })).kvs[0]!.value.toString()).toBe("v7");
    expect(copy.appliedIndex()).toBe(job.index);
    copy.close();
  });

  it("makes client images one after another on the worker, each of the state when it was pinned", async () => {
    // Proves Maintenance Snapshot and Hash requests arriving together are served off the event
    // loop without waiting on each other's pin: the second waits for the worker to be free, then
    // pins the state of that moment (with the put applied in between). Each image is a file beside
    // the store that its release removes.
    store.close();
    store = new MvccStore({ path: join(dir, "images.db"), backendBatchIntervalMs: 60_000 });
    await store.startSnapshotWorker();
    for (let i = 0; i < 200; i++) put(`k${i}`, "v".repeat(200));
    const first = store.clientImage();
    await new Promise((resolve) => setImmediate(resolve));
    const second = store.clientImage();
    put("late", "x");
    const [one, two, hash] = await Promise.all([first, second, store.hash()]);
    expect(hash.revision).toBe(202n);
    expect(imageFiles("images.db")).toHaveLength(2);
    for (const [i, image] of [one, two].entries()) {
      const bytes = Buffer.concat([...image.pieces(1000)]);
      expect(bytes.length).toBe(image.sizeBytes);
      if (image.revision === 202n) expect(crc32(bytes) >>> 0).toBe(hash.hash);
      const copy = new MvccStore({ path: join(dir, `copy${i}.db`) });
      copy.restore(bytes, 1n);
      expect(copy.currentRevision()).toBe(image.revision);
      expect(copy.range(rangeRequest({ key: b("late") })).kvs.length).toBe(image.revision === 202n ? 1 : 0);
      copy.close();
      image.release();
    }
    expect(imageFiles("images.db")).toEqual([]);
  });

  it("removes the client image a stopped process left, and leaves none for a request the close stopped", async () => {
    // Proves a member's data dir does not keep images: one left by a killed process goes when the
    // store opens, and a request the store's close stopped leaves no file. (The worker's own
    // tests stop a copy half made.)
    store.close();
    const path = join(dir, "left.db");
    writeFileSync(`${path}.client-image-1-0`, "left by a killed process");
    store = new MvccStore({ path, backendBatchIntervalMs: 60_000 });
    expect(imageFiles("left.db")).toEqual([]);
    await store.startSnapshotWorker();
    for (let i = 0; i < 100; i++) put(`k${i}`, "v".repeat(4000));
    const making = store.clientImage();
    store.close();
    await expect(making).rejects.toThrow(/stopped/);
    expect(imageFiles("left.db")).toEqual([]);
  });

  it("defragments off the event loop, keeping every write applied while the copy was made", async () => {
    // Proves etcd's defragment releases the free pages while the member goes on applying: the
    // writes applied during the rewrite (still in the open batch transaction, or committed) are
    // all in the new file, which a restart reads back whole.
    store.close();
    const path = join(dir, "defrag.db");
    store = new MvccStore({ path, backendBatchIntervalMs: 60_000 });
    await store.startSnapshotWorker();
    const value = "v".repeat(1024);
    for (let i = 0; i < 20; i++) {
      apply(
        ...Array.from({ length: 100 }, (_, j) => ({
          put: putRequest({ key: b(`k${j}`), value: b(`${i}${value}`) }),
        })),
      );
    }
    apply({ compaction: { revision: 1900n, physical: true } });
    const [granted] = apply({ leaseGrant: { TTL: 600n, ID: 77n } });
    expect(granted!.leaseGrant!.ID).toBe(77n);
    const before = store.dbSizeBytes();
    const defragmented = store.defragment();
    // Applied while the worker rewrites the file: a deletion, a lease attachment, then puts for as
    // long as it runs; and a HashKV reading the old file, which the swap may end.
    apply({ deleteRange: deleteRangeRequest({ key: b("k5") }) });
    put("leased", "y", { lease: 77n });
    const hashing = store.hashKV(0n).then(
      () => "answered",
      (err: Error) => err.message,
    );
    let during = 0;
    const writeMeanwhile = (): void => {
      put(`during${during++}`, "x");
    };
    writeMeanwhile();
    const ticker = setInterval(writeMeanwhile, 1);
    await defragmented;
    clearInterval(ticker);
    expect(["answered", "etcdserver: server stopped"]).toContain(await hashing);
    put("after", "z");
    expect(store.dbSizeBytes()).toBeLessThan(before);
    expect(during).toBeGreaterThan(0);
    const expected = await store.hashKV(0n);
    const keys = keysOf(store.range(rangeRequest({ key: b("\0"), rangeEnd: b("\0") })));
    store.close();
    store = new MvccStore({ path });
    expect(await store.hashKV(0n)).toEqual(expected);
    expect(keysOf(store.range(rangeRequest({ key: b("\0"), rangeEnd: b("\0") })))).toEqual(keys);
    expect(keys).toContain(`during${during - 1}`);
    expect(keys).not.toContain("k5");
    expect(store.range(rangeRequest({ key: b("leased") })).kvs[0]!.lease).toBe(77n);
    expect(existsSync(`${path}.defrag`)).toBe(false);
  });

  it("replays many writes made during a defragment into the copy before the swap, losing none", async () => {
    // Proves the copy catches up with thousands of writes applied while it was made (replayed in
    // the swap's turn), deletions and a compaction included, and that the swapped file holds
    // exactly what the store held.
    store.close();
    const path = join(dir, "catchup.db");
    store = new MvccStore({ path, backendBatchIntervalMs: 0 });
    const big = b("v".repeat(2048));
    for (let i = 0; i < 40; i++) {
      apply(
        ...Array.from({ length: 100 }, (_, j) => ({ put: putRequest({ key: b(`k${i}-${j}`), value: big }) })),
      );
    }
    const defragmented = store.defragment();
    let batches = 0;
    const ticker = setInterval(() => {
      const n = batches++;
      apply(
        ...Array.from({ length: 100 }, (_, j) => ({
          put: putRequest({ key: b(`n${n}-${j}`), value: b("x") }),
        })),
      );
      if (n === 5) apply({ deleteRange: deleteRangeRequest({ key: b("n0-"), rangeEnd: b("n0-~") }) });
      if (n === 6) apply({ compaction: { revision: 4200n, physical: true } });
    }, 1);
    await defragmented;
    clearInterval(ticker);
    const expected = await store.hashKV(0n);
    const count = store.range(rangeRequest({ key: b("\0"), rangeEnd: b("\0"), countOnly: true })).count;
    store.close();
    store = new MvccStore({ path });
    expect(await store.hashKV(0n)).toEqual(expected);
    expect(store.range(rangeRequest({ key: b("\0"), rangeEnd: b("\0"), countOnly: true })).count).toBe(count);
    expect(count).toBe(4000n + BigInt(batches) * 100n - (batches > 5 ? 100n : 0n));
  });

  it("answers a defragment the store was closed under with 'server stopped', keeping the file as it was", async () => {
    // Proves a member stopping during a defragment loses nothing: the copy is dropped and the
    // file reopens with every write.
    for (let i = 0; i < 5; i++)
      apply(
        ...Array.from({ length: 100 }, (_, j) => ({
          put: putRequest({ key: b(`k${i}-${j}`), value: b("v") }),
        })),
      );
    const expected = await store.hashKV(0n);
    const defragmented = store.defragment();
    store.close();
    await expect(defragmented).rejects.toThrow("etcdserver: server stopped");
    expect(existsSync(join(dir, "mvcc.db.defrag"))).toBe(false);
    store = new MvccStore({ path: join(dir, "mvcc.db") });
    expect(await store.hashKV(0n)).toEqual(expected);
  });

  it("answers alarm activations and lists by type as etcd's alarm store does", () => {
    // Proves etcd's Alarm: activating an active alarm answers it again (before, an empty list), and
    // a GET for one type lists only that type (before, every alarm).
    const A = etcd.AlarmType;
    const act = (memberID: bigint, alarm: etcd.AlarmType) =>
      apply({ alarm: { action: etcd.AlarmRequest_AlarmAction.ACTIVATE, memberID, alarm } })[0]!.alarm!.alarms;
    expect(act(1n, A.NOSPACE)).toEqual([{ memberID: 1n, alarm: A.NOSPACE }]);
    expect(act(1n, A.NOSPACE)).toEqual([{ memberID: 1n, alarm: A.NOSPACE }]);
    act(2n, A.CORRUPT);
    const get = (alarm: etcd.AlarmType) =>
      apply({ alarm: { action: etcd.AlarmRequest_AlarmAction.GET, memberID: 0n, alarm } })[0]!.alarm!.alarms;
    expect(get(A.CORRUPT)).toEqual([{ memberID: 2n, alarm: A.CORRUPT }]);
    expect(get(A.NONE)).toHaveLength(2);
    expect(store.alarms(A.NOSPACE)).toEqual([{ memberID: 1n, alarm: A.NOSPACE }]);
  });

  it("refuses every client write under the CORRUPT alarm until it is disarmed, as etcd does", () => {
    // Proves etcd's corrupt applier: puts, deletes, txns with writes, compactions, lease grants,
    // revokes and expiries answer DataLoss "corrupt cluster" and change nothing; reads and alarms go on.
    const grant = (ID: bigint) => apply({ leaseGrant: { TTL: 60n, ID } })[0]!;
    expect(put("k", "v").put).toBeDefined();
    expect(grant(7n).leaseGrant).toBeDefined();
    const corrupt = (action: etcd.AlarmRequest_AlarmAction) =>
      apply({ alarm: { action, memberID: 2n, alarm: etcd.AlarmType.CORRUPT } });
    corrupt(etcd.AlarmRequest_AlarmAction.ACTIVATE);
    const revision = store.currentRevision();
    const refused = [
      put("k", "w"),
      apply({ deleteRange: deleteRangeRequest({ key: b("k") }) })[0]!,
      apply({
        txn: {
          compare: [],
          success: [{ requestPut: putRequest({ key: b("k"), value: b("x") }) }],
          failure: [],
        },
      })[0]!,
      apply({ compaction: { revision: 1n, physical: false } })[0]!,
      grant(8n),
      apply({ leaseRevoke: { ID: 7n } })[0]!,
      apply({ leaseExpire: { ids: [7n] } })[0]!,
    ];
    for (const result of refused)
      expect(result.error).toEqual({ code: "CORRUPT", message: "etcdserver: corrupt cluster" });
    expect(errorFromResult("CORRUPT", "etcdserver: corrupt cluster").grpcStatus).toBe(status.DATA_LOSS);
    expect(store.currentRevision()).toBe(revision);
    expect(store.range(rangeRequest({ key: b("k") })).kvs[0]!.value.toString()).toBe("v");
    corrupt(etcd.AlarmRequest_AlarmAction.DEACTIVATE);
    expect(put("k", "w").put).toBeDefined();
    expect(apply({ leaseRevoke: { ID: 7n } })[0]!.leaseRevoke).toBeDefined();
  });

  it("takes a quota of 0 as etcd's default of 2 GiB and a negative one as no quota, as etcd does", () => {
    // Proves --quota-backend-bytes 0 and -1 mean what they mean to etcd.
    store.close();
    const GiB = 1024 ** 3;
    store = new MvccStore({ path: join(dir, "q0.db"), quotaBackendBytes: 0n });
    expect([store.quotaAvailable(2 * GiB - 1_000_000), store.quotaAvailable(2 * GiB)]).toEqual([true, false]);
    store.close();
    store = new MvccStore({ path: join(dir, "q-1.db"), quotaBackendBytes: -1n });
    expect(store.quotaAvailable(64 * GiB)).toBe(true);
  });

  it("takes a request only while the database and its cost stay strictly under the quota, as etcd", () => {
    // Proves etcd's backendQuota.Available: size + cost < quota.
    const size = store.dbSizeBytes();
    store.close();
    store = new MvccStore({ path: join(dir, "q-edge.db"), quotaBackendBytes: size + 1000n });
    expect(store.dbSizeBytes()).toBe(size);
    expect([store.quotaAvailable(999), store.quotaAvailable(1000)]).toEqual([true, false]);
  });

  it("raises NOSPACE and then refuses puts until the alarm is cleared", () => {
    // Proves the quota check and the capped apply while the NOSPACE alarm is active.
    store.close();
    store = new MvccStore({ path: join(dir, "q.db"), quotaBackendBytes: 1n });
    expect(store.quotaAvailable(10)).toBe(false);
    apply({
      alarm: { action: etcd.AlarmRequest_AlarmAction.ACTIVATE, memberID: 1n, alarm: etcd.AlarmType.NOSPACE },
    });
    expect(put("k", "v").error!.message).toBe("etcdserver: mvcc: database space exceeded");
    // A txn with a put in either branch is refused, as etcd does, even when the other branch runs.
    const txn = (success: etcd.RequestOp[], failure: etcd.RequestOp[]) =>
      apply({ txn: { compare: [], success, failure } })[0]!;
    const write = { requestPut: putRequest({ key: b("k"), value: b("v") }) };
    const read = { requestRange: rangeRequest({ key: b("k") }) };
    expect(txn([read], [write]).error!.message).toBe("etcdserver: mvcc: database space exceeded");
    expect(txn([read], [read]).txn!.succeeded).toBe(true);
    // etcd charges a txn for its top-level puts only: a nested txn's put is made.
    const before = store.currentRevision();
    const nestedPut = { requestTxn: { compare: [], success: [write], failure: [] } };
    expect(txn([nestedPut], []).txn!.succeeded).toBe(true);
    expect(store.currentRevision()).toBe(before + 1n);
    apply({
      alarm: {
        action: etcd.AlarmRequest_AlarmAction.DEACTIVATE,
        memberID: 1n,
        alarm: etcd.AlarmType.NOSPACE,
      },
    });
    expect(put("k", "v").put).toBeDefined();
  });
});
