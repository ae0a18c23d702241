// HPACK (RFC 7541): the decoder a server needs for request header blocks, and an encoder that never
// touches the dynamic table (so the responses it encodes cannot disturb any other encoder's state on
// the connection, and need no state of their own).

export class HpackError extends Error {}

/** RFC 7541 Appendix A, index 1 first. */
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

/**
 * Bit lengths of the Huffman code of RFC 7541 Appendix B, symbols 0–256 (256 is EOS). The code is
 * canonical: codes are handed out in order of (length, symbol), so the lengths define it.
 */
// biome-ignore format: a table
const CODE_LENGTHS = [13,23,28,28,28,28,28,28,28,24,30,28,28,30,28,28,28,28,28,28,28,28,30,28,28,28,28,28,28,28,28,28,6,10,10,12,13,6,8,11,10,10,8,11,8,6,6,6,5,5,5,6,6,6,6,6,6,6,7,8,15,6,12,10,13,6,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,8,7,8,13,19,13,14,6,15,5,6,5,6,5,6,6,6,5,7,7,6,6,6,5,6,7,6,5,5,6,7,7,7,7,7,15,11,14,13,28,20,22,20,20,22,22,22,23,22,23,23,23,23,23,24,23,24,24,22,23,24,23,23,23,23,21,22,23,22,23,23,24,22,21,20,22,22,23,23,21,23,22,22,24,21,22,23,23,21,21,22,21,23,22,23,23,20,22,22,22,23,22,22,23,26,26,20,19,22,23,22,25,26,26,26,27,27,26,24,25,19,21,26,27,27,26,27,24,21,21,26,26,28,27,27,27,20,24,20,21,22,21,21,23,22,22,25,25,24,24,26,23,26,27,26,26,27,27,27,27,27,28,27,27,27,27,27,26,30];
const EOS = 256;
const MAX_CODE_BITS = 30;

/** The canonical code: per symbol its code; per length the first code, count and first sorted slot. */
const codes = new Array<number>(CODE_LENGTHS.length);
const firstCode = new Array<number>(MAX_CODE_BITS + 1).fill(0);
const countOf = new Array<number>(MAX_CODE_BITS + 1).fill(0);
const firstSlot = new Array<number>(MAX_CODE_BITS + 1).fill(0);
const sortedSymbols: number[] = [];
{
  const order = CODE_LENGTHS.map((_, s) => s).sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b);
  let code = 0;
  let length = CODE_LENGTHS[order[0]!]!;
  for (const [i, symbol] of order.entries()) {
    const l = CODE_LENGTHS[symbol]!;
    if (i > 0) code = (code + 1) * 2 ** (l - length);
    length = l;
    codes[symbol] = code;
    if (countOf[l] === 0) {
      firstCode[l] = code;
      firstSlot[l] = sortedSymbols.length;
    }
    countOf[l]! += 1;
    sortedSymbols.push(symbol);
  }
}

export function huffmanDecode(buf: Uint8Array, start: number, end: number): string {
  let out = "";
  let code = 0;
  let length = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      length += 1;
      const count = countOf[length]!;
      if (count > 0 && code - firstCode[length]! < count && code >= firstCode[length]!) {
        const symbol = sortedSymbols[firstSlot[length]! + code - firstCode[length]!]!;
        if (symbol === EOS) throw new HpackError("EOS symbol inside a Huffman-coded string");
        out += String.fromCharCode(symbol);
        code = 0;
        length = 0;
      } else if (length >= MAX_CODE_BITS) throw new HpackError("invalid Huffman code");
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (the start of EOS).
  if (length > 7) throw new HpackError("Huffman padding longer than 7 bits");
  if (code !== 2 ** length - 1) throw new HpackError("Huffman padding is not all ones");
  return out;
}

function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += CODE_LENGTHS[s.charCodeAt(i) & 0xff]!;
  return Math.ceil(bits / 8);
}

export function huffmanEncode(s: string): Buffer {
  const out = Buffer.alloc(huffmanLength(s));
  let at = 0;
  let acc = 0; // pending bits, at most 7 + 30
  let pending = 0;
  for (let i = 0; i < s.length; i++) {
    const symbol = s.charCodeAt(i) & 0xff;
    acc = acc * 2 ** CODE_LENGTHS[symbol]! + codes[symbol]!;
    pending += CODE_LENGTHS[symbol]!;
    while (pending >= 8) {
      pending -= 8;
      const byte = Math.floor(acc / 2 ** pending);
      out[at++] = byte;
      acc -= byte * 2 ** pending;
    }
  }
  if (pending > 0) out[at] = (acc << (8 - pending)) | ((1 << (8 - pending)) - 1);
  return out;
}

const ENTRY_OVERHEAD = 32;
const INTEGER_MAX = 2 ** 31;

