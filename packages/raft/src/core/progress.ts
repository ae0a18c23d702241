// The leader's view of one follower's log: how far it matches (match), what to send next (next) and
// how to send it. probe: one App at a time until the follower's position is found; replicate:
// pipelined Apps bounded by the inflights window; snapshot: waiting for a snapshot to be installed.
import { assert, maxBigint, minBigint } from "./assert.js";
import { Inflights } from "./inflights.js";

export type ProgressState = "probe" | "replicate" | "snapshot";

export class Progress {
  match = 0n;
  next: bigint;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0n;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In probe state: an App is outstanding, so the next one waits for a response or heartbeat. */
  probeSent = false;
  readonly inflights: Inflights;

  constructor(
    next: bigint,
    inflightMsgsMax: number,
    public isLearner: boolean,
    inflightBytesMax = 0,
  ) {
    assert(next >= 1n, "progress next must be >= 1");
    this.next = next;
    this.inflights = new Inflights(inflightMsgsMax, inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0n;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, the follower is known to have at least the snapshot.
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = maxBigint(this.match + 1n, pending + 1n);
    } else {
      this.resetState("probe");
      this.next = this.match + 1n;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1n;
  }

  becomeSnapshot(snapshotIndex: bigint): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records an acknowledgement of `index`; returns true when match advanced. */
  maybeUpdate(index: bigint): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = maxBigint(this.next, index + 1n);
    return updated;
  }

  /**
   * Handles a rejection of the App whose previous index was `rejected`; `matchHint` is where the
   * follower's log may match. Returns false when the rejection is stale (already superseded).
   */
  maybeDecrTo(rejected: bigint, matchHint: bigint): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1n;
      return true;
    }
    if (this.next - 1n !== rejected) return false;
    this.next = maxBigint(minBigint(rejected, matchHint + 1n), this.match + 1n);
    this.probeSent = false;
    return true;
  }

  /**
   * Records that an App carrying entries up to `lastIndex` (possibly none), `bytes` of entry data,
   * was sent.
   */
  sentEntries(lastIndex: bigint, entryCount: number, bytes: number): void {
    if (this.state === "replicate") {
      if (entryCount > 0) {
        this.next = lastIndex + 1n;
        this.inflights.add(lastIndex, bytes);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    } else {
      assert(false, `sending entries in state ${this.state}`);
    }
  }

  isPaused(): boolean {
    if (this.state === "probe") return this.probeSent;
    if (this.state === "replicate") return this.inflights.full();
    return true;
  }
}
