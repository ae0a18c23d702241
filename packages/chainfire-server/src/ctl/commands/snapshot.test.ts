import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MvccStore } from "../../mvcc/store.js";
import type { Connection } from "../connection.js";
import { snapshotSave } from "./snapshot.js";

/** The file system calls that decide durability, in order: each fsync names what it synced. */
const calls = vi.hoisted(() => [] as string[]);
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    fsyncSync: (fd: number) => {
      calls.push(`fsync ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
      fs.fsyncSync(fd);
    },
    renameSync: (from: string, to: string) => {
      calls.push(`rename ${from} -> ${to}`);
      fs.renameSync(from, to);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), "chainfirectl-save-")));
  calls.length = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A connection to one member whose Maintenance.Snapshot streams `bytes` in two messages. */
function memberStreaming(bytes: Buffer): Connection {
  const half = bytes.length >> 1;
  const snapshot = () => {
    const stream = new EventEmitter();
    setImmediate(() => {
      stream.emit("data", { blob: bytes.subarray(0, half), remainingBytes: BigInt(bytes.length - half) });
      stream.emit("data", { blob: bytes.subarray(half), remainingBytes: 0n });
      stream.emit("end");
    });
    return stream;
  };
  const endpoint = { address: "127.0.0.1:2379", tls: false };
  return {
    endpoints: [endpoint],
    primary: async () => endpoint,
    metadata: () => undefined,
    clients: () => ({ maintenance: { snapshot } }),
  } as unknown as Connection;
}

describe("chainfirectl snapshot save", () => {
  it("syncs the file before renaming it into place, and its folder after", async () => {
    // Proves a saved snapshot survives a power loss once "saved" is printed: the content is on
    // disk before the file takes its name, and the name is on disk before the command returns.
    const store = new MvccStore({ path: ":memory:" });
    const image = Buffer.from(store.snapshot());
    store.close();
    const bytes = Buffer.concat([image, createHash("sha256").update(image).digest()]);
    const file = join(dir, "backup.db");
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: () => {}, stderrIsTty: false };
    await snapshotSave(memberStreaming(bytes), io, file);
    expect(calls).toEqual([`fsync ${file}.part`, `rename ${file}.part -> ${file}`, `fsync ${dir}`]);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(out).toEqual([`Snapshot saved at ${file}`]);
  });
});
