import { once } from "node:events";
import http2 from "node:http2";
import net from "node:net";
import { describe, expect, it } from "vitest";
import {
  encodeHeaders,
  HeaderListTooLargeError,
  HUFFMAN_CODES,
  HpackDecoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
  huffmanEncodedLength,
} from "./hpack.js";

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ""), "hex");
}

function decodeAll(decoder: HpackDecoder, block: Buffer): string[] {
  return decoder.decode(block, 0, block.length);
}

/** Deterministic PRNG (mulberry32) so a failing case replays from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomLatin1(next: () => number, length: number): string {
  let s = "";
  for (let i = 0; i < length; i++) s += String.fromCharCode(Math.floor(next() * 256));
  return s;
}

describe("Huffman code", () => {
  it("computes the RFC 7541 Appendix B codes from the lengths alone (the code is canonical)", () => {
    // Proves the canonical construction reproduces codes listed in Appendix B.
    const listed: Array<[number, number]> = [
      [0, 0x1ff8],
      [1, 0x7fffd8],
      [10, 0x3ffffffc],
      [32, 0x14],
      [48, 0x0],
      [88, 0xfc],
      [97, 0x3],
      [127, 0xffffffc],
      [195, 0x7fff1],
      [220, 0xffffffd],
      [255, 0x3ffffee],
      [256, 0x3fffffff],
    ];
    for (const [symbol, code] of listed) expect(HUFFMAN_CODES[symbol], `symbol ${symbol}`).toBe(code);
  });

  it("has the Appendix B codes of the control chars (the Node tests cover the other symbols)", () => {
    // Proves the symbols a header value cannot carry, and so no interop test reaches, are right too.
    const expected = new Map<number, number>([
      [0, 0x1ff8],
      [1, 0x7fffd8],
      [9, 0xffffea],
      [10, 0x3ffffffc],
      [13, 0x3ffffffd],
      [22, 0x3ffffffe],
      [127, 0xffffffc],
      [256, 0x3fffffff],
    ]);
    for (let symbol = 2; symbol <= 8; symbol++) expected.set(symbol, 0xfffffe2 + symbol - 2);
    expected.set(11, 0xfffffe9).set(12, 0xfffffea);
    for (let symbol = 14; symbol <= 21; symbol++) expected.set(symbol, 0xfffffeb + symbol - 14);
    for (let symbol = 23; symbol <= 31; symbol++) expected.set(symbol, 0xffffff3 + symbol - 23);
    expect(expected.size).toBe(34);
    for (const [symbol, code] of expected) expect(HUFFMAN_CODES[symbol], `symbol ${symbol}`).toBe(code);
  });

  it.each([
    ["www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"],
    ["no-cache", "a8eb10649cbf"],
    ["custom-key", "25a849e95ba97d7f"],
    ["custom-value", "25a849e95bb8e8b4bf"],
    ["302", "6402"],
    ["private", "aec3771a4b"],
    ["Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"],
    ["https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"],
  ])("encodes and decodes the RFC 7541 Appendix C string %j", (plain, encoded) => {
    // Proves encoder and decoder agree with the RFC's own Huffman examples.
    expect(huffmanEncode(plain).toString("hex")).toBe(encoded);
    expect(huffmanEncodedLength(plain)).toBe(encoded.length / 2);
    const bytes = hex(encoded);
    expect(huffmanDecode(bytes, 0, bytes.length)).toBe(plain);
  });

  it("round-trips random latin1 strings", () => {
    // Proves every byte value survives encode then decode, at every length and alignment.
    const next = random(7541);
    for (let n = 0; n < 2000; n++) {
      const s = randomLatin1(next, Math.floor(next() * 120));
      const encoded = huffmanEncode(s);
      expect(huffmanDecode(encoded, 0, encoded.length)).toBe(s);
    }
    const all = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join("");
    const encoded = huffmanEncode(all);
    expect(huffmanDecode(encoded, 0, encoded.length)).toBe(all);
  });

  it("decodes a range inside a larger buffer", () => {
    // Proves start and end are honoured.
    const bytes = Buffer.concat([hex("ffff"), hex("a8eb10649cbf"), hex("00")]);
    expect(huffmanDecode(bytes, 2, 8)).toBe("no-cache");
  });

  it.each([
    ["padding of 8 ones", "1fff"], // 'a' + 3 ones, then a full byte of ones
    ["padding not all ones", "18"], // 'a' + 000
    ["EOS symbol", "fffffffc"], // 30 ones is EOS
    ["EOS symbol after a char", "1fffffffff"],
  ])("rejects %s", (_what, bytes) => {
    // Proves malformed Huffman strings throw HpackError.
    const buf = hex(bytes);
    expect(() => huffmanDecode(buf, 0, buf.length)).toThrow(HpackError);
  });

  it("refuses chars outside latin1", () => {
    // Proves the encoder does not silently truncate non-latin1 chars.
    expect(() => huffmanEncode("€")).toThrow(RangeError);
  });
});

describe("HpackDecoder with the RFC 7541 Appendix C examples", () => {
  it("decodes C.2 (literal and indexed representations)", () => {
    // Proves each representation kind on its own, and its effect on the dynamic table.
    const withIndexing = new HpackDecoder();
    expect(
      decodeAll(withIndexing, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")),
    ).toEqual(["custom-key", "custom-header"]);
    expect(withIndexing.dynamicTableSize).toBe(55);
    const without = new HpackDecoder();
    expect(decodeAll(without, hex("040c 2f73 616d 706c 652f 7061 7468"))).toEqual([":path", "/sample/path"]);
    expect(without.dynamicTableSize).toBe(0);
    const never = new HpackDecoder();
    expect(decodeAll(never, hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))).toEqual([
      "password",
      "secret",
    ]);
    expect(never.dynamicTableSize).toBe(0);
    const indexed = new HpackDecoder();
    expect(decodeAll(indexed, hex("82"))).toEqual([":method", "GET"]);
    expect(indexed.dynamicTableSize).toBe(0);
  });

  const requests = [
    {
      fields: [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"],
      size: 57,
      plain: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      huffman: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    },
    {
      fields: [
        ...[":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"],
        ...["cache-control", "no-cache"],
      ],
      size: 110,
      plain: "8286 84be 5808 6e6f 2d63 6163 6865",
      huffman: "8286 84be 5886 a8eb 1064 9cbf",
    },
    {
      fields: [
        ...[":method", "GET", ":scheme", "https", ":path", "/index.html", ":authority", "www.example.com"],
        ...["custom-key", "custom-value"],
      ],
      size: 164,
      plain: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
      huffman: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    },
  ];

  it.each(["plain", "huffman"] as const)("decodes the C.3/C.4 requests (%s) with one decoder", (kind) => {
    // Proves the dynamic table carries over between blocks of a connection.
    const decoder = new HpackDecoder();
    for (const request of requests) {
      expect(decodeAll(decoder, hex(request[kind]))).toEqual(request.fields);
      expect(decoder.dynamicTableSize).toBe(request.size);
    }
  });

  const date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
  const date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
  const location = "https://www.example.com";
  const responses = [
    {
      fields: [":status", "302", "cache-control", "private", "date", date1, "location", location],
      size: 222,
      entries: 4,
      plain:
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32" +
        "3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      huffman:
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad" +
        "1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    },
    {
      fields: [":status", "307", "cache-control", "private", "date", date1, "location", location],
      size: 222,
      entries: 4,
      plain: "4803 3330 37c1 c0bf",
      huffman: "4883 640e ffc1 c0bf",
    },
    {
      fields: [
        ...[":status", "200", "cache-control", "private", "date", date2, "location", location],
        ...[
          "content-encoding",
          "gzip",
          "set-cookie",
          "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ],
      ],
      size: 215,
      entries: 3,
      plain:
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970" +
        "7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61" +
        "6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
      huffman:
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2" +
        "e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    },
  ];

  it.each(["plain", "huffman"] as const)(
    "decodes the C.5/C.6 responses (%s) with a 256-byte table",
    (kind) => {
      // Proves eviction keeps the table in step with an encoder using a 256-byte table.
      const decoder = new HpackDecoder({ maxTableSize: 256 });
      for (const response of responses) {
        expect(decodeAll(decoder, hex(response[kind]))).toEqual(response.fields);
        expect(decoder.dynamicTableSize).toBe(response.size);
        expect(decoder.dynamicTableLength).toBe(response.entries);
      }
    },
  );
});

describe("HpackDecoder table management", () => {
  it("applies size updates at the start of a block", () => {
    // Proves a size update to 0 empties the table and a later raise does not bring entries back.
    const decoder = new HpackDecoder();
    decodeAll(decoder, hex(requests0()));
    expect(decoder.dynamicTableLength).toBe(1);
    expect(decodeAll(decoder, hex("20 3fe11f 82"))).toEqual([":method", "GET"]);
    expect(decoder.dynamicTableSize).toBe(0);
    expect(() => decodeAll(decoder, hex("be"))).toThrow(HpackError);
  });

  it("drops an entry larger than the table and empties the table", () => {
    // Proves RFC 7541 §4.4: an oversized entry is not an error, it clears the table.
    const decoder = new HpackDecoder({ maxTableSize: 64 });
    decodeAll(decoder, hex("41 03 616263")); // :authority: abc, 45 bytes
    expect(decoder.dynamicTableLength).toBe(1);
    const big = "x".repeat(40);
    const block = Buffer.concat([hex("41"), Buffer.from([big.length]), Buffer.from(big, "latin1")]);
    expect(decodeAll(decoder, block)).toEqual([":authority", big]);
    expect(decoder.dynamicTableLength).toBe(0);
    expect(decoder.dynamicTableSize).toBe(0);
  });

  it("grows the table past its initial capacity and keeps index order", () => {
    // Proves the ring buffer keeps newest-first indexing across wrap-around and growth.
    const decoder = new HpackDecoder({ maxTableSize: 65536 });
    for (let i = 0; i < 300; i++) {
      const value = `v${i}`;
      const block = Buffer.concat([hex("40 01 6e"), Buffer.from([value.length]), Buffer.from(value)]);
      decodeAll(decoder, block);
    }
    expect(decoder.dynamicTableLength).toBe(300);
    expect(decodeAll(decoder, hex("be bf"))).toEqual(["n", "v299", "n", "v298"]);
    // Index 361 (61 static + 300 dynamic) is the oldest: 0xff then 361 - 127 = 234 as 0xea 0x01.
    expect(decodeAll(decoder, Buffer.from([0xff, 0xea, 0x01]))).toEqual(["n", "v0"]);
  });
});

function requests0(): string {
  return "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d";
}

describe("HpackDecoder rejects malformed blocks", () => {
  it.each([
    ["index 0", "80", {}],
    ["an index past the static table", "be", {}],
    ["an index past both tables", "ff00", {}],
    ["a name index past the tables", "7e 01 61", {}],
    ["a truncated integer", "ff", {}],
    ["a truncated multi-byte integer", "ff80", {}],
    ["integer overflow", "ffffffffff0f", {}],
    ["integer overflow by zero continuations", "ff8080808080808000", {}],
    ["a missing string length", "00", {}],
    ["a truncated string", "00 05 61", {}],
    ["a missing value", "00 01 61", {}],
    ["a truncated Huffman string", "00 83 a8eb", {}],
    ["Huffman padding of 8 bits", "00 82 1fff 00", {}],
    ["Huffman padding not all ones", "00 81 18 00", {}],
    ["EOS in a Huffman string", "00 84 fffffffc 00", {}],
    ["a size update above the limit", "3fe21f", {}],
    ["a size update after a field", "82 20", {}],
    ["a size update above a small limit", "3f02", { maxTableSize: 32 }],
    ["a header list that is too large", "00 01 61 08 6161616161616161", { maxHeaderListSize: 40 }],
  ])("rejects %s", (_what, bytes, options) => {
    // Proves each malformed case is reported as HpackError (COMPRESSION_ERROR upstream).
    const decoder = new HpackDecoder(options);
    const block = hex(bytes);
    expect(() => decoder.decode(block, 0, block.length)).toThrow(HpackError);
  });

  it("decodes a too-large block to its end, keeping the table in step for the next block", () => {
    // Proves HeaderListTooLargeError is recoverable: the refused block's insertion is in the table.
    const decoder = new HpackDecoder({ maxHeaderListSize: 40 });
    // Literal with incremental indexing, new name "a" = "aaaaaaaa" (41 bytes counted), then the same
    // entry again by its dynamic index (62).
    const tooLarge = hex("40 01 61 08 6161616161616161");
    expect(() => decoder.decode(tooLarge, 0, tooLarge.length)).toThrow(HeaderListTooLargeError);
    expect(decoder.dynamicTableLength).toBe(1);
    // Index 62 is the refused block's entry: found (a table out of step would say "index past both
    // tables"), and still too large.
    const again = hex("be");
    expect(() => decoder.decode(again, 0, again.length)).toThrow(HeaderListTooLargeError);
    const small = hex("84");
    expect(decodeAll(decoder, small)).toEqual([":path", "/"]);
  });

  it("accepts a header list exactly at the limit", () => {
    // Proves the limit counts name + value + 32 and is inclusive.
    const decoder = new HpackDecoder({ maxHeaderListSize: 41 });
    expect(decodeAll(decoder, hex("00 01 61 08 6161616161616161"))).toEqual(["a", "aaaaaaaa"]);
  });

  it("never throws anything but HpackError on random input", () => {
    // Proves the decoder fails cleanly (no TypeError, no hang) on 10k random blocks.
    const next = random(20261204);
    const decoder = new HpackDecoder();
    let decoded = 0;
    for (let n = 0; n < 10_000; n++) {
      const block = Buffer.alloc(1 + Math.floor(next() * 40));
      for (let i = 0; i < block.length; i++) block[i] = Math.floor(next() * 256);
      try {
        decoder.decode(block, 0, block.length);
        decoded++;
      } catch (error) {
        if (!(error instanceof HpackError)) throw error;
      }
    }
    expect(decoded).toBeGreaterThan(0);
  });
});

describe("encodeHeaders", () => {
  it("uses static indexes and literals without indexing", () => {
    // Proves the chosen representations: full static match indexed, static name reused, Huffman when shorter.
    const block = encodeHeaders([
      [":method", "GET"],
      [":path", "/sample/path"],
      ["custom-key", "custom-value"],
    ]);
    const expected = Buffer.concat([
      hex("82"),
      hex("04"),
      Buffer.from([0x80 | huffmanEncodedLength("/sample/path")]),
      huffmanEncode("/sample/path"),
      hex("00 88 25a849e95ba97d7f 89 25a849e95bb8e8b4bf"),
    ]);
    expect(block.toString("hex")).toBe(expected.toString("hex"));
  });

  it("round-trips through a fresh decoder without touching its table", () => {
    // Proves random fields (long ones needing multi-byte lengths too) decode to what was encoded.
    const next = random(42);
    for (let n = 0; n < 200; n++) {
      const fields: Array<[string, string]> = [
        [":method", "POST"],
        ["content-type", "application/grpc"],
        ["user-agent", randomLatin1(next, Math.floor(next() * 300))],
        [randomLatin1(next, 1 + Math.floor(next() * 20)), randomLatin1(next, Math.floor(next() * 200))],
      ];
      const block = encodeHeaders(fields);
      const decoder = new HpackDecoder();
      expect(decodeAll(decoder, block)).toEqual(fields.flat());
      expect(decoder.dynamicTableLength).toBe(0);
    }
  });
});

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADERS = 0x1;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** Header block fragments of the complete HEADERS frames in bytes (after the client preface). */
function headerBlocks(bytes: Buffer): Buffer[] {
  const blocks: Buffer[] = [];
  let offset = 0;
  while (offset + 9 <= bytes.length) {
    const length = bytes.readUIntBE(offset, 3);
    if (offset + 9 + length > bytes.length) break;
    const type = bytes[offset + 3]!;
    const flags = bytes[offset + 4]!;
    let payload = bytes.subarray(offset + 9, offset + 9 + length);
    if (type === FRAME_HEADERS) {
      expect(flags & FLAG_END_HEADERS).toBe(FLAG_END_HEADERS);
      const padding = (flags & FLAG_PADDED) !== 0 ? payload[0]! : 0;
      if ((flags & FLAG_PADDED) !== 0) payload = payload.subarray(1);
      if ((flags & FLAG_PRIORITY) !== 0) payload = payload.subarray(5);
      blocks.push(payload.subarray(0, payload.length - padding));
    }
    offset += 9 + length;
  }
  return blocks;
}

