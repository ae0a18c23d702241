/**
 * Node.js arguments chainfire is measured and run with (the dev cluster and the benchmark pass them;
 * operators start `node <these> chainfire.js`). V8 starts incremental marking as soon as the room
 * left under its old-generation limit is no larger than the young generation's capacity; a member
 * under load with ~20–30 MB live, whose limit V8 sets at about 1.5–2× that (after an idle period
 * especially), then runs a full mark-compact every 250–500 ms. A 256 MB initial old generation keeps
 * the limit clear of that: in full benchmark runs, chainfire's h2load put@16 p99 fell from 30–32 ms
 * to 20.5–20.6 ms and range-linearizable@16 from 14–18 ms to 6–7 ms (chainfire-server/BENCHMARKS.md,
 * runs 18–21). V8 takes it only at start (not from NODE_OPTIONS, not from a running process).
 */
export const CHAINFIRE_NODE_ARGS: readonly string[] = ["--initial-old-space-size=256"];

/**
 * The environment chainfire is measured and run with, on top of the caller's. glibc's malloc is asked
 * to back its heap with transparent huge pages (`glibc.malloc.hugetlb=1`, glibc 2.35 and later; on a
 * kernel whose THP mode is `madvise`, the default of several distributions, nothing else does it).
 * While a member's memory grows to its working size under a first load (a few hundred MB), every
 * new 4 KiB page is a page fault, 1,500–2,600 a second per member, and on a virtual machine each
 * costs the event loop tens of microseconds. About half of those faults are malloc's (buffers'
 * backing stores, SQLite's caches); on huge pages that part faults once per 2 MiB instead. V8's own
 * heap pages are not affected. In the first seconds of puts at 16 in flight a 3-member cluster did
 * 3,800–4,400 puts/s with p99 17–18 ms instead of 2,500–2,700 with p99 29–33 ms
 * (chainfire-server/BENCHMARKS.md, runs 28 to 31). Where THP is `always` or
 * `never`, or glibc is older, the setting changes nothing. An existing GLIBC_TUNABLES is kept.
 */
export function chainfireEnv(base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const current = base.GLIBC_TUNABLES ?? "";
  if (/(^|:)glibc\.malloc\.hugetlb=/.test(current)) return { GLIBC_TUNABLES: current };
  return { GLIBC_TUNABLES: current === "" ? CHAINFIRE_TUNABLES : `${current}:${CHAINFIRE_TUNABLES}` };
}

/** The glibc tunables of `chainfireEnv` (also set by the nix package's chainfire wrapper). */
export const CHAINFIRE_TUNABLES = "glibc.malloc.hugetlb=1";
