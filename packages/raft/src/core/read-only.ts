// Pending linearizable reads on the leader (ReadIndex). Requests queue up with the commit index at
// the time they arrived; one heartbeat round carrying the newest request's context confirms
// leadership for every request queued before it, so a burst of reads costs one round trip.
import { assert } from "./assert.js";
import type { NodeId } from "./types.js";

/** Bound on ReadIndex requests queued on a leader (pending confirmation or waiting for a commit). */
export const READ_REQUESTS_PENDING_MAX = 4096;

export interface ReadRequest {
  /** Who asked: the leader itself (NONE or its own ID) or a follower that forwarded the read. */
  readonly from: NodeId;
  readonly ctx: Uint8Array;
  readonly index: bigint;
  readonly acks: Set<NodeId>;
}

export function ctxKey(ctx: Uint8Array): string {
  return Buffer.from(ctx).toString("hex");
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadRequest>();
  private readonly queue: string[] = [];

  constructor(private readonly pendingMax: number) {}

  get size(): number {
    return this.queue.length;
  }

  /** Queues a read; returns false when the context is already pending or the queue is full. */
  addRequest(index: bigint, from: NodeId, ctx: Uint8Array): boolean {
    const key = ctxKey(ctx);
    if (this.pending.has(key) || this.queue.length >= this.pendingMax) return false;
    this.pending.set(key, { from, ctx, index, acks: new Set() });
    this.queue.push(key);
    return true;
  }

  /** Records that `from` acknowledged the heartbeat carrying `ctx`; returns the acks so far. */
  recvAck(from: NodeId, ctx: Uint8Array): ReadonlySet<NodeId> | undefined {
    const req = this.pending.get(ctxKey(ctx));
    if (req === undefined) return undefined;
    req.acks.add(from);
    return req.acks;
  }

  /** Releases the request with `ctx` and every request queued before it (all are confirmed). */
  advance(ctx: Uint8Array): ReadRequest[] {
    const key = ctxKey(ctx);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const released = this.queue.splice(0, at + 1).map((k) => {
      const req = this.pending.get(k);
      assert(req !== undefined, "read queue and map out of sync");
      this.pending.delete(k);
      return req;
    });
    return released;
  }

  lastPendingCtx(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)?.ctx;
  }
}
