/**
 * HPACK (RFC 7541): header compression for HTTP/2.
 *
 * The decoder keeps a dynamic table in step with the peer's encoder; the encoder never indexes
 * (it uses only the static table), so what we send never changes the peer's decoder state beyond
 * what a literal without indexing does. Strings are latin1: one char per byte.
 */

/** Malformed header block: the connection answers with COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = "HpackError";
}

/**
 * The block decoded, but its header list is larger than allowed. The dynamic table took every
 * insertion of the block, so the connection can go on: only the block's stream is refused.
 */
export class HeaderListTooLargeError extends HpackError {
  override name = "HeaderListTooLargeError";
}

// ---------------------------------------------------------------------------------------------
// Static table (RFC 7541 Appendix A). Index 1 is STATIC_TABLE[0].

const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length;
const STATIC_NAMES = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES = STATIC_TABLE.map((e) => e[1]);

/** For the encoder: name -> its first static index and the indexes of its full matches. */
interface StaticName {
  readonly nameIndex: number;
  readonly valueIndexes: Map<string, number>;
}
const STATIC_BY_NAME = new Map<string, StaticName>();
for (let i = 0; i < STATIC_COUNT; i++) {
  const [name, value] = STATIC_TABLE[i]!;
  let entry = STATIC_BY_NAME.get(name);
  if (entry === undefined) {
    entry = { nameIndex: i + 1, valueIndexes: new Map() };
    STATIC_BY_NAME.set(name, entry);
  }
  if (!entry.valueIndexes.has(value)) entry.valueIndexes.set(value, i + 1);
}

// ---------------------------------------------------------------------------------------------
// Huffman code (RFC 7541 Appendix B). The code is canonical: ordering symbols by (bit length,
// symbol) and counting up gives every code, so only the lengths are written down here.

const EOS = 256;
// biome-ignore format: one row per 16 symbols
const HUFFMAN_CODE_LENGTHS_BITS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // ' '-'/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // '0'-'?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // '@'-'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 'P'-'_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // '`'-'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 'p'-127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

/** HUFFMAN_CODES[symbol]: the code, right-aligned (at most 30 bits, so it fits a small integer). */
export const HUFFMAN_CODES: Uint32Array = buildCanonicalCodes(HUFFMAN_CODE_LENGTHS_BITS);
const HUFFMAN_LENGTHS = Uint8Array.from(HUFFMAN_CODE_LENGTHS_BITS);

function buildCanonicalCodes(lengths: readonly number[]): Uint32Array {
  const symbols = lengths.map((_, symbol) => symbol);
  symbols.sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const codes = new Uint32Array(lengths.length);
  let code = 0;
  let previousLength = lengths[symbols[0]!]!;
  for (const symbol of symbols) {
    const length = lengths[symbol]!;
    code *= 2 ** (length - previousLength);
    previousLength = length;
    codes[symbol] = code;
    code++;
  }
  // A complete prefix code ends exactly at 2^maxLength: the last code is all ones.
  if (code !== 2 ** previousLength) throw new Error("HPACK Huffman code lengths do not form a complete code");
  return codes;
}

/*
 * Decoding is a state machine over 4-bit nibbles. A state is an internal node of the code tree
 * (the root is state 0); DECODE_TABLE[state * 16 + nibble] packs the state reached, the symbol
 * emitted on the way (at most one: no code is shorter than 5 bits) and two flags.
 */
const DECODE_NEXT_MASK = 0xff;
const DECODE_SYMBOL_SHIFT = 8;
const DECODE_EMIT = 1 << 16;
const DECODE_FAIL = 1 << 17; // the nibble completes EOS, which must never appear in a string
const DECODE_ACCEPT = 1 << 18; // ending here is valid: the bits since the last symbol are <= 7 ones

const DECODE_TABLE: Int32Array = buildDecodeTable();

