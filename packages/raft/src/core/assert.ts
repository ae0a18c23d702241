// Invariant checks. A failed assertion is a programmer error inside the core (or a driver that broke
// the Ready contract): it throws at once instead of letting a corrupted state spread to peers.

export class RaftAssertionError extends Error {
  readonly code = "RAFT_ASSERTION_FAILED";
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new RaftAssertionError(`raft invariant violated: ${message}`);
}

export function maxBigint(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

export function minBigint(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
