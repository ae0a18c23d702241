// Command line of the simulator: `sim --seeds 1-2000` runs a seed range and prints one line per
// failing seed and a summary; `sim --seeds 42` replays one seed and prints its trace.
import { parseArgs } from "node:util";
import { runSeed, Simulator } from "./simulator.js";

const DEFAULT_STEPS = 15000;

function parseSeeds(spec: string): { first: bigint; last: bigint } {
  const match = /^(\d+)(?:-(\d+))?$/.exec(spec.trim());
  if (match === null) throw new Error(`--seeds must be N or N-M (got "${spec}")`);
  const first = BigInt(match[1] as string);
  const last = match[2] === undefined ? first : BigInt(match[2]);
  if (last < first) throw new Error(`--seeds range ${spec} is empty: the end is before the start`);
  return { first, last };
}

function main(): void {
  // node:util parseArgs keeps this dev tool free of extra dependencies.
  const { values: opts } = parseArgs({
    options: {
      seeds: { type: "string", default: "1-100" },
      steps: { type: "string", default: String(DEFAULT_STEPS) },
      trace: { type: "boolean", default: false },
    },
  });
  const { first, last } = parseSeeds(opts.seeds);
  const steps = Number.parseInt(opts.steps, 10);
  if (!Number.isInteger(steps) || steps < 0)
    throw new Error(`--steps must be a non-negative integer (got "${opts.steps}")`);
  const traced = first === last || opts.trace === true;
  let violations = 0;
  let count = 0;
  for (let seed = first; seed <= last; seed++) {
    count++;
    const result = traced
      ? new Simulator({ seed, steps, trace: (line) => console.log(line) }).run()
      : runSeed(seed, steps);
    if (result.violation !== null) {
      violations++;
      console.log(`seed ${seed}: ${result.violation}`);
    }
  }
  console.log(`seeds: ${count}, violations: ${violations}`);
  process.exitCode = violations > 0 ? 1 : 0;
}

main();
