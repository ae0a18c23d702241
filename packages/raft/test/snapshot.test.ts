// Proves snapshots taken off the event loop under load are exact: on every member, the stored
// snapshot at index I holds exactly the commands applied up to I and the members at I, while
// proposals kept flowing during the worker's copy.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import {
  bindServer,
  type LocalMember,
  startLocalCluster,
  startMember,
  stopMember,
} from "../src/demo/local-cluster.js";
import { decodeLayerSnapshot } from "../src/service/members.js";
import { AppendLogMachine } from "../src/service/sqlite-test-machine.js";
import { SqliteLogStore, snapshotBytes } from "../src/storage/sqlite-log-store.js";
import { until } from "./helpers.js";

let members: LocalMember[] = [];
let dir = "";
afterEach(() => {
  for (const m of members) if (!m.service.node.isStopped) stopMember(m);
  members = [];
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

describe("off-loop snapshots", () => {
  it("store, on every member, exactly the state at the snapshot's index", async () => {
    // Proves the image and member list stored at index I match what was applied up to I.
    dir = mkdtempSync(join(tmpdir(), "raft-snap-"));
    const opts = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 20_000 };
    members = await startLocalCluster(3, dir, { ...opts, snapshotEntries: 40, snapshotTailEntries: 10 });
    const leader = await until("leader", () => members.find((m) => m.service.status().role === "leader"));
    for (let round = 0; round < 10; round++) {
      await until(`round ${round}`, () =>
        Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            leader.service.propose(new TextEncoder().encode(`r${round}-${i}`)),
          ),
        ),
      );
    }
    await until("every member has a snapshot", () =>
      members.every((m) => m.service.node.store.snapshotIndex() > 0n),
    );
    for (const m of members) {
      const snap = m.service.node.store.snapshot();
      const { members: snapMembers, image } = decodeLayerSnapshot(snapshotBytes(snap));
      const check = new AppendLogMachine(join(dir, `check-${m.id}.db`));
      try {
        check.restore(image, snap.metadata.index);
        const expected = m.machine.commands().filter((c) => c.index <= snap.metadata.index);
        expect(check.commands()).toEqual(expected);
        expect(snapMembers.map((x) => x.id)).toEqual([1n, 2n, 3n]);
      } finally {
        check.close();
      }
    }
  }, 120_000);

  it("stores snapshots taken right after entries the state machine never sees", async () => {
    // Proves snapshots due while the machine's index trails the node's (membership entries) are stored, exact.
    dir = mkdtempSync(join(tmpdir(), "raft-snap-"));
    const opts = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 20_000 };
    members = await startLocalCluster(1, dir, { ...opts, snapshotEntries: 3, snapshotTailEntries: 1 });
    const [solo] = members as [LocalMember];
    await until("leader", () => solo.service.status().role === "leader");
    await solo.machine.startSnapshotWorker();
    const self = solo.service.memberList()[0]!;
    for (let i = 0; i < 20; i++) {
      await solo.service.propose(new TextEncoder().encode(`n${i}`));
      // An in-place update of this member: a ConfChange entry the state machine never sees.
      await solo.service.addMember(self.id, { ...self, clientUrls: [`http://127.0.0.1:${1000 + i}`] });
    }
    // With a snapshot due every 3-4 entries and every other entry a ConfChange, many snapshots
    // fall right after a ConfChange (the machine's index behind the node's); none may fail.
    await until("a snapshot", () => solo.service.node.store.snapshotIndex() > 0n);
    expect(solo.service.node.isStopped).toBe(false);
    const snap = solo.service.node.store.snapshot();
    const check = new AppendLogMachine(join(dir, "check.db"));
    try {
      check.restore(decodeLayerSnapshot(snapshotBytes(snap)).image, snap.metadata.index);
      expect(check.commands()).toEqual(solo.machine.commands().filter((c) => c.index <= snap.metadata.index));
    } finally {
      check.close();
    }
  }, 120_000);
});

