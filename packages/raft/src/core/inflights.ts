// The bounded window of App messages sent to one follower and not yet acknowledged. Each slot holds
// the last entry index carried by one message; an acknowledgement of index i frees every slot <= i.
import { assert } from "./assert.js";

export class Inflights {
  private readonly lastIndexes: bigint[] = [];

  constructor(readonly sizeMax: number) {
    assert(sizeMax > 0, "inflights size must be positive");
  }

  get count(): number {
    return this.lastIndexes.length;
  }

  full(): boolean {
    return this.lastIndexes.length >= this.sizeMax;
  }

  add(lastIndex: bigint): void {
    assert(!this.full(), "inflights add while full");
    const prev = this.lastIndexes[this.lastIndexes.length - 1];
    assert(prev === undefined || lastIndex > prev, "inflights must grow monotonically");
    this.lastIndexes.push(lastIndex);
  }

  /** Frees every message whose last index is <= `index`. */
  freeLE(index: bigint): void {
    let n = 0;
    while (n < this.lastIndexes.length && (this.lastIndexes[n] as bigint) <= index) n++;
    if (n > 0) this.lastIndexes.splice(0, n);
  }

  freeFirstOne(): void {
    this.lastIndexes.shift();
  }

  reset(): void {
    this.lastIndexes.length = 0;
  }
}
