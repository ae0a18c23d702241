// The envelope wrapped around every command: who proposed it (member and request number, so the
// proposer can match the applied entry to its caller), the leader's wall-clock time and a 64-bit
// seed. The proposer writes it; the leader re-stamps time and seed of proposals a follower sent
// (restampEnvelope). Every member decodes the same bytes, so timestamp and seed are deterministic.
const HEADER = 1 + 8 + 8 + 8 + 8;
const VERSION = 1;

export interface Envelope {
  readonly proposer: bigint;
  readonly requestId: bigint;
  readonly timestampMs: number;
  readonly seed: bigint;
  readonly command: Uint8Array;
}

/**
 * The entry's bytes. They come from Node's shared allocation pool (every byte is written here), not
 * from an ArrayBuffer of their own: one per proposal would be a separately tracked allocation.
 */
export function encodeEnvelope(e: Envelope): Uint8Array {
  const out = Buffer.allocUnsafe(HEADER + e.command.length);
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  v.setUint8(0, VERSION);
  v.setBigUint64(1, e.proposer);
  v.setBigUint64(9, e.requestId);
  v.setFloat64(17, e.timestampMs);
  v.setBigUint64(25, e.seed);
  out.set(e.command, HEADER);
  return out;
}

/**
 * Replaces time and seed in an encoded envelope, in place. Bytes that are not an envelope of this
 * version are left alone (apply rejects them as before).
 */
export function restampEnvelope(b: Uint8Array, timestampMs: number, seed: bigint): void {
  if (b.length < HEADER || b[0] !== VERSION) return;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setFloat64(17, timestampMs);
  v.setBigUint64(25, seed);
}

export function decodeEnvelope(b: Uint8Array): Envelope {
  if (b.length < HEADER || b[0] !== VERSION) throw new Error(`bad entry envelope (${b.length} bytes)`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    proposer: v.getBigUint64(1),
    requestId: v.getBigUint64(9),
    timestampMs: v.getFloat64(17),
    seed: v.getBigUint64(25),
    command: b.subarray(HEADER),
  };
}
