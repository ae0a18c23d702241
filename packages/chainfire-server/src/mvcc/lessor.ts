// Leases. What a lease is (ID, granted TTL, checkpointed remaining TTL, attached keys) is replicated
// state changed only by apply. WHEN a lease expires is decided by the leader alone from its own
// clock: the server drives `promote`/`demote` on leadership changes, `renew` on keep-alives,
// `expiredLeases` to find leases to revoke through the log, and `checkpointsDue` to persist remaining
// TTLs so a new leader continues the countdown instead of restarting it.

export interface Lease {
  readonly id: bigint;
  /** Granted TTL in seconds. */
  readonly ttlSeconds: bigint;
  /** Remaining TTL recorded by the last checkpoint; 0n when none was taken or since a renewal (the full TTL). */
  remainingTtlSeconds: bigint;
  /** Attached keys (index strings). */
  readonly keys: Set<string>;
  /** Leader-only: when the lease expires (ms since epoch); null on followers. */
  expiryMs: number | null;
}

export interface LessorOptions {
  /** Shortest TTL granted (seconds); shorter requests are raised to it, as etcd does. */
  minTtlSeconds: bigint;
  /** How often (ms) a lease's remaining TTL is checkpointed through the log. */
  checkpointIntervalMs: number;
  /** The clock expiry is counted on (see `monotonicMs`, the default). */
  clockMs?: () => number;
}

/**
 * The lessor's clock: milliseconds that move only forward, at the rate of real time (the process's
 * monotonic clock, counted from its wall-clock start). A step of the wall clock (NTP correcting it,
 * an operator setting it) neither expires a leader's leases early nor keeps them past their time; etcd
 * compares Go's monotonic readings the same way.
 */
export function monotonicMs(): number {
  return performance.timeOrigin + performance.now();
}

export const MAX_LEASE_TTL_SECONDS = 9_000_000_000n;

/**
 * The shortest lease TTL a member grants, from its Raft timing as etcd derives it: one and a half
 * election timeouts (counted in whole heartbeat ticks), rounded up to whole seconds, so a lease
 * outlives the election that follows a leader's loss. 2 s at the defaults (100 ms, 1,000 ms).
 */
export function minLeaseTtlSeconds(heartbeatIntervalMs: number, electionTimeoutMs: number): bigint {
  const electionTicks = Math.floor(electionTimeoutMs / heartbeatIntervalMs);
  const ms = Math.floor((3 * electionTicks) / 2) * heartbeatIntervalMs;
  return BigInt(Math.ceil(ms / 1000));
}

/** What a keep-alive gets: the granted TTL, or why there is none. */
export type Renewal = bigint | "not-found" | "expired";

export class Lessor {
  private readonly leases = new Map<bigint, Lease>();
  private primary = false;
  /** The Raft term this member leads in while primary (0n: not given, as in single-member tests). */
  private primaryTerm = 0n;
  private readonly lastCheckpointMs = new Map<bigint, number>();
  /** Callers of `whenSettled`, woken when the lease goes away or this member stops leading. */
  private readonly settledWaiters = new Map<bigint, (() => void)[]>();

  constructor(readonly options: LessorOptions) {}

  get isPrimary(): boolean {
    return this.primary;
  }

  /** The term given to `promote`: what the leader decides from its clock is proposed for it alone. */
  get term(): bigint {
    return this.primaryTerm;
  }

  /** Now, on the clock expiry is counted on: what the callers' `nowMs` arguments are read from. */
  nowMs(): number {
    return (this.options.clockMs ?? monotonicMs)();
  }

  get(id: bigint): Lease | undefined {
    return this.leases.get(id);
  }

  /**
   * Every lease's ID, soonest expiry first as etcd lists them; leases without an expiry here (on a
   * follower, or one not yet counted down) come last, in grant order.
   */
  ids(): bigint[] {
    const expiry = (l: Lease) => l.expiryMs ?? Number.POSITIVE_INFINITY;
    return [...this.leases.values()].sort((a, b) => expiry(a) - expiry(b) || 0).map((l) => l.id);
  }

  /** Apply path: records a granted lease, counted down from `nowMs` on the leader. */
  add(id: bigint, ttlSeconds: bigint, remainingTtlSeconds: bigint, nowMs: number | null): Lease {
    const lease: Lease = { id, ttlSeconds, remainingTtlSeconds, keys: new Set(), expiryMs: null };
    if (this.primary && nowMs !== null) lease.expiryMs = nowMs + Number(ttlSeconds) * 1000;
    this.leases.set(id, lease);
    return lease;
  }

  /** Apply path: forgets a lease (its keys are deleted by the store). */
  delete(id: bigint): void {
    this.leases.delete(id);
    this.lastCheckpointMs.delete(id);
    this.wake(id);
  }

  clear(): void {
    this.leases.clear();
    this.lastCheckpointMs.clear();
    this.wakeAll();
  }

