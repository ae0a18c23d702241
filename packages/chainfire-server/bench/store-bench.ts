// The MVCC state machine alone (no gRPC, no Raft): applyBatch throughput with 128 puts per batch,
// range throughput from the in-memory index, to separate the store's cost from the RPC path's, and
// how long a HashKV over that history takes and how long it holds the event loop at most.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import { MvccStore } from "../src/mvcc/store.js";
import { entriesFor } from "../src/testing/commands.js";

export async function storeBench(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "chainfire-store-bench-"));
  const store = new MvccStore({ path: join(dir, "mvcc.db") });
  const value = Buffer.alloc(256, 7);
  const batches = 200;
  const perBatch = 128;
  let index = 1n;
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    const cmds = Array.from({ length: perBatch }, (_, i) => ({
      put: putRequest({ key: Buffer.from(`k${(b * perBatch + i) % 10000}`), value }),
    }));
    store.applyBatch(entriesFor(cmds, index));
    index += BigInt(perBatch);
  }
  const putSeconds = (performance.now() - t0) / 1000;
  const reads = 200_000;
  const t1 = performance.now();
  for (let i = 0; i < reads; i++) store.range(rangeRequest({ key: Buffer.from(`k${i % 10000}`) }));
  const readSeconds = (performance.now() - t1) / 1000;
  // The longest the event loop went without running a 1-ms timer while HashKV read the history.
  let last = performance.now();
  let longestGapMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
  }, 1);
  const t2 = performance.now();
  await store.hashKV(0n);
  const hashMs = performance.now() - t2;
  clearInterval(ticker);
  store.close();
  rmSync(dir, { recursive: true, force: true });
  return [
    `store applyBatch: ${((batches * perBatch) / putSeconds).toFixed(0)} puts/s (${perBatch} per batch, one SQLite transaction each)`,
    `store range (current revision, in-memory index): ${(reads / readSeconds).toFixed(0)} ranges/s`,
    `store HashKV over ${batches * perBatch} revisions: ${hashMs.toFixed(0)} ms, event loop held at most ${longestGapMs.toFixed(1)} ms`,
  ];
}
