// The CRC-32C (Castagnoli) half of the crc-32 package, which ships types for its CRC-32 half only.
declare module "crc-32/crc32c.js" {
  const crc32c: {
    /** CRC-32C of `data`, continuing from `seed`; a signed 32-bit result. */
    buf(data: Uint8Array, seed?: number): number;
  };
  export default crc32c;
}