/** Decodes request header blocks, keeping the dynamic table in step with the client's encoder. */
export class HpackDecoder {
  private readonly maxTableSize: number;
  private readonly maxHeaderListSize: number;
  /** Newest first. */
  private readonly table: [string, string][] = [];
  private tableBytes = 0;
  private tableLimit: number;
  private at = 0;

  constructor(options: { maxTableSize?: number; maxHeaderListSize?: number } = {}) {
    this.maxTableSize = options.maxTableSize ?? 4096;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 65536;
    this.tableLimit = this.maxTableSize;
  }

  /** Returns [name0, value0, name1, value1, ...]. */
  decode(buf: Uint8Array, start: number, end: number): string[] {
    const out: string[] = [];
    let listBytes = 0;
    let fieldSeen = false;
    this.at = start;
    while (this.at < end) {
      const first = buf[this.at]!;
      if (first & 0x80) {
        const [name, value] = this.entry(this.integer(buf, end, 7));
        out.push(name, value);
      } else if ((first & 0xe0) === 0x20) {
        if (fieldSeen) throw new HpackError("dynamic table size update after a header field");
        const size = this.integer(buf, end, 5);
        if (size > this.maxTableSize) throw new HpackError(`table size ${size} above ${this.maxTableSize}`);
        this.tableLimit = size;
        this.evict(0);
        continue;
      } else {
        // 01: with incremental indexing (6-bit prefix); 0000 without and 0001 never indexed (4-bit).
        const indexed = (first & 0xc0) === 0x40;
        const index = this.integer(buf, end, indexed ? 6 : 4);
        const name = index === 0 ? this.string(buf, end) : this.entry(index)[0];
        const value = this.string(buf, end);
        if (indexed) this.insert(name, value);
        out.push(name, value);
      }
      fieldSeen = true;
      listBytes += out[out.length - 2]!.length + out[out.length - 1]!.length + ENTRY_OVERHEAD;
      if (listBytes > this.maxHeaderListSize)
        throw new HpackError(`header list larger than ${this.maxHeaderListSize} bytes`);
    }
    return out;
  }

  private integer(buf: Uint8Array, end: number, prefixBits: number): number {
    if (this.at >= end) throw new HpackError("truncated integer");
    const max = (1 << prefixBits) - 1;
    let value = buf[this.at++]! & max;
    if (value < max) return value;
    for (let shift = 0; ; shift += 7) {
      if (this.at >= end) throw new HpackError("truncated integer");
      const b = buf[this.at++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (value > INTEGER_MAX) throw new HpackError("integer too large");
      if ((b & 0x80) === 0) return value;
    }
  }

  private string(buf: Uint8Array, end: number): string {
    if (this.at >= end) throw new HpackError("truncated string");
    const huffman = (buf[this.at]! & 0x80) !== 0;
    const length = this.integer(buf, end, 7);
    if (this.at + length > end) throw new HpackError("truncated string");
    const from = this.at;
    this.at += length;
    if (huffman) return huffmanDecode(buf, from, from + length);
    return Buffer.from(buf.buffer, buf.byteOffset + from, length).toString("latin1");
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const e = this.table[index - STATIC_TABLE.length - 1];
    if (e === undefined) throw new HpackError(`index ${index} is past the tables`);
    return e;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
    this.evict(size);
    if (size <= this.tableLimit) {
      this.table.unshift([name, value]);
      this.tableBytes += size;
    }
  }

  /** Evicts oldest entries until `room` more bytes fit under the limit (or the table is empty). */
  private evict(room: number): void {
    while (this.table.length > 0 && this.tableBytes + room > this.tableLimit) {
      const [n, v] = this.table.pop()!;
      this.tableBytes -= n.length + v.length + ENTRY_OVERHEAD;
    }
  }
}

const staticFull = new Map<string, number>();
const staticName = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!staticFull.has(`${name}\0${value}`)) staticFull.set(`${name}\0${value}`, i + 1);
  if (!staticName.has(name)) staticName.set(name, i + 1);
});

function pushInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function pushString(out: number[], s: string): void {
  const huffmanBytes = huffmanLength(s);
  if (huffmanBytes < s.length) {
    pushInteger(out, huffmanBytes, 7, 0x80);
    for (const b of huffmanEncode(s)) out.push(b);
    return;
  }
  pushInteger(out, s.length, 7, 0);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
}

/** Encodes fields with static indexes and literals without indexing only. */
export function encodeHeaders(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const full = staticFull.get(`${name}\0${value}`);
    if (full !== undefined) {
      pushInteger(out, full, 7, 0x80);
      continue;
    }
    const nameIndex = staticName.get(name) ?? 0;
    pushInteger(out, nameIndex, 4, 0);
    if (nameIndex === 0) pushString(out, name);
    pushString(out, value);
  }
  return Buffer.from(out);
}
