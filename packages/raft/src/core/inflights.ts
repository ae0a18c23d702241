// The bounded window of App messages sent to one follower and not yet acknowledged. Each slot holds
// the last entry index carried by one message and the bytes of entry data it carried; an
// acknowledgement of index i frees every slot <= i. The window is full at `sizeMax` messages or, when
// `bytesMax` is not 0, at `bytesMax` bytes (etcd-io/raft's MaxInflightMsgs and MaxInflightBytes): a
// follower far behind is then fed a few megabytes per round trip, not hundreds read in one turn.
import { assert } from "./assert.js";

export class Inflights {
  private readonly lastIndexes: bigint[] = [];
  private readonly sizes: number[] = [];
  /** Bytes of entry data in the window. */
  bytes = 0;

  constructor(
    readonly sizeMax: number,
    readonly bytesMax = 0,
  ) {
    assert(sizeMax > 0, "inflights size must be positive");
    assert(bytesMax >= 0, "inflights bytes bound must not be negative");
  }

  get count(): number {
    return this.lastIndexes.length;
  }

  full(): boolean {
    return this.lastIndexes.length >= this.sizeMax || (this.bytesMax > 0 && this.bytes >= this.bytesMax);
  }

  add(lastIndex: bigint, bytes: number): void {
    assert(!this.full(), "inflights add while full");
    const prev = this.lastIndexes[this.lastIndexes.length - 1];
    assert(prev === undefined || lastIndex > prev, "inflights must grow monotonically");
    this.lastIndexes.push(lastIndex);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  /** Frees every message whose last index is <= `index`. */
  freeLE(index: bigint): void {
    let n = 0;
    while (n < this.lastIndexes.length && (this.lastIndexes[n] as bigint) <= index) n++;
    if (n > 0) this.free(n);
  }

  freeFirstOne(): void {
    if (this.lastIndexes.length > 0) this.free(1);
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }

  private free(n: number): void {
    this.lastIndexes.splice(0, n);
    for (const size of this.sizes.splice(0, n)) this.bytes -= size;
  }
}
