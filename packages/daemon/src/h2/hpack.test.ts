// HPACK against RFC 7541's own examples (Appendix C), round trips, and malformed input.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeHeaders, HpackDecoder, HpackError, huffmanDecode, huffmanEncode } from "./hpack.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const pairs = (flat: string[]) => flat.flatMap((_, i) => (i % 2 === 0 ? [[flat[i], flat[i + 1]]] : []));
const decodeAll = (d: HpackDecoder, block: Buffer) => pairs(d.decode(block, 0, block.length));

describe("Huffman code", () => {
  it("encodes and decodes RFC 7541's examples (C.4, C.6)", () => {
    const examples: [string, string][] = [
      ["www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"],
      ["no-cache", "a8eb10649cbf"],
      ["custom-key", "25a849e95ba97d7f"],
      ["custom-value", "25a849e95bb8e8b4bf"],
      ["302", "6402"],
      ["private", "aec3771a4b"],
      ["Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"],
      ["https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"],
    ];
    for (const [text, code] of examples) {
      expect(huffmanEncode(text).toString("hex")).toBe(code);
      const bytes = hex(code);
      expect(huffmanDecode(bytes, 0, bytes.length)).toBe(text);
    }
  });

  it("round-trips random byte strings", () => {
    for (let i = 0; i < 2000; i++) {
      const text = randomBytes(i % 64).toString("latin1");
      const code = huffmanEncode(text);
      expect(huffmanDecode(code, 0, code.length)).toBe(text);
    }
  });

  it("refuses bad padding and the EOS symbol", () => {
    // "0" is 00000 (5 bits); padded with zeros instead of ones.
    expect(() => huffmanDecode(Buffer.from([0x00]), 0, 1)).toThrow(HpackError);
    // A whole byte of padding after a complete symbol.
    expect(() => huffmanDecode(Buffer.from([0x07, 0xff]), 0, 2)).toThrow(HpackError);
    // EOS: thirty 1 bits.
    expect(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4)).toThrow(HpackError);
  });
});

describe("HpackDecoder", () => {
  it("decodes RFC 7541 C.3 (requests, no Huffman) with one dynamic table", () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex("828684410f7777772e6578616d706c652e636f6d"))).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
    expect(decodeAll(d, hex("828684be58086e6f2d6361636865"))).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
      ["cache-control", "no-cache"],
    ]);
    expect(decodeAll(d, hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"))).toEqual([
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
  });

  it("decodes RFC 7541 C.4 (requests, Huffman)", () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"))[3]).toEqual([
      ":authority",
      "www.example.com",
    ]);
    expect(decodeAll(d, hex("828684be5886a8eb10649cbf"))[4]).toEqual(["cache-control", "no-cache"]);
    expect(decodeAll(d, hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"))).toEqual([
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
  });

  it("evicts as RFC 7541 C.5 does with a 256-byte table", () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    // The table size update at the start of the first block sets the limit the example assumes.
    const first = Buffer.concat([
      hex("3fe101"), // dynamic table size update to 256
      hex(
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
      ),
    ]);
    expect(decodeAll(d, first)).toEqual([
      [":status", "302"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
      ["location", "https://www.example.com"],
    ]);
    // :status 307 is added and evicts :status 302; the others move down one index.
    expect(decodeAll(d, hex("4803333037c1c0bf"))).toEqual([
      [":status", "307"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
      ["location", "https://www.example.com"],
    ]);
    expect(
      decodeAll(
        d,
        hex(
          "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31",
        ),
      ),
    ).toEqual([
      [":status", "200"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
      ["location", "https://www.example.com"],
      ["content-encoding", "gzip"],
      ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
    ]);
  });

  it("refuses malformed blocks with HpackError", () => {
    const bad: [string, Buffer][] = [
      ["index 0", hex("80")],
      ["index past the tables", hex("be")],
      ["truncated integer", hex("ff")],
      ["integer overflow", hex("ffffffffffff0f")],
      ["truncated string", hex("400a6375")],
      ["size update above the limit", hex("3fe121")],
      ["size update after a field", hex("823f01")],
    ];
    for (const [what, block] of bad)
      expect(() => new HpackDecoder().decode(block, 0, block.length), what).toThrow(HpackError);
    const small = new HpackDecoder({ maxHeaderListSize: 100 });
    const big = encodeHeaders([["x-big", "v".repeat(100)]]);
    expect(() => small.decode(big, 0, big.length)).toThrow(/header list larger/);
  });

  it("answers any random input with fields or HpackError, never another failure", () => {
    for (let i = 0; i < 10_000; i++) {
      const block = randomBytes(1 + (i % 40));
      try {
        new HpackDecoder().decode(block, 0, block.length);
      } catch (err) {
        expect(err).toBeInstanceOf(HpackError);
      }
    }
  });
});

describe("encodeHeaders", () => {
  it("encodes fields a decoder reads back, without adding to its table", () => {
    const fields: [string, string][] = [
      [":status", "200"],
      ["content-type", "application/grpc+proto"],
      ["grpc-status", "0"],
      ["grpc-message", "naïve 100%"],
      ["x-custom-bin", "AAEC"],
    ];
    const block = encodeHeaders(fields);
    const d = new HpackDecoder();
    expect(decodeAll(d, block)).toEqual(fields);
    // A table entry would make index 62 valid; it must not be.
    expect(() => d.decode(hex("be"), 0, 1)).toThrow(HpackError);
    expect(block[0]).toBe(0x88); // ":status: 200" is static index 8
  });
});
