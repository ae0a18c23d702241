// CPU time of processes, for benchmarks that report CPU microseconds per operation: on a shared
// machine wall-clock throughput moves with the neighbours' load, CPU per operation much less.
// This process: process.cpuUsage(). Other processes (daemons under test): utime + stime from
// /proc/<pid>/stat (Linux; all threads of the process, in clock ticks).

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let clockTicksPerSecond: number | undefined;

/** The kernel's clock tick (USER_HZ), from `getconf CLK_TCK`; 100 where getconf is missing. */
export function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    let v = 100;
    try {
      const out = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
      if (Number.isInteger(out) && out > 0) v = out;
    } catch {
      // No getconf: Linux has used 100 on every common architecture.
    }
    clockTicksPerSecond = v;
  }
  return clockTicksPerSecond;
}

/** User + system CPU time this process has used, in microseconds. */
export function selfCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * User + system CPU time process `pid` has used, in microseconds (resolution one clock tick,
 * usually 10 ms: measure over seconds). Throws when the process does not exist or /proc is missing.
 */
export function processCpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the name, fields start at 3 (state); utime is field 14 and stime field 15.
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`unexpected /proc/${pid}/stat format: ${stat.slice(0, 200)}`);
  }
  return ((utime + stime) * 1e6) / ticksPerSecond();
}

/** A set of processes whose CPU time is sampled together; `self` is this process. */
export type CpuTargets = Readonly<Record<string, number | "self">>;

export type CpuSample = Readonly<Record<string, number>>;

/** CPU microseconds used so far by each target. */
export function sampleCpu(targets: CpuTargets): CpuSample {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(targets)) {
    out[name] = pid === "self" ? selfCpuMicros() : processCpuMicros(pid);
  }
  return out;
}

/** CPU microseconds per operation of each target between two samples. */
export function cpuMicrosPerOp(before: CpuSample, after: CpuSample, ops: number): Record<string, number> {
  if (!(ops > 0)) throw new Error(`ops must be positive, got ${ops}`);
  const out: Record<string, number> = {};
  for (const [name, end] of Object.entries(after)) {
    const start = before[name];
    if (start === undefined) continue;
    out[name] = (end - start) / ops;
  }
  return out;
}

/** `n1 412, n2 198, client 75` (µs/op, rounded). */
export function formatCpuPerOp(perOp: Readonly<Record<string, number>>): string {
  return Object.entries(perOp)
    .map(([name, us]) => `${name} ${Math.round(us)}`)
    .join(", ");
}
