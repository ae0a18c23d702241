// The simulated network: every message gets a delivery time from a seeded delay, may be dropped or
// duplicated, and is held back while a partition or a clog separates its ends. Random delays
// reorder messages; per-destination order is deliberately NOT kept, which is harsher than TCP.
import type { SeededRandom } from "../core/random.js";
import type { Message, NodeId } from "../core/types.js";

export interface NetworkFaults {
  dropProbability: number;
  duplicateProbability: number;
  delayMax: number;
}

interface InFlight {
  readonly deliverAt: number;
  readonly seq: number;
  readonly m: Message;
}

export class SimNetwork {
  private inFlight: InFlight[] = [];
  private seq = 0;
  /** Partition: member → group number; members in different groups cannot talk. */
  partition = new Map<NodeId, number>();
  /** Clogged members: their messages wait (not dropped) until unclogged. */
  readonly clogged = new Set<NodeId>();

  constructor(
    private readonly random: SeededRandom,
    public faults: NetworkFaults,
    /** Told about every message lost, so the sender's transport can report it (as a real one does). */
    private readonly onLost: (m: Message) => void,
  ) {}

  get size(): number {
    return this.inFlight.length;
  }

  send(m: Message, now: number): void {
    if (this.random.chance(this.faults.dropProbability)) {
      this.onLost(m);
      return;
    }
    const copies = this.random.chance(this.faults.duplicateProbability) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const deliverAt = now + 1 + this.random.intBelow(Math.max(1, this.faults.delayMax));
      this.inFlight.push({ deliverAt, seq: this.seq++, m });
    }
  }

  separated(a: NodeId, b: NodeId): boolean {
    return (this.partition.get(a) ?? 0) !== (this.partition.get(b) ?? 0);
  }

  /**
   * Takes the messages due at `now`. Partitioned ones are returned as dropped; clogged ones stay.
   */
  due(now: number): { deliver: Message[]; dropped: Message[] } {
    const deliver: Message[] = [];
    const dropped: Message[] = [];
    const keep: InFlight[] = [];
    for (const f of this.inFlight) {
      if (f.deliverAt > now || this.clogged.has(f.m.from) || this.clogged.has(f.m.to)) keep.push(f);
      else if (this.separated(f.m.from, f.m.to)) dropped.push(f.m);
      else deliver.push(f.m);
    }
    this.inFlight = keep;
    return { deliver, dropped };
  }

  /** Drops everything addressed to `id` (a crashed member's connections close). */
  dropFor(id: NodeId): void {
    for (const f of this.inFlight) if (f.m.to === id) this.onLost(f.m);
    this.inFlight = this.inFlight.filter((f) => f.m.to !== id);
  }

  /** Drops everything sent by `id` (its old incarnation is gone for good). */
  dropFrom(id: NodeId): void {
    this.inFlight = this.inFlight.filter((f) => f.m.from !== id);
  }

  heal(): void {
    this.partition.clear();
    this.clogged.clear();
  }
}
