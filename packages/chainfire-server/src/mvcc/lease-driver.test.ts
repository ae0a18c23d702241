import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { command, etcd } from "@photoncloud/chainfire-api";
import type { Replicated } from "@photoncloud/raft";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { entriesFor } from "../testing/commands.js";
import { LeaseDriver } from "./lease-driver.js";
import { MvccStore } from "./store.js";

let dir: string;
let store: MvccStore;
let nextIndex = 1n;
/** The lease clock of the store and of the driver. */
let now = 1_000_000;
const apply = (cmd: command.MvccCommand) => {
  store.applyBatch(entriesFor([cmd], nextIndex, 1_000_000));
  nextIndex++;
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "lease-driver-"));
  store = new MvccStore({ path: join(dir, "mvcc.db"), leaseClockMs: () => now });
  nextIndex = 1n;
  now = 1_000_000;
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("LeaseDriver", () => {
  it("proposes no expiry under the CORRUPT alarm, and expires the lease once it is disarmed", async () => {
    // Proves the leader does not fill the log with expiries apply would refuse (etcd's revoke is
    // refused under the alarm too): the lease waits, then goes once the alarm is gone.
    const proposed: command.MvccCommand[] = [];
    const replicated = {
      propose: async (bytes: Uint8Array) => {
        proposed.push(command.MvccCommand.decode(bytes));
        return { result: new Uint8Array(), index: 0n };
      },
    } as unknown as Replicated;
    const driver = new LeaseDriver(replicated, store, {
      intervalMs: 60_000,
      leasesPerProposalMax: 10,
    });
    store.lessor.promote(now);
    apply({ leaseGrant: { TTL: 5n, ID: 7n } });
    const alarm = (action: etcd.AlarmRequest_AlarmAction) =>
      apply({ alarm: { action, memberID: 2n, alarm: etcd.AlarmType.CORRUPT } });
    alarm(etcd.AlarmRequest_AlarmAction.ACTIVATE);
    now += 60_000;
    expect(store.lessor.expiredLeases(now)).toEqual([7n]);
    await driver.tick();
    expect(proposed.filter((c) => c.leaseExpire)).toEqual([]);
    alarm(etcd.AlarmRequest_AlarmAction.DEACTIVATE);
    await driver.tick();
    expect(proposed.filter((c) => c.leaseExpire).map((c) => c.leaseExpire!.ids)).toEqual([[7n]]);
  });
});
