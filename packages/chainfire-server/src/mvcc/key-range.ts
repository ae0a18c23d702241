// Keys are held as latin1 strings: one char per byte, so JS string order is etcd's byte order and a
// Map lookup needs no hex encoding.

/** The key as an index string (latin1: byte-for-byte). */
export function keyString(key: Uint8Array): string {
  // Decoded keys are Buffers already: a view is made only for a plain Uint8Array.
  const bytes = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return bytes.toString("latin1");
}

/**
 * A key range as etcd defines it: an empty end is the single key; an end of "\0" is every key >= key;
 * otherwise [key, end). `end === null` means unbounded above.
 */
export interface KeyRange {
  readonly start: string;
  readonly end: string | null;
  readonly single: boolean;
}

export function keyRange(key: Uint8Array, rangeEnd: Uint8Array): KeyRange {
  const start = keyString(key);
  if (rangeEnd.length === 0) return { start, end: start, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start, end: null, single: false };
  return { start, end: keyString(rangeEnd), single: false };
}

export function inRange(range: KeyRange, key: string): boolean {
  if (range.single) return key === range.start;
  return key >= range.start && (range.end === null || key < range.end);
}

/** The smallest key after every key with this prefix; "\0" (everything) when the prefix is all 0xff. */
export function prefixEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