  /**
   * Apply path: a checkpoint recorded `remainingTtlSeconds` for lease `id`. A renewal's record (0:
   * the full TTL) also restarts the leader's countdown from now if it would end sooner: the leader
   * may have begun counting from an older record (it was elected after the renewal was proposed, by
   * another member or in another term), and the keep-alive is answered once this record is applied.
   */
  checkpointed(id: bigint, remainingTtlSeconds: bigint): Lease | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    lease.remainingTtlSeconds = remainingTtlSeconds;
    if (this.primary && remainingTtlSeconds === 0n && lease.expiryMs !== null) {
      lease.expiryMs = Math.max(lease.expiryMs, this.nowMs() + Number(lease.ttlSeconds) * 1000);
    }
    return lease;
  }

  attach(id: bigint, key: string): void {
    this.leases.get(id)?.keys.add(key);
  }

  detach(id: bigint, key: string): void {
    this.leases.get(id)?.keys.delete(key);
  }

  /** This member became leader: start every lease's countdown from its remaining (or granted) TTL. */
  promote(nowMs: number, term = 0n): void {
    this.primary = true;
    this.primaryTerm = term;
    for (const lease of this.leases.values()) {
      const seconds = lease.remainingTtlSeconds > 0n ? lease.remainingTtlSeconds : lease.ttlSeconds;
      lease.expiryMs = nowMs + Number(seconds) * 1000;
    }
  }

  /** This member lost leadership: only the leader tracks expiry. */
  demote(): void {
    this.primary = false;
    this.primaryTerm = 0n;
    for (const lease of this.leases.values()) lease.expiryMs = null;
    this.wakeAll();
  }

  /**
   * Leader: a keep-alive. Returns the granted TTL; "not-found" for a lease that does not exist; and
   * "expired" for one whose time is up but whose revocation is not applied yet, which is not renewed
   * (etcd's Renew waits for that revocation, then answers that the lease is not found).
   */
  renew(id: bigint, nowMs: number): Renewal {
    const lease = this.leases.get(id);
    if (lease === undefined) return "not-found";
    if (this.primary) {
      if (lease.expiryMs !== null && lease.expiryMs <= nowMs) return "expired";
      lease.expiryMs = nowMs + Number(lease.ttlSeconds) * 1000;
      // The keep-alive's answer waits for the renewal to be recorded through the log (see the lease
      // service), which counts as this interval's checkpoint.
      this.lastCheckpointMs.set(id, nowMs);
    }
    return lease.ttlSeconds;
  }

  /**
   * Resolves once lease `id` no longer exists here, or this member stops leading (or its leases are
   * replaced by a restore): the moment to look at an expired lease again.
   */
  whenSettled(id: bigint): Promise<void> {
    if (!this.leases.has(id) || !this.primary) return Promise.resolve();
    return new Promise((resolve) => {
      const waiters = this.settledWaiters.get(id);
      if (waiters === undefined) this.settledWaiters.set(id, [resolve]);
      else waiters.push(resolve);
    });
  }

  /** How many callers of `whenSettled` wait now (keep-alives of leases whose time is up). */
  get settling(): number {
    let n = 0;
    for (const waiters of this.settledWaiters.values()) n += waiters.length;
    return n;
  }

  private wake(id: bigint): void {
    const waiters = this.settledWaiters.get(id);
    if (waiters === undefined) return;
    this.settledWaiters.delete(id);
    for (const resolve of waiters) resolve();
  }

  private wakeAll(): void {
    for (const id of [...this.settledWaiters.keys()]) this.wake(id);
  }

  /** Seconds left (truncated, as etcd reports); the granted TTL when this member is not tracking expiry. */
  remainingSeconds(lease: Lease, nowMs: number): bigint {
    if (lease.expiryMs === null) {
      return lease.remainingTtlSeconds > 0n ? lease.remainingTtlSeconds : lease.ttlSeconds;
    }
    const leftMs = Math.max(0, lease.expiryMs - nowMs);
    return BigInt(Math.floor(leftMs / 1000));
  }

  /** Leader: leases whose time is up, oldest deadline first, at most `max`. Propose their expiry. */
  expiredLeases(nowMs: number, max = 1000): bigint[] {
    if (!this.primary) return [];
    const expired: Lease[] = [];
    for (const lease of this.leases.values()) {
      if (lease.expiryMs !== null && lease.expiryMs <= nowMs) expired.push(lease);
    }
    expired.sort((a, b) => a.expiryMs! - b.expiryMs!);
    return expired.slice(0, max).map((lease) => lease.id);
  }

  /**
   * Leader: the remaining TTLs worth recording now (one per lease per checkpoint interval), rounded
   * up to whole seconds: a new leader counts a recorded TTL down from its own election, so a lease
   * never expires sooner than this leader would have let it. A lease whose time is up is left to its
   * expiry (a recorded 0 would read as "renewed").
   */
  checkpointsDue(nowMs: number, max = 1000): { ID: bigint; remainingTTL: bigint }[] {
    if (!this.primary) return [];
    const due: { ID: bigint; remainingTTL: bigint }[] = [];
    for (const lease of this.leases.values()) {
      if (due.length >= max || lease.expiryMs === null || lease.expiryMs <= nowMs) continue;
      const last = this.lastCheckpointMs.get(lease.id) ?? Number.NEGATIVE_INFINITY;
      if (nowMs - last < this.options.checkpointIntervalMs) continue;
      this.lastCheckpointMs.set(lease.id, nowMs);
      due.push({ ID: lease.id, remainingTTL: BigInt(Math.ceil((lease.expiryMs - nowMs) / 1000)) });
    }
    return due;
  }
}
