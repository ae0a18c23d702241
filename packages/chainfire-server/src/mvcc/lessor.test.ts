import { describe, expect, it } from "vitest";
import { Lessor, minLeaseTtlSeconds } from "./lessor.js";

describe("minLeaseTtlSeconds", () => {
  it("is one and a half election timeouts in whole ticks, rounded up to seconds, as etcd's", () => {
    // Proves a lease outlives an election however the operator times Raft (etcd 3.4's figures).
    expect(minLeaseTtlSeconds(100, 1000)).toBe(2n);
    expect(minLeaseTtlSeconds(50, 500)).toBe(1n);
    expect(minLeaseTtlSeconds(100, 5000)).toBe(8n);
    // 1,050 ms is 10 whole ticks of 100 ms: 15 ticks, 1.5 s.
    expect(minLeaseTtlSeconds(100, 1050)).toBe(2n);
    expect(minLeaseTtlSeconds(300, 3000)).toBe(5n);
  });
});

describe("Lessor.ids", () => {
  it("lists leases soonest expiry first on the leader and in grant order elsewhere, as etcd does", () => {
    // Proves `etcdctl lease list` order: etcd sorts its leader's leases by remaining time.
    const lessor = new Lessor({ minTtlSeconds: 2n, checkpointIntervalMs: 60_000 });
    lessor.add(1n, 500n, 0n, null);
    lessor.add(2n, 50n, 0n, null);
    lessor.add(3n, 5000n, 0n, null);
    expect(lessor.ids()).toEqual([1n, 2n, 3n]);
    lessor.promote(1_000);
    lessor.add(4n, 10n, 0n, 2_000);
    expect(lessor.ids()).toEqual([4n, 2n, 1n, 3n]);
    lessor.demote();
    expect(lessor.ids()).toEqual([1n, 2n, 3n, 4n]);
  });
});

describe("Lessor.renew", () => {
  it("does not renew a lease whose time is up, and wakes waiters when it goes or leadership does", async () => {
    // Proves a keep-alive arriving between a lease's expiry and its revocation cannot extend it.
    const lessor = new Lessor({ minTtlSeconds: 2n, checkpointIntervalMs: 60_000 });
    lessor.promote(0);
    const lease = lessor.add(1n, 10n, 0n, 0);
    lessor.add(2n, 10n, 0n, 0);
    expect(lessor.renew(1n, 5_000)).toBe(10n);
    expect(lease.expiryMs).toBe(15_000);
    expect(lessor.renew(1n, 15_000)).toBe("expired");
    expect(lease.expiryMs).toBe(15_000);
    expect(lessor.renew(9n, 15_000)).toBe("not-found");
    const settled: bigint[] = [];
    const gone = lessor.whenSettled(1n).then(() => settled.push(1n));
    const demoted = lessor.whenSettled(2n).then(() => settled.push(2n));
    await Promise.resolve();
    expect(settled).toEqual([]);
    lessor.delete(1n);
    await gone;
    expect(settled).toEqual([1n]);
    lessor.demote();
    await demoted;
    expect(settled).toEqual([1n, 2n]);
    // Off the leader nothing is counted down, so there is nothing to wait for.
    await lessor.whenSettled(2n);
  });
});

describe("Lessor.checkpointsDue", () => {
  it("records remaining TTLs rounded up, after a renewal's own record, and none for a lease whose time is up", () => {
    // Proves a new leader, which counts a recorded TTL down from its election, never expires a
    // lease sooner than the old leader's clock would have.
    const lessor = new Lessor({ minTtlSeconds: 2n, checkpointIntervalMs: 1_000 });
    lessor.promote(0);
    lessor.add(1n, 10n, 0n, 0);
    lessor.add(2n, 3n, 0n, 0);
    expect(lessor.checkpointsDue(100)).toEqual([
      { ID: 1n, remainingTTL: 10n },
      { ID: 2n, remainingTTL: 3n },
    ]);
    // 8.9 s left of lease 1 is recorded as 9, never 8; within the interval nothing is due.
    expect(lessor.checkpointsDue(600)).toEqual([]);
    expect(lessor.checkpointsDue(1_100)).toEqual([
      { ID: 1n, remainingTTL: 9n },
      { ID: 2n, remainingTTL: 2n },
    ]);
    // A keep-alive's answer waits for its own record (remaining 0: the full TTL), which counts as
    // the interval's checkpoint.
    expect(lessor.renew(1n, 1_500)).toBe(10n);
    expect(lessor.checkpointsDue(2_200)).toEqual([{ ID: 2n, remainingTTL: 1n }]);
    expect(lessor.checkpointsDue(2_600)).toEqual([{ ID: 1n, remainingTTL: 9n }]);
    // Lease 2's time is up at 3 s: its expiry is proposed, not a remaining TTL of 0.
    expect(lessor.checkpointsDue(3_300)).toEqual([]);
    expect(lessor.expiredLeases(3_300)).toEqual([2n]);
  });
});

describe("Lessor.checkpointed", () => {
  it("restarts the leader's countdown from a renewal's record when it would end sooner", () => {
    // Proves a keep-alive answered once its record is applied is honoured by a leader that began
    // counting from an older record (elected after the renewal was proposed elsewhere).
    let now = 0;
    const lessor = new Lessor({ minTtlSeconds: 2n, checkpointIntervalMs: 1_000, clockMs: () => now });
    const lease = lessor.add(1n, 10n, 4n, null);
    now = 1_000;
    lessor.promote(now, 7n);
    expect(lessor.term).toBe(7n);
    expect(lease.expiryMs).toBe(5_000);
    // A periodic checkpoint (from this leader or the one before) leaves the countdown alone.
    now = 2_000;
    lessor.checkpointed(1n, 3n);
    expect(lease.expiryMs).toBe(5_000);
    // The renewal's record: the full TTL from now.
    lessor.checkpointed(1n, 0n);
    expect(lease.expiryMs).toBe(12_000);
    expect(lease.remainingTtlSeconds).toBe(0n);
    // Never shortened by a record applied later.
    now = 1_500;
    lessor.checkpointed(1n, 0n);
    expect(lease.expiryMs).toBe(12_000);
    expect(lessor.checkpointed(9n, 0n)).toBeUndefined();
    lessor.demote();
    expect(lessor.term).toBe(0n);
  });
});
