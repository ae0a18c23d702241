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
