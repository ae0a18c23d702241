// Protobuf encoding that reuses one writer per message type. ts-proto's encoders start every message in
// a fresh writer (a 128-byte buffer that grows by doubling for larger messages), then slice and copy;
// on a hot path that is garbage per call. Here the writer's buffer grows once for the life of the
// process and the bytes are copied once. Encoding is synchronous, so one writer is never shared by
// two messages at a time.

/** What a ts-proto message type offers: `encode(message, writer)` returning the writer. */
export interface EncodesWith<T, W extends { finish(): Uint8Array }> {
  encode(message: T, writer?: W): W;
}

/**
 * An encoder for `message` over one reused writer from `newWriter` (e.g. `() => new BinaryWriter()`).
 * Returns a Buffer view of the freshly finished bytes (they are not reused).
 */
export function reusingEncoder<T, W extends { finish(): Uint8Array }>(
  message: EncodesWith<T, W>,
  newWriter: () => W,
): (value: T) => Buffer {
  const writer = newWriter();
  return (value) => {
    let bytes: Uint8Array;
    try {
      bytes = message.encode(value, writer).finish();
    } catch (err) {
      writer.finish(); // an encoder that threw half-way leaves bytes behind: drop them
      throw err;
    }
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}
