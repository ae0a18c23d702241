import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { PooledWriter, reusingEncoder } from "./reusing-writer.js";

/** A writer in the shape of protobuf-es's BinaryWriter: bytes accumulate until finish(). */
class Writer {
  static created = 0;
  private parts: number[] = [];
  constructor() {
    Writer.created += 1;
  }
  bytes(b: number[]): this {
    this.parts.push(...b);
    return this;
  }
  finish(): Uint8Array {
    const out = Uint8Array.from(this.parts);
    this.parts = [];
    return out;
  }
}

const Message = {
  encode(m: { v: number[]; fail?: boolean }, w = new Writer()): Writer {
    w.bytes(m.v);
    if (m.fail) throw new Error("cannot encode");
    return w;
  },
};

describe("reusingEncoder", () => {
  it("encodes each message alone with one writer, and drops what a failed encode left behind", () => {
    Writer.created = 0;
    const encode = reusingEncoder(Message, () => new Writer());
    expect([...encode({ v: [1, 2, 3] })]).toEqual([1, 2, 3]);
    const first = encode({ v: [4] });
    expect(() => encode({ v: [9, 9], fail: true })).toThrow("cannot encode");
    expect([...encode({ v: [5, 6] })]).toEqual([5, 6]);
    expect([...first]).toEqual([4]); // earlier results are not overwritten
    expect(Buffer.isBuffer(first)).toBe(true);
    expect(Writer.created).toBe(1);
  });
});

describe("PooledWriter", () => {
  /** A message with a nested, length-delimited part, written as ts-proto's encoders write it. */
  const write = <W extends BinaryWriter>(w: W, value: Uint8Array, n: number): W => {
    w.uint32(10)
      .bytes(value)
      .uint32(18)
      .fork()
      .uint32(8)
      .uint64(BigInt(n))
      .string("k".repeat(n % 7))
      .join();
    return w;
  };

  it("finishes with the same bytes as BinaryWriter, each message in memory of its own", () => {
    const pooled = new PooledWriter();
    const results: Uint8Array[] = [];
    for (const size of [0, 1, 256, 5000, 70_000, 3]) {
      const value = Buffer.alloc(size, size % 251);
      const bytes = write(pooled, value, size).finish();
      expect(Buffer.from(bytes).equals(Buffer.from(write(new BinaryWriter(), value, size).finish()))).toBe(
        true,
      );
      expect(Buffer.isBuffer(bytes)).toBe(true);
      results.push(bytes);
    }
    // Later messages never overwrite earlier ones, although small ones share Node's pool.
    for (const [i, size] of [0, 1, 256, 5000, 70_000, 3].entries()) {
      const value = Buffer.alloc(size, size % 251);
      expect(
        Buffer.from(results[i]!).equals(Buffer.from(write(new BinaryWriter(), value, size).finish())),
      ).toBe(true);
    }
    expect(results[2]!.buffer.byteLength).toBe(Buffer.poolSize);
  });

  it("is what reusingEncoder uses unless told otherwise, and starts clean after a failed encode", () => {
    const Nested = {
      encode(m: { v: number; fail?: boolean }, w = new BinaryWriter()): BinaryWriter {
        w.uint32(10).fork().uint32(8).uint32(m.v);
        if (m.fail) throw new Error("cannot encode");
        return w.join();
      },
    };
    const encode = reusingEncoder(Nested);
    expect([...encode({ v: 5 })]).toEqual([10, 2, 8, 5]);
    expect(() => encode({ v: 9, fail: true })).toThrow("cannot encode");
    expect([...encode({ v: 6 })]).toEqual([10, 2, 8, 6]);
  });
});
