// Child process for the kill -9 test: appends batches to a SqliteLogStore in a loop and prints the
// last index after each batch once `sync()` has made it durable (what the node waits for before
// anything that depends on the batch leaves the member).
import { SqliteLogStore } from "../src/storage/sqlite-log-store.js";

// Small segments, dropped with every write once compacted: a kill lands in sealing and dropping too.
const store = new SqliteLogStore({
  path: process.argv[2] as string,
  bootstrapVoters: [1n, 2n, 3n],
  segments: { segmentBytes: 16_000, dropIntervalMs: 0 },
});
let term = store.hardState().term + 1n;
for (;;) {
  const last = store.lastIndex();
  // Every third batch overwrites a suffix (conflict truncation) with a higher term.
  const from = last > 5n && last % 3n === 0n ? last - 2n : last + 1n;
  if (from <= last) term += 1n;
  const entries = Array.from({ length: 20 }, (_, i) => ({
    index: from + BigInt(i),
    term,
    type: 0 as const,
    data: Buffer.alloc(200, i),
  }));
  const tail = from + 19n;
  store.persist({ hardState: { term, vote: 1n, commit: tail - 5n }, entries, snapshot: null });
  if (tail % 500n < 20n)
    store.createSnapshot(tail - 10n, { voters: [1n, 2n, 3n], learners: [] }, Buffer.from("img"), 50n);
  await store.sync();
  process.stdout.write(`${tail}\n`);
}