describe("snapshots held by the state machine's files", () => {
  it("are recorded every interval without an image, and an image is made for a follower behind them", async () => {
    // Proves StateMachine.persist: members record their machine's synced file as the snapshot and
    // compact behind it without writing an image; a member that comes back behind the compacted
    // log gets an image made for it on request and ends with exactly the leader's state; a member
    // restarted over such a snapshot keeps its state and goes on applying.
    dir = mkdtempSync(join(tmpdir(), "raft-snap-"));
    const opts = {
      tickMs: 20,
      electionTicks: 10,
      heartbeatTicks: 1,
      requestTimeoutMs: 20_000,
      snapshotEntries: 40,
      snapshotTailEntries: 10,
      persistMachine: true,
    };
    members = await startLocalCluster(3, dir, opts);
    const infos = members.map((m) => ({
      id: m.id,
      name: `m${m.id}`,
      peerUrls: [m.url],
      clientUrls: [],
      isLearner: false,
    }));
    const restart = async (m: LocalMember): Promise<LocalMember> => {
      stopMember(m);
      const again = startMember(m.id, await bindServer(Number(new URL(m.url).port)), dir, infos, opts);
      members[members.indexOf(m)] = again;
      return again;
    };
    const propose = async (leader: LocalMember, tag: string, rounds: number) => {
      for (let round = 0; round < rounds; round++) {
        await until(`${tag} round ${round}`, () =>
          Promise.all(
            Array.from({ length: 30 }, (_, i) =>
              leader.service.propose(new TextEncoder().encode(`${tag}${round}-${i}`)),
            ),
          ),
        );
      }
    };
    const leader = await until("leader", () => members.find((m) => m.service.status().role === "leader"));
    const away = members.find((m) => m !== leader)!;
    stopMember(away);
    const live = members.filter((m) => m !== away);
    await propose(leader, "a", 10);
    await until("both live members record a snapshot held by their files", () =>
      live.every(
        (m) => m.service.node.store.snapshotIndex() > 40n && m.service.node.store.snapshotInMachine(),
      ),
    );
    for (const m of live) {
      expect(m.service.node.store.firstIndex()).toBeGreaterThan(40n);
      expect(readdirSync(m.dataDir).filter((f) => f.startsWith("snap-"))).toEqual([]);
    }

    const back = await restart(away);
    await until("the member that was away has the leader's state", () => {
      const want = leader.machine.commands();
      const got = back.machine.commands();
      return got.length === want.length && got.every((c, i) => c.index === want[i]!.index);
    });
    expect(back.machine.commands()).toEqual(leader.machine.commands());
    // It was sent an image: the leader made one at its applied index, in place of the record.
    expect(back.service.node.store.snapshotIndex()).toBeGreaterThan(0n);
    expect(leader.service.node.store.snapshotInMachine()).toBe(false);

    const follower = live.find((m) => m !== leader)!;
    await until("the follower records a snapshot held by its file", () =>
      follower.service.node.store.snapshotInMachine(),
    );
    const before = follower.machine.commands();
    const again = await restart(follower);
    expect(again.machine.commands()).toEqual(before);
    await propose(leader, "b", 2);
    await until(
      "the restarted member applies new entries",
      () => again.machine.commands().length === leader.machine.commands().length,
    );
    expect(again.machine.commands()).toEqual(leader.machine.commands());
  }, 120_000);

  it("wait while the machine's index trails the node's, from the first interval, rather than make an image", async () => {
    // Proves a member whose last entries are ones its machine never sees (membership changes) makes
    // no image when a snapshot falls due: it records the machine's files at the index of the next
    // entry the machine applies.
    dir = mkdtempSync(join(tmpdir(), "raft-snap-"));
    const opts = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 20_000 };
    members = await startLocalCluster(1, dir, {
      ...opts,
      snapshotEntries: 3,
      snapshotTailEntries: 1,
      persistMachine: true,
    });
    const [solo] = members as [LocalMember];
    await until("leader", () => solo.service.status().role === "leader");
    const store = solo.service.node.store;
    let images = 0;
    for (const name of ["writeSnapshotFile", "createSnapshot"] as const) {
      const original = store[name].bind(store) as (...args: unknown[]) => unknown;
      Object.defineProperty(store, name, {
        value: (...args: unknown[]) => {
          images++;
          return original(...args);
        },
      });
    }
    const self = solo.service.memberList()[0]!;
    // Ten in-place updates of this member: ConfChange entries only, well past an interval of 3-4.
    for (let i = 0; i < 10; i++) {
      await solo.service.addMember(self.id, { ...self, clientUrls: [`http://127.0.0.1:${2000 + i}`] });
    }
    await solo.service.propose(new TextEncoder().encode("seen"));
    const [seen] = solo.machine.commands();
    await until("a snapshot held by the machine's file", () => store.snapshotInMachine());
    expect(store.snapshotIndex()).toBe(seen!.index);
    expect(images).toBe(0);
    expect(solo.service.node.isStopped).toBe(false);
  }, 120_000);

  it("restore a machine found behind the stored snapshot, keeping the member table conf changes after it made", async () => {
    // Proves the recovery at start for a machine behind the stored snapshot (a power loss took
    // back its unsynced writes, or a crash came before a received snapshot was restored): the
    // machine is restored from the snapshot and the rest of the log is applied again, while the
    // member table keeps what a conf change after the snapshot wrote (that change is not applied
    // again). Before, the snapshot's older table replaced it: a learner added after the snapshot
    // was in the configuration but not in the member list, with no peer URL to reach it at.
    dir = mkdtempSync(join(tmpdir(), "raft-snap-"));
    const opts = {
      tickMs: 20,
      electionTicks: 10,
      heartbeatTicks: 1,
      requestTimeoutMs: 20_000,
      snapshotEntries: 20,
      snapshotTailEntries: 5,
    };
    const bound = await bindServer();
    const initial = [{ id: 1n, name: "m1", peerUrls: [bound.url], clientUrls: [], isLearner: false }];
    let solo = startMember(1n, bound, dir, initial, opts);
    members = [solo];
    await until("leader", () => solo.service.status().role === "leader");
    const enc = (t: string) => new TextEncoder().encode(t);
    for (let i = 0; i < 30; i++) await solo.service.propose(enc(`a${i}`));
    await until("a snapshot", () => solo.service.node.store.snapshotIndex() > 0n);
    const snapIndex = solo.service.node.store.snapshotIndex();
    const learner = { name: "m2", peerUrls: ["http://127.0.0.1:9"], clientUrls: [], isLearner: true };
    await solo.service.addMember(2n, learner);
    await solo.service.propose(enc("b0"));
    // The case needs the conf change past the last snapshot.
    expect(solo.service.node.store.snapshotIndex()).toBe(snapIndex);
    const before = solo.machine.commands().map((c) => c.command.toString());
    stopMember(solo);
    // The machine loses its writes past snapIndex - 3, as a power loss takes back unsynced ones.
    const db = new Database(join(dir, "member-1", "app.db"));
    db.prepare("DELETE FROM log WHERE idx > ?").run(snapIndex - 3n);
    db.prepare("UPDATE applied SET idx = ?").run(snapIndex - 3n);
    db.close();
    const again = await until("the member's port again", () =>
      bindServer(Number(new URL(bound.url).port)).catch(() => undefined),
    );
    solo = startMember(1n, again, dir, initial, opts);
    members = [solo];
    expect(solo.machine.appliedIndex()).toBe(snapIndex);
    await until("leader again", () => solo.service.status().role === "leader");
    await solo.service.propose(enc("c0"));
    expect(solo.machine.commands().map((c) => c.command.toString())).toEqual([...before, "c0"]);
    expect(solo.service.memberList().find((m) => m.id === 2n)).toMatchObject({ id: 2n, ...learner });
    expect(solo.service.node.store.initialState().confState.learners).toEqual([2n]);
  }, 120_000);

  it("stop a member whose machine cannot sync its files, before its log is compacted behind them", async () => {
    // Proves a failed StateMachine.persist is fatal, as a failed sync of the Raft log is: the file
    // may have lost writes, so no snapshot may be recorded as held by it, and the daemon is told.
    dir = mkdtempSync(join(tmpdir(), "raft-snap-"));
    const opts = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1, requestTimeoutMs: 2_000 };
    members = await startLocalCluster(1, dir, {
      ...opts,
      snapshotEntries: 5,
      snapshotTailEntries: 1,
      persistMachine: true,
    });
    const [solo] = members as [LocalMember];
    await until("leader", () => solo.service.status().role === "leader");
    // The daemon is told, to exit as etcd does rather than linger answering errors.
    const fatals: string[] = [];
    solo.service.node.onFatal = (err) => fatals.push(err.message);
    let calls = 0;
    Object.defineProperty(solo.machine, "persist", {
      value: () => {
        calls++;
        return Promise.reject(new Error("EIO: i/o error, fdatasync"));
      },
    });
    let i = 0;
    await until("the member stops", async () => {
      if (!solo.service.node.isStopped) await solo.service.propose(new TextEncoder().encode(`e${i++}`));
      return solo.service.node.isStopped;
    });
    expect(calls).toBe(1);
    expect(fatals).toEqual([
      "state machine could not make its files durable (persist failed): Error: EIO: i/o error, fdatasync",
    ]);
    const store = new SqliteLogStore({ path: join(solo.dataDir, "raft.db") });
    try {
      expect(store.snapshotIndex()).toBe(0n);
      expect(store.firstIndex()).toBe(1n);
    } finally {
      store.close();
    }
  }, 120_000);
});
