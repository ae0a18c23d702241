// A closed-loop load: `inFlight` callers, each issuing its next operation when the previous one
// answers, until `count` operations are done. Throughput and latency percentiles.

export interface LoadResult {
  ops: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** The p-th percentile (0-100) of ascending `sorted` (nearest rank); 0 for no samples. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Runs `op(i)` for i in [0, count) with `inFlight` concurrent callers. A failing operation fails the
 * run (after the callers in flight have settled): a benchmark that hides errors measures nothing.
 */
export async function closedLoop(
  count: number,
  inFlight: number,
  op: (i: number) => Promise<unknown>,
): Promise<LoadResult> {
  if (!(Number.isInteger(count) && count > 0))
    throw new Error(`count must be a positive integer, got ${count}`);
  if (!(Number.isInteger(inFlight) && inFlight > 0))
    throw new Error(`inFlight must be a positive integer, got ${inFlight}`);
  const latencies = new Float64Array(count);
  let next = 0;
  let failure: unknown;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (next < count && failure === undefined) {
        const i = next++;
        const t0 = process.hrtime.bigint();
        try {
          await op(i);
        } catch (err) {
          failure ??= err;
          return;
        }
        latencies[i] = Number(process.hrtime.bigint() - t0) / 1e6;
      }
    }),
  );
  if (failure !== undefined) throw failure;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const sorted = Array.from(latencies).sort((a, b) => a - b);
  return {
    ops: count,
    seconds,
    perSecond: count / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
}
