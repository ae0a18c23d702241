// A small seeded PRNG (SplitMix64) so that election timeouts, and whole simulations, replay exactly
// from a seed. Not for cryptography.
import { assert } from "./assert.js";
import type { RandomSource } from "./types.js";

const MASK_64 = (1n << 64n) - 1n;

export class SeededRandom implements RandomSource {
  private state: bigint;

  constructor(seed: bigint) {
    this.state = seed & MASK_64;
  }

  /** The next 64 random bits. */
  nextUint64(): bigint {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK_64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
    return z ^ (z >> 31n);
  }

  intBelow(bound: number): number {
    assert(Number.isInteger(bound) && bound > 0 && bound <= 2 ** 32, `intBelow bound ${bound}`);
    // 32 high bits scaled to the bound: the bias is below 2^-32 * bound, irrelevant here.
    const high = Number(this.nextUint64() >> 32n);
    return Math.floor((high / 2 ** 32) * bound);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.intBelow(1_000_000) < p * 1_000_000;
  }
}
