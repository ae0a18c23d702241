// The durable store of one simulated member. Writes are visible at once (`live`, what the running
// core reads), but only synced writes survive a crash (`durable`). A sync makes every earlier write
// durable too, as an fsync of a write-ahead log does.
import { MemoryStorage } from "../core/memory-storage.js";
import type { NodeId } from "../core/types.js";

type Write = (s: MemoryStorage) => void;

export class SimDisk {
  durable: MemoryStorage;
  live: MemoryStorage;
  private unsynced: Write[] = [];

  constructor(init?: { voters?: NodeId[]; learners?: NodeId[] }) {
    this.durable = new MemoryStorage(init);
    this.live = this.durable.clone();
  }

  write(w: Write, sync: boolean): void {
    w(this.live);
    this.unsynced.push(w);
    if (sync) this.sync();
  }

  sync(): void {
    for (const w of this.unsynced) w(this.durable);
    this.unsynced = [];
  }

  /** Power loss: unsynced writes are gone; the store reopens with what was synced. */
  crash(): void {
    this.unsynced = [];
    this.live = this.durable.clone();
  }
}
