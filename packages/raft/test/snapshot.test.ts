// Proves snapshots taken off the event loop under load are exact: on every member, the stored
// snapshot at index I holds exactly the commands applied up to I and the members at I, while
// proposals kept flowing during the worker's copy.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type LocalMember, startLocalCluster, stopMember } from "../src/demo/local-cluster.js";
import { decodeLayerSnapshot } from "../src/service/members.js";
import { AppendLogMachine } from "../src/service/sqlite-test-machine.js";
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
      const { members: snapMembers, image } = decodeLayerSnapshot(snap.data);
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
});