function buildDecodeTable(): Int32Array {
  // Tree nodes: internal nodes get ids 0..255 (children in childOf), leaves are ~symbol.
  const children: number[][] = [[-1, -1]];
  for (let symbol = 0; symbol <= EOS; symbol++) {
    const length = HUFFMAN_LENGTHS[symbol]!;
    const code = HUFFMAN_CODES[symbol]!;
    let node = 0;
    for (let bitIndex = length - 1; bitIndex > 0; bitIndex--) {
      const bit = Math.floor(code / 2 ** bitIndex) & 1;
      let child = children[node]![bit]!;
      if (child === -1) {
        child = children.length;
        children.push([-1, -1]);
        children[node]![bit] = child;
      }
      node = child;
    }
    children[node]![code & 1] = ~symbol;
  }
  if (children.length !== 256) throw new Error("HPACK Huffman tree must have 256 internal nodes");
  // Depth and "all ones so far" of every internal node, for the padding rule.
  const depth = new Int32Array(256);
  const allOnes = new Uint8Array(256);
  allOnes[0] = 1;
  for (let node = 0; node < 256; node++) {
    for (let bit = 0; bit < 2; bit++) {
      const child = children[node]![bit]!;
      if (child >= 0) {
        depth[child] = depth[node]! + 1;
        allOnes[child] = allOnes[node]! & bit;
      }
    }
  }
  const table = new Int32Array(256 * 16);
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let bitIndex = 3; bitIndex >= 0; bitIndex--) {
        const child = children[node]![(nibble >> bitIndex) & 1]!;
        if (child >= 0) {
          node = child;
          continue;
        }
        const symbol = ~child;
        if (symbol === EOS) entry |= DECODE_FAIL;
        else entry |= DECODE_EMIT | (symbol << DECODE_SYMBOL_SHIFT);
        node = 0;
      }
      if (node === 0 || (allOnes[node] === 1 && depth[node]! <= 7)) entry |= DECODE_ACCEPT;
      table[state * 16 + nibble] = entry | node;
    }
  }
  return table;
}

/** Scratch space for decoded Huffman strings; grows, never shrinks. */
let huffmanScratch = Buffer.allocUnsafe(256);

/** Decodes Huffman bytes [start, end) into huffmanScratch; returns the decoded length. */
function huffmanDecodeToScratch(buf: Uint8Array, start: number, end: number): number {
  // Each symbol takes at least 5 bits, so 8 input bytes give at most 12.8 symbols.
  const maxLength = Math.ceil(((end - start) * 8) / 5);
  if (huffmanScratch.length < maxLength) huffmanScratch = Buffer.allocUnsafe(maxLength * 2);
  const out = huffmanScratch;
  const table = DECODE_TABLE;
  let length = 0;
  let state = 0;
  let entry = DECODE_ACCEPT;
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    entry = table[(state << 4) | (byte >> 4)]!;
    if ((entry & DECODE_FAIL) !== 0) throw new HpackError("Huffman string contains the EOS symbol");
    if ((entry & DECODE_EMIT) !== 0) out[length++] = entry >> DECODE_SYMBOL_SHIFT;
    state = entry & DECODE_NEXT_MASK;
    entry = table[(state << 4) | (byte & 0xf)]!;
    if ((entry & DECODE_FAIL) !== 0) throw new HpackError("Huffman string contains the EOS symbol");
    if ((entry & DECODE_EMIT) !== 0) out[length++] = entry >> DECODE_SYMBOL_SHIFT;
    state = entry & DECODE_NEXT_MASK;
  }
  if ((entry & DECODE_ACCEPT) === 0) {
    throw new HpackError("Huffman padding is longer than 7 bits or not all ones");
  }
  return length;
}

/** Decodes Huffman-coded bytes [start, end) of buf to a latin1 string. */
export function huffmanDecode(buf: Uint8Array, start: number, end: number): string {
  if (start < 0 || end > buf.length || start > end) {
    throw new RangeError(`range [${start}, ${end}) is outside a buffer of ${buf.length} bytes`);
  }
  const length = huffmanDecodeToScratch(buf, start, end);
  return huffmanScratch.toString("latin1", 0, length);
}

/** The number of bytes huffmanEncode(s) produces. */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[latin1CodeAt(s, i)]!;
  return Math.ceil(bits / 8);
}

function latin1CodeAt(s: string, i: number): number {
  const code = s.charCodeAt(i);
  if (code > 0xff) throw new RangeError(`HPACK strings are latin1; char ${i} is U+${code.toString(16)}`);
  return code;
}

