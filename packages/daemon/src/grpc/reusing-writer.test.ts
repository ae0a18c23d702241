import { describe, expect, it } from "vitest";
import { reusingEncoder } from "./reusing-writer.js";

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
