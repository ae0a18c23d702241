// Proves the SQLite log store keeps a consistent, durable log across kill -9 at arbitrary points.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it, vi } from "vitest";
import { SnapshotTemporarilyUnavailableError } from "../src/core/errors.js";
import { EntrySegments } from "../src/storage/entry-segments.js";
import { SqliteLogStore, snapshotBytes } from "../src/storage/sqlite-log-store.js";

const dir = mkdtempSync(join(tmpdir(), "raft-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A store in a folder of its own under `dir`, holding entries 1..10 of term 1, one voter. */
function storeInFolder(name: string) {
  const sub = join(dir, name);
  mkdirSync(sub);
  const path = join(sub, "raft.db");
  const s = new SqliteLogStore({ path, bootstrapVoters: [1n] });
  const e = (index: bigint) => ({ index, term: 1n, type: 0 as const, data: Buffer.from([Number(index)]) });
  s.persist({
    hardState: null,
    entries: Array.from({ length: 10 }, (_, i) => e(BigInt(i + 1))),
    snapshot: null,
  });
  return { sub, path, s, cs: { voters: [1n], learners: [] } };
}

function checkConsistent(path: string): SqliteLogStore {
  const s = new SqliteLogStore({ path });
  const first = s.firstIndex();
  const last = s.lastIndex();
  const ents = last >= first ? s.entries(first, last + 1n, Number.MAX_SAFE_INTEGER) : [];
  expect(ents.length).toBe(Number(last - first + 1n));
  expect(ents.map((e) => e.index)).toEqual(ents.map((_, i) => first + BigInt(i)));
  for (let i = 1; i < ents.length; i++) expect(ents[i]?.term).toBeGreaterThanOrEqual(ents[i - 1]?.term ?? 0n);
  expect(s.hardState().commit).toBeLessThanOrEqual(last);
  return s;
}

describe("SqliteLogStore", () => {
  it("truncates a conflicting suffix and persists hard state and entries in one batch", () => {
    // Proves conflict-suffix truncation and reload of hard state, entries and bootstrap ConfState.
    const path = join(dir, "a.db");
    const s = new SqliteLogStore({ path, bootstrapVoters: [3n, 1n] });
    const e = (index: bigint, term: bigint) => ({ index, term, type: 0 as const, data: Buffer.from([1]) });
    s.persist({
      hardState: { term: 1n, vote: 1n, commit: 0n },
      entries: [e(1n, 1n), e(2n, 1n), e(3n, 1n)],
      snapshot: null,
    });
    s.persist({ hardState: { term: 2n, vote: 3n, commit: 2n }, entries: [e(2n, 2n)], snapshot: null });
    s.close();
    const r = new SqliteLogStore({ path });
    expect(r.lastIndex()).toBe(2n);
    expect(r.term(2n)).toBe(2n);
    expect(r.initialState().hardState).toEqual({ term: 2n, vote: 3n, commit: 2n });
    expect(r.initialState().confState.voters).toEqual([1n, 3n]);
    r.createSnapshot(2n, { voters: [1n, 3n], learners: [] }, Buffer.from("x"), 1n);
    expect(r.firstIndex()).toBe(2n);
    expect(r.snapshot().metadata.index).toBe(2n);
    r.close();
  });

  it("writes the hard state only when its term or vote moves, and at close", async () => {
    // Proves commit-only Readys cost no write, a commit index moving with new entries adds nothing
    // to their transaction, term/vote changes always are written, and nothing is lost at close.
    const path = join(dir, "lazy.db");
    const s = new SqliteLogStore({ path, bootstrapVoters: [1n] });
    const e = (index: bigint, term: bigint) => ({ index, term, type: 0 as const, data: Buffer.from([1]) });
    expect(s.hasUnsynced()).toBe(false);
    expect(
      s.persist({ hardState: { term: 1n, vote: 1n, commit: 0n }, entries: [e(1n, 1n)], snapshot: null }),
    ).toBe(true);
    expect(s.hasUnsynced()).toBe(true);
    await s.sync();
    expect(s.hasUnsynced()).toBe(false);
    expect(s.persist({ hardState: { term: 1n, vote: 1n, commit: 1n }, entries: [], snapshot: null })).toBe(
      false,
    );
    expect(s.hasUnsynced()).toBe(false);
    expect(s.hardState().commit).toBe(1n);
    // A reader sees only what was written: the commit-only change is not on disk yet.
    const peek = new Database(path, { readonly: true });
    const row = peek.prepare("SELECT value FROM meta WHERE key = 'hardState'").get() as { value: Buffer };
    expect(row.value.toString()).toBe("1,1,0");
    peek.close();
    expect(s.persist({ hardState: { term: 2n, vote: 0n, commit: 1n }, entries: [], snapshot: null })).toBe(
      true,
    );
    expect(
      s.persist({ hardState: { term: 2n, vote: 0n, commit: 1n }, entries: [e(2n, 2n)], snapshot: null }),
    ).toBe(true);
    await s.sync();
    expect(s.persist({ hardState: { term: 2n, vote: 0n, commit: 2n }, entries: [], snapshot: null })).toBe(
      false,
    );
    // Entries with a moved commit index: the entries are written, the commit index is not.
    expect(
      s.persist({ hardState: { term: 2n, vote: 0n, commit: 3n }, entries: [e(3n, 2n)], snapshot: null }),
    ).toBe(true);
    const again = new SqliteLogStore({ path });
    expect(again.initialState().hardState).toEqual({ term: 2n, vote: 0n, commit: 1n });
    expect(again.lastIndex()).toBe(3n);
    again.db.close();
    s.close();
    const r = new SqliteLogStore({ path });
    expect(r.initialState().hardState).toEqual({ term: 2n, vote: 0n, commit: 3n });
    expect(r.lastIndex()).toBe(3n);
    r.close();
  });

  it("serves entries from its in-memory tail exactly as from SQLite", () => {
    // Proves the tail follows appends, conflict truncation, compaction and snapshots: every read
    // matches a reopened store's (whose tail is empty, so it reads SQLite).
    const path = join(dir, "tail.db");
    const s = new SqliteLogStore({ path, bootstrapVoters: [1n] });
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    let term = 1n;
    for (let round = 0; round < 60; round++) {
      const last = s.lastIndex();
      const op = rand(10);
      if (op === 0 && last > s.firstIndex() + 3n) {
        s.createSnapshot(last - 2n, { voters: [1n], learners: [] }, Buffer.from("img"), BigInt(rand(4)));
      } else if (op === 1) {
        const index = last + BigInt(1 + rand(3));
        term += 1n;
        const snap = {
          metadata: { index, term, confState: { voters: [1n], learners: [] } },
          data: Buffer.from("s"),
        };
        s.persist({ hardState: { term, vote: 1n, commit: index }, entries: [], snapshot: snap });
      } else {
        // Append, sometimes over a conflicting suffix with a higher term.
        const from = op === 2 && last - 3n > s.firstIndex() ? last - BigInt(rand(3)) : last + 1n;
        if (from <= last) term += 1n;
        const n = 1 + rand(5);
        const entries = Array.from({ length: n }, (_, i) => ({
          index: from + BigInt(i),
          term,
          type: 0 as const,
          data: Buffer.from([round, i]),
        }));
        s.persist({ hardState: { term, vote: 1n, commit: 0n }, entries, snapshot: null });
      }
      const reopened = new SqliteLogStore({ path });
      const first = s.firstIndex();
      expect(reopened.firstIndex()).toBe(first);
      expect(reopened.lastIndex()).toBe(s.lastIndex());
      for (let lo = first; lo <= s.lastIndex(); lo++) {
        expect(s.term(lo)).toBe(reopened.term(lo));
        const max = rand(3) * 2;
        const got = s
          .entries(lo, s.lastIndex() + 1n, max)
          .map((e) => [e.index, e.term, Buffer.from(e.data).toString("hex")]);
        const want = reopened
          .entries(lo, s.lastIndex() + 1n, max)
          .map((e) => [e.index, e.term, Buffer.from(e.data).toString("hex")]);
        expect(got).toEqual(want);
      }
      reopened.close();
    }
    s.close();
  });

  it("reports as durable only entries covered by a completed sync and not rewritten since", async () => {
    // Proves durableLastIndex: it rises when a sync completes and falls at once on a rewrite.
    const path = join(dir, "durable.db");
    const s = new SqliteLogStore({ path, bootstrapVoters: [1n] });
    const e = (index: bigint, term: bigint) => ({ index, term, type: 0 as const, data: Buffer.from([1]) });
    const append = (term: bigint, ...ents: ReturnType<typeof e>[]) =>
      s.persist({ hardState: { term, vote: 1n, commit: 0n }, entries: ents, snapshot: null });
    append(1n, e(1n, 1n), e(2n, 1n), e(3n, 1n));
    expect(s.durableLastIndex()).toBe(0n);
    await s.sync();
    expect(s.durableLastIndex()).toBe(3n);
    append(1n, e(4n, 1n));
    expect(s.durableLastIndex()).toBe(3n);
    append(2n, e(2n, 2n));
    expect(s.durableLastIndex()).toBe(1n);
    // A rewrite while a sync runs is not covered by that sync.
    append(2n, e(3n, 2n));
    const running = s.sync();
    append(3n, e(3n, 3n));
    await running;
    expect(s.durableLastIndex()).toBe(2n);
    await s.sync();
    expect(s.durableLastIndex()).toBe(3n);
    s.close();
  });

  it("keeps a local snapshot in its own file, replaced and cleaned up safely", async () => {
    // Proves file-held snapshots: the data is served from the file across a reopen, the file a newer
    // snapshot replaces is deleted only once that change is synced, a snapshot from the leader
    // (in a file of its own) lets go of the file too, and stray files are removed at open.
    const { sub, path, s, cs } = storeInFolder("snapfiles");
    const first = await s.writeSnapshotFile(4n, [Buffer.from("head:"), Buffer.from("image at 4")]);
    expect(first).toBe("snap-4.snap");
    s.createSnapshotFromFile(4n, cs, first!, 1n);
    expect(Buffer.from(snapshotBytes(s.snapshot())).toString()).toBe("head:image at 4");
    expect([s.snapshotIndex(), s.firstIndex()]).toEqual([4n, 4n]);
    const second = await s.writeSnapshotFile(8n, [Buffer.from("image at 8")]);
    s.createSnapshotFromFile(8n, cs, second!, 0n);
    expect(existsSync(join(sub, first!))).toBe(true); // not synced yet: a crash may still refer to it
    await s.sync();
    await vi.waitFor(() => expect(existsSync(join(sub, first!))).toBe(false), { timeout: 10_000 });
    s.close();

    writeFileSync(join(sub, "snap-9.snap.tmp"), "half written");
    const r = new SqliteLogStore({ path });
    expect(readdirSync(sub).filter((f) => f.startsWith("snap-"))).toEqual(["snap-8.snap"]);
    expect(Buffer.from(snapshotBytes(r.snapshot())).toString()).toBe("image at 8");
    expect(r.snapshot().metadata).toEqual({ index: 8n, term: 1n, confState: cs });
    r.persist({
      hardState: null,
      entries: [],
      snapshot: { metadata: { index: 20n, term: 2n, confState: cs }, data: Buffer.from("from the leader") },
    });
    await r.sync();
    await vi.waitFor(() => expect(existsSync(join(sub, "snap-8.snap"))).toBe(false), { timeout: 10_000 });
    expect(Buffer.from(snapshotBytes(r.snapshot())).toString()).toBe("from the leader");
    r.close();
  });

  it("keeps a snapshot from the leader in a file of its own, not in the database", async () => {
    // Proves a received snapshot is not bounded by SQLite's 1-GB value limit: its data is written
    // to snap-<index>-received.snap before the transaction that records it, served from there across
    // a reopen, and let go of when a newer one arrives; a file whose transaction never committed
    // (a crash in between) is removed at open.
    const { sub, path, s, cs } = storeInFolder("received");
    const data = Buffer.alloc(3 * 1024 * 1024, 7);
    s.persist({
      hardState: null,
      entries: [],
      snapshot: { metadata: { index: 20n, term: 2n, confState: cs }, data },
    });
    await s.sync();
    expect(readdirSync(sub).filter((f) => f.startsWith("snap-"))).toEqual(["snap-20-received.snap"]);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT length(data) FROM snapshot").pluck().get()).toBe(0);
    db.close();
    s.close();

    // Left by a crash: a received file whose transaction never committed, one half received, and
    // a scratch image with the journal its copy left.
    writeFileSync(join(sub, "snap-30-received.snap"), "a crash before its transaction");
    writeFileSync(join(sub, "snap-31-received.snap.4.tmp"), "half received");
    writeFileSync(join(sub, "snap-32.snap.2.tmp-journal"), "journal");
    const r = new SqliteLogStore({ path });
    expect(readdirSync(sub).filter((f) => f.startsWith("snap-"))).toEqual(["snap-20-received.snap"]);
    expect(Buffer.from(snapshotBytes(r.snapshot())).equals(data)).toBe(true);
    expect(r.snapshot().metadata).toEqual({ index: 20n, term: 2n, confState: cs });
    // As the transport hands one on: already in a file of its own, which is renamed, not copied.
    const into = r.receivedSnapshotFile(40n)!;
    writeFileSync(into, "newer");
    r.persist({
      hardState: null,
      entries: [],
      snapshot: {
        metadata: { index: 40n, term: 3n, confState: cs },
        data: new Uint8Array(),
        file: { path: into, bytes: 5 },
      },
    });
    expect(existsSync(into)).toBe(false);
    await r.sync();
    await vi.waitFor(() => expect(existsSync(join(sub, "snap-20-received.snap"))).toBe(false), {
      timeout: 10_000,
    });
    expect(readdirSync(sub).filter((f) => f.startsWith("snap-"))).toEqual(["snap-40-received.snap"]);
    expect(Buffer.from(snapshotBytes(r.snapshot())).toString()).toBe("newer");
    r.close();
  });

  it("writes a received snapshot's member table in the transaction that records its configuration", async () => {
    // Proves the service layer's member table and the Raft configuration cannot disagree after a
    // crash that follows the snapshot's transaction: the node used to write the table only after
    // the state machine had restored the image, so a crash in between kept the old table with the
    // new configuration (and the conf changes between them compacted away).
    const { path, s } = storeInFolder("snapshot-members");
    s.setAppMeta("members", Buffer.from("old table"));
    const cs = { voters: [1n, 2n, 3n], learners: [4n] };
    s.persist({
      hardState: null,
      entries: [],
      snapshot: { metadata: { index: 20n, term: 2n, confState: cs }, data: Buffer.from("image") },
      snapshotAppMeta: { key: "members", value: Buffer.from("the snapshot's table") },
    });
    await s.sync();
    s.close();
    const r = new SqliteLogStore({ path });
    expect(r.initialState().confState).toEqual(cs);
    expect(Buffer.from(r.getAppMeta("members")!).toString()).toBe("the snapshot's table");
    // A snapshot that does not replace the log (older than the one stored) changes neither.
    r.persist({
      hardState: null,
      entries: [],
      snapshot: {
        metadata: { index: 10n, term: 1n, confState: { voters: [1n], learners: [] } },
        data: Buffer.from("x"),
      },
      snapshotAppMeta: { key: "members", value: Buffer.from("stale") },
    });
    expect(Buffer.from(r.getAppMeta("members")!).toString()).toBe("the snapshot's table");
    r.close();
  });

  it("records a snapshot held by the state machine's files and asks for an image when one is wanted", async () => {
    // Proves snapshot markers: the log is compacted behind one, reading its data asks the owner for an
    // image and reports it temporarily unavailable, the mark survives a reopen, and an image stored
    // at the same index (or a snapshot from the leader) replaces it and is known unsent until read.
    const { sub, path, s, cs } = storeInFolder("marker");
    s.createSnapshotMarker(6n, cs, 2n);
    expect([s.snapshotIndex(), s.firstIndex(), s.snapshotInMachine()]).toEqual([6n, 5n, true]);
    expect(s.term(6n)).toBe(1n);
    let asked = 0;
    s.onSnapshotWanted = () => asked++;
    expect(() => s.snapshot()).toThrow(SnapshotTemporarilyUnavailableError);
    expect(asked).toBe(1);
    await s.sync();
    s.close();

    const r = new SqliteLogStore({ path });
    expect([r.snapshotIndex(), r.firstIndex(), r.snapshotInMachine()]).toEqual([6n, 5n, true]);
    expect(() => r.snapshot()).toThrow(SnapshotTemporarilyUnavailableError);
    const file = await r.writeSnapshotFile(6n, [Buffer.from("image at 6")]);
    expect(r.imageUnsent()).toBe(false);
    r.createSnapshotFromFile(6n, cs, file!, 2n);
    expect(r.snapshotInMachine()).toBe(false);
    // The image was made for a follower: it is marked unsent until the core reads it to send it.
    expect(r.imageUnsent()).toBe(true);
    expect(Buffer.from(snapshotBytes(r.snapshot())).toString()).toBe("image at 6");
    expect(r.imageUnsent()).toBe(false);
    expect(r.snapshot().metadata).toEqual({ index: 6n, term: 1n, confState: cs });
    r.createSnapshotMarker(9n, cs, 2n);
    expect([r.snapshotIndex(), r.firstIndex(), r.snapshotInMachine()]).toEqual([9n, 8n, true]);
    await r.sync();
    await vi.waitFor(() => expect(existsSync(join(sub, file!))).toBe(false), { timeout: 10_000 });
    r.persist({
      hardState: null,
      entries: [],
      snapshot: { metadata: { index: 20n, term: 2n, confState: cs }, data: Buffer.from("from the leader") },
    });
    expect(r.snapshotInMachine()).toBe(false);
    expect(Buffer.from(snapshotBytes(r.snapshot())).toString()).toBe("from the leader");
    r.close();
  });

  it("keeps the entries in segments sealed by size, and drops compacted ones whole, one at a time", () => {
    // Proves a snapshot deletes no row one by one (that made every later write slower) and drops
    // no more than one segment at a time (a DROP's cost grows with the table), no compacted entry is
    // served from the moment of the snapshot, reads and a truncated suffix span the segments, and
    // a restart finds the same log.
    const path = join(dir, "segments.db");
    // Segments of 1,000 one-byte entries (33 bytes each, with the row). A compacted segment is
    // dropped by a snapshot, or by a write once the interval since the last drop has passed: never
    // here, or at every write (`eager`).
    const open = (eager: boolean) =>
      new SqliteLogStore({
        path,
        bootstrapVoters: [1n],
        segments: { segmentBytes: 33_000, dropIntervalMs: eager ? 0 : 1e9 },
      });
    let s = open(false);
    const e = (index: bigint, term = 1n) => ({ index, term, type: 0 as const, data: Buffer.from([1]) });
    const append = (store: SqliteLogStore, from: number, count: number, term = 1n) =>
      store.persist({
        hardState: null,
        snapshot: null,
        entries: Array.from({ length: count }, (_, i) => e(BigInt(from + i), term)),
      });
    for (let i = 0; i < 6; i++) append(s, 1 + 500 * i, 500);
    const reader = new Database(path, { readonly: true });
    /** Each table holding entries, oldest first: [name, first index, last index, rows]. */
    const tables = () =>
      (
        reader
          .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'entries%' ORDER BY name",
          )
          .pluck()
          .all() as string[]
      )
        .map((t) => {
          const r = reader.prepare(`SELECT min(idx) AS a, max(idx) AS b, count(*) AS n FROM ${t}`).get() as {
            a: number | null;
            b: number | null;
            n: number;
          };
          return [t, r.a, r.b, r.n];
        })
        .sort((x, y) => Number(x[1] ?? Infinity) - Number(y[1] ?? Infinity));
    // Sealed in the transaction that filled each one; `entries` takes what comes next.
    expect(tables()).toEqual([
      ["entries_seg_1", 1, 1000, 1000],
      ["entries_seg_1001", 1001, 2000, 1000],
      ["entries_seg_2001", 2001, 3000, 1000],
      ["entries", null, null, 0],
    ]);
    const cs = { voters: [1n], learners: [] };
    s.createSnapshot(2500n, cs, Buffer.from("image"), 100n);
    // Compacted up to 2400: the first segment goes with the snapshot, the second with a later
    // write (not before the interval), the third holds live entries.
    expect(tables().map((t) => t[0])).toEqual(["entries_seg_1001", "entries_seg_2001", "entries"]);
    expect(s.firstIndex()).toBe(2401n);
    expect(() => s.entries(2400n, 2402n, 1 << 20)).toThrow(/compacted/);
    append(s, 3001, 10);
    expect(tables().map((t) => t[0])).toEqual(["entries_seg_1001", "entries_seg_2001", "entries"]);
    s.close();
    // Reopened, a segment compacted before the restart is dropped (the restart does the first
    // drop), and the log is read from SQLite across the tables: nothing is in memory.
    s = open(true);
    expect(tables().map((t) => t[0])).toEqual(["entries_seg_2001", "entries"]);
    expect([s.firstIndex(), s.lastIndex(), s.term(2401n), s.term(3005n)]).toEqual([2401n, 3010n, 1n, 1n]);
    expect(s.entries(2998n, 3003n, 1 << 20).map((x) => x.index)).toEqual([2998n, 2999n, 3000n, 3001n, 3002n]);
    // A conflicting suffix from inside a sealed segment replaces the rest of it and all after it.
    append(s, 2990, 20, 2n);
    expect(tables()).toEqual([
      ["entries_seg_2001", 2001, 2989, 989],
      ["entries", 2990, 3009, 20],
    ]);
    expect(s.entries(2988n, 2992n, 1 << 20).map((x) => [x.index, x.term])).toEqual([
      [2988n, 1n],
      [2989n, 1n],
      [2990n, 2n],
      [2991n, 2n],
    ]);
    // A snapshot from a leader replaces the log: its tables are renamed out of the way at once and
    // never read again, and dropped one per write.
    s.persist({
      hardState: null,
      entries: [],
      snapshot: { metadata: { index: 5000n, term: 3n, confState: cs }, data: Buffer.from("leader") },
    });
    expect([s.firstIndex(), s.lastIndex()]).toEqual([5001n, 5000n]);
    // (One of them went with the install's own transaction: drops are not paced in `eager`.)
    expect(tables().map((t) => t[0])).toEqual(["entries_doomed_2", "entries"]);
    append(s, 5001, 5, 3n);
    s.close();
    s = open(true);
    expect(tables()).toEqual([["entries", 5001, 5005, 5]]);
    expect(s.entries(5001n, 5006n, 1 << 20).map((x) => [x.index, x.term])).toEqual(
      Array.from({ length: 5 }, (_, i) => [BigInt(5001 + i), 3n]),
    );
    reader.close();
    s.close();
  });

  it("finds its segments again as the database has them after a transaction that failed", () => {
    // Proves a drop and a seal taken back by a rollback leave no table missing or invented in
    // memory: a snapshot whose transaction fails carries on with the log it had.
    const db = new Database(join(dir, "rollback.db"));
    const seg = new EntrySegments(db, { segmentBytes: 330, dropIntervalMs: 0 });
    const put = (from: number, n: number) => {
      for (let i = from; i < from + n; i++) seg.insert(BigInt(i), 1n, 0, Buffer.from([i % 256]));
      seg.afterWrite();
    };
    db.transaction(() => put(1, 10))();
    db.transaction(() => put(11, 10))();
    const indexes = () => [...seg.rows(1n, 100n)].map((r) => Number(r.idx));
    expect(seg.tables()).toEqual(["entries_seg_1", "entries_seg_11", "entries"]);
    expect(() =>
      db.transaction(() => {
        seg.compactTo(10n);
        put(21, 10);
        throw new Error("the transaction fails");
      })(),
    ).toThrow(/fails/);
    // In memory the first segment was dropped and a third sealed; the database has neither.
    seg.reload(0n);
    expect(seg.tables()).toEqual(["entries_seg_1", "entries_seg_11", "entries"]);
    expect(indexes()).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect([seg.term(5n), seg.lastRow()?.idx]).toEqual([1n, 20n]);
    db.close();
  });

  it("opens a log written with two tables (entries and entries_old) and keeps every entry", () => {
    // Proves a data directory from the previous layout (`entries_old` older than every row of
    // `entries`) is read as segments, and its older table is dropped once compacted.
    const path = join(dir, "two-tables.db");
    const db = new Database(path);
    db.exec(`CREATE TABLE entries_old (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL);
      CREATE TABLE entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL);`);
    const ins = (t: string, i: number) =>
      db.prepare(`INSERT INTO ${t} VALUES (?, 1, 0, ?)`).run(i, Buffer.from([i % 256]));
    for (let i = 1; i <= 100; i++) ins(i <= 60 ? "entries_old" : "entries", i);
    db.close();
    const s = new SqliteLogStore({
      path,
      bootstrapVoters: [1n],
      segments: { segmentBytes: 1 << 20, dropIntervalMs: 0 },
    });
    expect([s.firstIndex(), s.lastIndex()]).toEqual([1n, 100n]);
    expect(s.entries(58n, 63n, 1 << 20).map((x) => [x.index, x.data[0]])).toEqual(
      [58, 59, 60, 61, 62].map((i) => [BigInt(i), i]),
    );
    s.createSnapshot(90n, { voters: [1n], learners: [] }, Buffer.from("image"), 10n);
    const reader = new Database(path, { readonly: true });
    const names = reader.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'entries%'").pluck().all();
    expect(names).toEqual(["entries"]);
    expect(s.entries(81n, 83n, 1 << 20).map((x) => x.index)).toEqual([81n, 82n]);
    reader.close();
    s.close();
    // A log that never compacted has an empty `entries_old`: it goes with the next write.
    const path2 = join(dir, "two-tables-empty.db");
    const db2 = new Database(path2);
    db2.exec(`CREATE TABLE entries_old (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL);
      CREATE TABLE entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL);
      INSERT INTO entries VALUES (1, 1, 0, x'01');`);
    db2.close();
    const s2 = new SqliteLogStore({ path: path2, segments: { dropIntervalMs: 0 } });
    expect([s2.firstIndex(), s2.lastIndex()]).toEqual([1n, 1n]);
    s2.persist({
      hardState: null,
      snapshot: null,
      entries: [{ index: 2n, term: 1n, type: 0, data: Buffer.from([2]) }],
    });
    const names2 = s2.db.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'entries%'").pluck().all();
    expect(names2).toEqual(["entries"]);
    expect(s2.entries(1n, 3n, 1 << 20).map((x) => x.index)).toEqual([1n, 2n]);
    s2.close();
  });

  it("survives kill -9 of a writer at any point", async () => {
    // Proves every batch acknowledged before SIGKILL is on disk and the log is consistent.
    for (let round = 0; round < 3; round++) {
      const path = join(dir, "kill.db");
      const child = spawn(
        process.execPath,
        ["--import", "tsx", join(import.meta.dirname, "storage-writer.ts"), path],
        {
          cwd: join(import.meta.dirname, ".."),
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      let acked = 0n;
      let buf = "";
      const signal = await new Promise<NodeJS.Signals | null>((resolve) => {
        child.stdout.on("data", (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split("\n");
          buf = lines.pop() ?? "";
          for (const l of lines) acked = BigInt(l);
          if (acked > BigInt(300 * (round + 1)) && child.exitCode === null) child.kill("SIGKILL");
        });
        child.on("exit", (_code, sig) => resolve(sig));
      });
      expect(signal).toBe("SIGKILL");
      expect(acked).toBeGreaterThan(0n);
      const s = checkConsistent(path);
      expect(s.lastIndex()).toBeGreaterThanOrEqual(acked - 2n);
      s.close();
    }
    // The writer sealed segments of 16 KB and dropped the ones its snapshots compacted.
    const reader = new Database(join(dir, "kill.db"), { readonly: true });
    const names = reader.prepare("SELECT name FROM sqlite_master WHERE name LIKE 'entries%'").pluck().all();
    reader.close();
    // Segments are named by their first index: the first one went with a snapshot.
    const sealed = names.map((n) => Number(/^entries_seg_([0-9]+)$/.exec(String(n))?.[1] ?? -1));
    expect(sealed.filter((first) => first > 1).length).toBeGreaterThanOrEqual(2);
    expect(names).not.toContain("entries_seg_1");
  }, 60_000);
});