/** Writes the Huffman code of s at out[offset...]; returns the offset after it. */
function huffmanEncodeInto(s: string, out: Uint8Array, offset: number): number {
  // Pending bits stay below 8 before a code (at most 30 bits) is appended: < 2^38, exact in a double.
  let pending = 0;
  let pendingBits = 0;
  for (let i = 0; i < s.length; i++) {
    const symbol = latin1CodeAt(s, i);
    const length = HUFFMAN_LENGTHS[symbol]!;
    pending = pending * 2 ** length + HUFFMAN_CODES[symbol]!;
    pendingBits += length;
    while (pendingBits >= 8) {
      pendingBits -= 8;
      const scale = 2 ** pendingBits;
      const byte = Math.floor(pending / scale);
      out[offset++] = byte;
      pending -= byte * scale;
    }
  }
  // Pad with the most significant bits of EOS, which are all ones.
  if (pendingBits > 0) out[offset++] = (pending << (8 - pendingBits)) | (0xff >> pendingBits);
  return offset;
}

/** Huffman-encodes a latin1 string. */
export function huffmanEncode(s: string): Buffer {
  const out = Buffer.allocUnsafe(huffmanEncodedLength(s));
  const written = huffmanEncodeInto(s, out, 0);
  if (written !== out.length) throw new Error("huffmanEncode wrote an unexpected length");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoder

/** Integers above this are an error (RFC 7541 §5.1 leaves the limit to the implementation). */
const INTEGER_MAX = 0x7fffffff;
const ENTRY_OVERHEAD_BYTES = 32;

export interface HpackDecoderOptions {
  /** Our SETTINGS_HEADER_TABLE_SIZE; the peer's size updates may not exceed it. Default 4096. */
  maxTableSize?: number;
  /** Largest header list, counted as RFC 7540 §6.5.2 (name + value + 32 per field). Default 65536. */
  maxHeaderListSize?: number;
}

export class HpackDecoder {
  readonly #maxTableSizeLimit: number;
  readonly #maxHeaderListSize: number;
  /** The table size the peer's encoder has chosen (last size update), at most the limit. */
  #maxTableSize: number;
  #tableSize = 0;
  // Dynamic table as a ring buffer: the newest entry (index 62) is at #head - 1.
  #names: string[] = new Array<string>(16);
  #values: string[] = new Array<string>(16);
  #head = 0;
  #count = 0;
  /** Read position while decoding a block. */
  #pos = 0;

  constructor(options: HpackDecoderOptions = {}) {
    const maxTableSize = options.maxTableSize ?? 4096;
    const maxHeaderListSize = options.maxHeaderListSize ?? 65536;
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > INTEGER_MAX) {
      throw new RangeError(`maxTableSize must be an integer in [0, 2^31), got ${maxTableSize}`);
    }
    if (!Number.isInteger(maxHeaderListSize) || maxHeaderListSize < 0) {
      throw new RangeError(`maxHeaderListSize must be a non-negative integer, got ${maxHeaderListSize}`);
    }
    this.#maxTableSizeLimit = maxTableSize;
    this.#maxTableSize = maxTableSize;
    this.#maxHeaderListSize = maxHeaderListSize;
  }

  /** Current dynamic table size in bytes (entries counted as name + value + 32). For tests. */
  get dynamicTableSize(): number {
    return this.#tableSize;
  }

  /** Number of dynamic table entries. For tests. */
  get dynamicTableLength(): number {
    return this.#count;
  }

  /**
   * Decodes one complete header block, bytes [start, end) of buf: [name0, value0, name1, ...].
   * After an HpackError the table may hold part of the block's insertions: the error is a
   * connection error (COMPRESSION_ERROR), and the decoder must not be used again. The exception is
   * HeaderListTooLargeError: the whole block was decoded (fields past the limit are not kept), the
   * table is in step, and the decoder goes on.
   */
  decode(buf: Uint8Array, start: number, end: number): string[] {
    if (start < 0 || end > buf.length || start > end) {
      throw new RangeError(`decode range [${start}, ${end}) is outside a buffer of ${buf.length} bytes`);
    }
    let fields: string[] = [];
    let listSize = 0;
    let sizeUpdateAllowed = true;
    this.#pos = start;
    while (this.#pos < end) {
      const first = buf[this.#pos]!;
      if (first >= 0x80) {
        // Indexed field (§6.1).
        const index = this.#integer(buf, end, 7);
        if (index === 0) throw new HpackError("indexed field with index 0");
        const name = this.#nameAt(index);
        const value = this.#valueAt(index);
        fields.push(name, value);
        listSize += name.length + value.length + ENTRY_OVERHEAD_BYTES;
      } else if (first >= 0x40) {
        // Literal with incremental indexing (§6.2.1).
        const nameIndex = this.#integer(buf, end, 6);
        const name = nameIndex === 0 ? this.#string(buf, end) : this.#nameAt(nameIndex);
        const value = this.#string(buf, end);
        this.#insert(name, value);
        fields.push(name, value);
        listSize += name.length + value.length + ENTRY_OVERHEAD_BYTES;
      } else if (first >= 0x20) {
        // Dynamic table size update (§6.3): only before the first field of a block.
        if (!sizeUpdateAllowed) throw new HpackError("dynamic table size update after a header field");
        const size = this.#integer(buf, end, 5);
        if (size > this.#maxTableSizeLimit) {
          throw new HpackError(`dynamic table size update to ${size} exceeds ${this.#maxTableSizeLimit}`);
        }
        this.#maxTableSize = size;
        this.#evictTo(size);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
        const nameIndex = this.#integer(buf, end, 4);
        const name = nameIndex === 0 ? this.#string(buf, end) : this.#nameAt(nameIndex);
        const value = this.#string(buf, end);
        fields.push(name, value);
        listSize += name.length + value.length + ENTRY_OVERHEAD_BYTES;
      }
      sizeUpdateAllowed = false;
      // Past the limit the rest of the block is still decoded (insertions keep the table in step),
      // but no field is kept: the block is refused whole.
      if (listSize > this.#maxHeaderListSize && fields.length > 0) fields = [];
    }
    if (listSize > this.#maxHeaderListSize)
      throw new HeaderListTooLargeError(`header list exceeds ${this.#maxHeaderListSize} bytes`);
    return fields;
  }

  /** Reads an integer with an N-bit prefix at #pos (§5.1). */
  #integer(buf: Uint8Array, end: number, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let value = buf[this.#pos++]! & mask;
    if (value < mask) return value;
    let shift = 0;
    for (;;) {
      if (this.#pos >= end) throw new HpackError("truncated integer");
      const byte = buf[this.#pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (value > INTEGER_MAX) throw new HpackError("integer exceeds 2^31 - 1");
      if (byte < 0x80) return value;
      shift += 7;
      // Continuation bytes of zeros would otherwise run on without growing the value.
      if (shift > 28) throw new HpackError("integer exceeds 2^31 - 1");
    }
  }

  /** Reads a string literal at #pos (§5.2). */
  #string(buf: Uint8Array, end: number): string {
    if (this.#pos >= end) throw new HpackError("truncated string: missing length");
    const huffman = (buf[this.#pos]! & 0x80) !== 0;
    const length = this.#integer(buf, end, 7);
    const stringStart = this.#pos;
    if (length > end - stringStart) throw new HpackError(`truncated string: ${length} bytes announced`);
    this.#pos = stringStart + length;
    if (huffman) {
      const decodedLength = huffmanDecodeToScratch(buf, stringStart, stringStart + length);
      return huffmanScratch.toString("latin1", 0, decodedLength);
    }
    return latin1(buf, stringStart, stringStart + length);
  }

  #checkIndex(index: number): number {
    if (index > STATIC_COUNT + this.#count) {
      throw new HpackError(`index ${index} is past the tables (${STATIC_COUNT}+${this.#count} entries)`);
    }
    if (index <= STATIC_COUNT) return -1;
    // Dynamic index 62 is the newest entry, at #head - 1.
    return (this.#head - (index - STATIC_COUNT) + this.#names.length) & (this.#names.length - 1);
  }

  #nameAt(index: number): string {
    const slot = this.#checkIndex(index);
    return slot < 0 ? STATIC_NAMES[index - 1]! : this.#names[slot]!;
  }

  #valueAt(index: number): string {
    const slot = this.#checkIndex(index);
    return slot < 0 ? STATIC_VALUES[index - 1]! : this.#values[slot]!;
  }

  #insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD_BYTES;
    // An entry larger than the table empties it and is not added (§4.4).
    if (entrySize > this.#maxTableSize) {
      this.#evictTo(0);
      return;
    }
    this.#evictTo(this.#maxTableSize - entrySize);
    if (this.#count === this.#names.length) this.#grow();
    const capacityMask = this.#names.length - 1;
    this.#names[this.#head] = name;
    this.#values[this.#head] = value;
    this.#head = (this.#head + 1) & capacityMask;
    this.#count++;
    this.#tableSize += entrySize;
  }

  /** Evicts oldest entries until the table size is at most sizeMax. */
  #evictTo(sizeMax: number): void {
    const capacity = this.#names.length;
    while (this.#tableSize > sizeMax) {
      const oldest = (this.#head - this.#count + capacity) & (capacity - 1);
      this.#tableSize -= this.#names[oldest]!.length + this.#values[oldest]!.length + ENTRY_OVERHEAD_BYTES;
      this.#names[oldest] = "";
      this.#values[oldest] = "";
      this.#count--;
    }
  }

  #grow(): void {
    const capacity = this.#names.length;
    const names = new Array<string>(capacity * 2);
    const values = new Array<string>(capacity * 2);
    for (let i = 0; i < this.#count; i++) {
      const slot = (this.#head - this.#count + i + capacity) & (capacity - 1);
      names[i] = this.#names[slot]!;
      values[i] = this.#values[slot]!;
    }
    this.#names = names;
    this.#values = values;
    this.#head = this.#count;
  }
}

function latin1(buf: Uint8Array, start: number, end: number): string {
  if (buf instanceof Buffer) return buf.toString("latin1", start, end);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString("latin1", start, end);
}

// ---------------------------------------------------------------------------------------------
// Encoder

let encodeScratch = Buffer.allocUnsafe(1024);

/** Writes an integer with an N-bit prefix; the first byte keeps the flag bits in `flags`. */
function writeInteger(out: Buffer, offset: number, flags: number, prefixBits: number, value: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out[offset++] = flags | value;
    return offset;
  }
  out[offset++] = flags | mask;
  value -= mask;
  while (value >= 0x80) {
    out[offset++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[offset++] = value;
  return offset;
}

function writeString(out: Buffer, offset: number, s: string): number {
  const huffmanLength = huffmanEncodedLength(s);
  if (huffmanLength < s.length) {
    offset = writeInteger(out, offset, 0x80, 7, huffmanLength);
    return huffmanEncodeInto(s, out, offset);
  }
  offset = writeInteger(out, offset, 0, 7, s.length);
  return offset + out.write(s, offset, s.length, "latin1");
}

/**
 * Encodes fields without touching any dynamic table: a full static match is an indexed field,
 * anything else a literal without indexing (with the static name index when there is one).
 */
export function encodeHeaders(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  // Bound: 1 representation byte + 5 per integer (3 of them) + raw strings (Huffman is only used shorter).
  let bound = 0;
  for (const [name, value] of fields) bound += 16 + name.length + value.length;
  if (encodeScratch.length < bound) encodeScratch = Buffer.allocUnsafe(bound * 2);
  const out = encodeScratch;
  let offset = 0;
  for (const [name, value] of fields) {
    const known = STATIC_BY_NAME.get(name);
    const fullIndex = known?.valueIndexes.get(value);
    if (fullIndex !== undefined) {
      offset = writeInteger(out, offset, 0x80, 7, fullIndex);
      continue;
    }
    if (known !== undefined) {
      offset = writeInteger(out, offset, 0x00, 4, known.nameIndex);
    } else {
      out[offset++] = 0x00;
      offset = writeString(out, offset, name);
    }
    offset = writeString(out, offset, value);
  }
  return Buffer.from(out.subarray(0, offset));
}