/**
 * One field per byte a header value may hold (not the control chars), the byte between runs of
 * 'a' so that Huffman coding is shorter and both encoders use it.
 */
function symbolFields(): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  for (let code = 0x20; code <= 0xff; code++) {
    if (code === 0x7f) continue;
    fields.push([`x-c${code}`, `aaaaaaaaaa${String.fromCharCode(code)}aaaaaaaaaa`]);
  }
  return fields;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A latin1 value that HTTP/2 accepts: visible chars and obs-text, no control chars, no edge spaces. */
function fieldValue(next: () => number, length: number): string {
  let s = "a";
  while (s.length < length) {
    const code = 0x20 + Math.floor(next() * 0xe0);
    if (code !== 0x7f) s += String.fromCharCode(code);
  }
  return s + "z";
}

describe("interoperability with Node's HTTP/2 (nghttp2)", () => {
  it("Node's server decodes encodeHeaders output, every Huffman code a header value may hold", async () => {
    // Proves another HPACK implementation reads our indexed fields, name-indexed and Huffman literals.
    const next = random(9113);
    const requests: Array<Array<[string, string]>> = [
      [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/etcdserverpb.KV/Put"],
        [":authority", "127.0.0.1:2379"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ["user-agent", "grpc-go/1.x"],
        ["x-latin1", fieldValue(next, 200)],
        ["x-long", "v".repeat(5000)],
      ],
    ];
    const pseudo: Array<[string, string]> = [
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "localhost"],
    ];
    for (const group of chunks(symbolFields(), 50)) requests.push([...pseudo, ...group]);
    const server = http2.createServer();
    const received: string[][] = [];
    const allReceived = new Promise<void>((resolve) => {
      // Node passes the fields in wire order as a fourth argument, which its typings leave out.
      const onStream = (stream: http2.ServerHttp2Stream, ...rest: unknown[]): void => {
        stream.respond({ ":status": 200 }, { endStream: true });
        received[(stream.id! - 1) / 2] = rest[2] as string[];
        if (received.filter(Boolean).length === requests.length) resolve();
      };
      server.on("stream", onStream);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as net.AddressInfo;
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    try {
      await once(socket, "connect");
      const frames = requests.map((fields, i) =>
        frame(FRAME_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, 2 * i + 1, encodeHeaders(fields)),
      );
      socket.write(Buffer.concat([PREFACE, frame(0x4, 0, 0, Buffer.alloc(0)), ...frames]));
      await allReceived;
      for (let i = 0; i < requests.length; i++) expect(received[i]).toEqual(requests[i]!.flat());
    } finally {
      socket.destroy();
      server.close();
    }
  });

  it("decodes the header blocks of Node's client, dynamic table included", async () => {
    // Proves our decoder stays in step with nghttp2's encoder, which indexes and Huffman-codes.
    const next = random(7540);
    const requests: Array<Record<string, string>> = Array.from({ length: 4 }, (_, i) => ({
      ":method": "POST",
      ":path": "/etcdserverpb.KV/Put",
      "content-type": "application/grpc",
      te: "trailers",
      "user-agent": "grpc-node/1.x",
      "x-request": `r${i}`,
      "x-latin1": fieldValue(next, 100),
    }));
    for (const group of chunks(symbolFields(), 50)) {
      requests.push({ ":method": "GET", ":path": "/", ...Object.fromEntries(group) });
    }
    let bytes = Buffer.alloc(0);
    const server = net.createServer();
    const captured = new Promise<Buffer>((resolve) => {
      server.on("connection", (socket) => {
        socket.on("error", () => {});
        socket.on("data", (chunk: Buffer) => {
          bytes = Buffer.concat([bytes, chunk]);
          if (bytes.length > PREFACE.length && headerBlocks(bytes.subarray(24)).length === requests.length) {
            resolve(bytes.subarray(24));
            socket.destroy();
          }
        });
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as net.AddressInfo;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on("error", () => {});
    try {
      for (const headers of requests) client.request(headers).on("error", () => {});
      const blocks = headerBlocks(await captured);
      const decoder = new HpackDecoder();
      for (let i = 0; i < requests.length; i++) {
        const block = blocks[i]!;
        const decoded = decoder.decode(block, 0, block.length);
        const asObject: Record<string, string> = {};
        for (let f = 0; f < decoded.length; f += 2) asObject[decoded[f]!] = decoded[f + 1]!;
        expect(asObject).toEqual({ ...requests[i], ":scheme": "http", ":authority": `127.0.0.1:${port}` });
      }
      // nghttp2 did insert entries, so the later blocks above were decoded through our dynamic table.
      expect(decoder.dynamicTableLength).toBeGreaterThan(0);
    } finally {
      client.destroy();
      server.close();
    }
  });
});
