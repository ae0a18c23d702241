// Load from h2load (nghttp2's HTTP/2 load generator, written in C: Debian's `nghttp2-client`) for
// unary gRPC calls with one fixed request. On a two-core machine a Node.js load generator spends
// about as much CPU per call as the daemon it measures (HTTP/2 client streams are not cheap in
// Node.js); h2load spends a small fraction of that, so the daemon's own capacity shows.
//
// h2load knows HTTP/2, not gRPC: it counts a call as succeeded on HTTP status 200 and never reads
// the grpc-status trailer. Callers must check the calls' outcome on the server side, e.g. with
// `grpcHandledCounts` on the daemon's /metrics before and after.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { percentile } from "./closed-loop.js";
import { ticksPerSecond as clockTicksPerSecond } from "./cpu-time.js";

/** True when `h2load` is on PATH. */
export function h2loadAvailable(): boolean {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export interface H2LoadOptions {
  /** `http://host:port` of the gRPC server (plain text). */
  readonly target: string;
  /** The method's path, `/pkg.Service/Method`. */
  readonly path: string;
  /** The serialized request message (sent, length-prefixed, as every call's body). */
  readonly request: Uint8Array;
  /** Metadata for every call; names lower-case. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Calls in flight: streams open at once on each connection, times `connections`. */
  readonly inFlight: number;
  /** HTTP/2 connections the calls are spread over (default 1). `inFlight` must be a multiple. */
  readonly connections?: number;
  /** How long to keep the load on. */
  readonly durationMs: number;
}

export interface H2LoadResult {
  /** Calls answered with HTTP status 200 (see the note above on gRPC status). */
  readonly succeeded: number;
  /** Calls that failed at the HTTP level (status, reset, connection error or timeout). */
  readonly failed: number;
  /** Seconds h2load measured over. */
  readonly seconds: number;
  readonly perSecond: number;
  /** Latency of each succeeded call in ms, ascending. */
  readonly latenciesMs: readonly number[];
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU time (user + system) h2load used, in microseconds. */
  readonly cpuMicros: number;
}

/** Runs h2load once against one unary method and reads back what it measured. */
export async function runH2Load(options: H2LoadOptions): Promise<H2LoadResult> {
  const connections = options.connections ?? 1;
  const { inFlight } = options;
  if (!(Number.isInteger(connections) && connections > 0))
    throw new Error(`connections must be a positive integer, got ${connections}`);
  if (!(Number.isInteger(inFlight) && inFlight > 0 && inFlight % connections === 0))
    throw new Error(`inFlight must be a positive multiple of connections (${connections}), got ${inFlight}`);
  if (!(options.durationMs >= 1)) throw new Error(`durationMs must be at least 1, got ${options.durationMs}`);
  const dir = mkdtempSync(join(tmpdir(), "h2load-"));
  try {
    const body = join(dir, "request.bin");
    const log = join(dir, "requests.log");
    const out = join(dir, "h2load.out");
    const frame = Buffer.alloc(5 + options.request.length);
    frame.writeUInt32BE(options.request.length, 1);
    frame.set(options.request, 5);
    writeFileSync(body, frame);
    const args = [
      `--clients=${connections}`,
      `--max-concurrent-streams=${inFlight / connections}`,
      `--duration=${Math.round(options.durationMs)}ms`,
      `--data=${body}`,
      `--log-file=${log}`,
      "--header=content-type: application/grpc",
      "--header=te: trailers",
    ];
    for (const [name, value] of Object.entries(options.metadata ?? {})) {
      if (name.startsWith(":") || name.startsWith("grpc-") || name !== name.toLowerCase())
        throw new Error(`metadata name ${JSON.stringify(name)} must be lower-case and not reserved`);
      args.push(`--header=${name}: ${value}`);
    }
    args.push(`${options.target.replace(/\/+$/, "")}${options.path}`);
    // The shell reports its waited-for children's CPU time (cutime, cstime) once h2load has exited.
    const script = 'h2load "$@" >"$H2LOAD_OUT" 2>&1; rc=$?; cat /proc/$$/stat; exit $rc';
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn("sh", ["-c", script, "sh", ...args], {
        env: { ...process.env, H2LOAD_OUT: out },
        stdio: ["ignore", "pipe", "inherit"],
      });
      let text = "";
      child.stdout.on("data", (d: Buffer) => {
        text += d.toString();
      });
      child.on("error", reject);
      child.on("close", (c) => resolve({ code: c, stdout: text }));
    });
    const report = readFileSync(out, "utf8");
    if (code !== 0) throw new Error(`h2load exited with ${code}:\n${report.slice(-2000)}`);
    return parseRun(report, readFileSync(log, "utf8"), stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** h2load's summary, its per-request log and the shell's /proc stat line, as one result. */
export function parseRun(
  report: string,
  log: string,
  shellStat: string,
  ticksPerSecond = clockTicksPerSecond(),
): H2LoadResult {
  const finished = report.match(/finished in ([\d.]+)(m?s),/);
  const requests = report.match(/requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/);
  if (finished === null || requests === null)
    throw new Error(`unexpected h2load output:\n${report.slice(-2000)}`);
  const seconds = Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  const succeeded = Number(requests[1]);
  const failed = Number(requests[2]);
  const latencies: number[] = [];
  for (const line of log.split("\n")) {
    const [, status, micros] = line.split("\t");
    if (status === "200" && micros !== undefined) latencies.push(Number(micros) / 1000);
  }
  latencies.sort((a, b) => a - b);
  // Fields after the command name: state is field 3; cutime and cstime are fields 16 and 17.
  const fields = shellStat.slice(shellStat.lastIndexOf(")") + 2).split(" ");
  const cutime = Number(fields[16 - 3]);
  const cstime = Number(fields[17 - 3]);
  if (!Number.isFinite(cutime) || !Number.isFinite(cstime))
    throw new Error(`unexpected /proc stat line: ${shellStat.slice(0, 200)}`);
  return {
    succeeded,
    failed,
    seconds,
    perSecond: seconds > 0 ? succeeded / seconds : 0,
    latenciesMs: latencies,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    cpuMicros: ((cutime + cstime) * 1e6) / ticksPerSecond,
  };
}

/**
 * How many calls of one method a daemon has answered, by gRPC status name (`OK`, `UNAVAILABLE`, ...),
 * from the `grpc_server_handled_total` counter on its Prometheus `/metrics` page.
 */
export async function grpcHandledCounts(metricsUrl: string, path: string): Promise<Map<string, number>> {
  const [service, method] = path.split("/").filter(Boolean);
  const res = await fetch(metricsUrl);
  if (!res.ok) throw new Error(`GET ${metricsUrl}: HTTP ${res.status}`);
  const counts = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (!line.startsWith("grpc_server_handled_total{")) continue;
    if (!line.includes(`grpc_service="${service}"`) || !line.includes(`grpc_method="${method}"`)) continue;
    const code = line.match(/grpc_code="([A-Z_]+)"/)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (code !== undefined) counts.set(code, (counts.get(code) ?? 0) + value);
  }
  return counts;
}

/** Calls answered OK and calls answered at all. */
export interface HandledTotals {
  readonly ok: number;
  readonly all: number;
}

/**
 * `grpcHandledCounts` summed over several daemons' /metrics pages (one page: one daemon): take it
 * before and after a load run; the differences must be equal (every call OK) and cover what the
 * load generator counted.
 */
export async function grpcHandledTotals(
  metricsUrls: readonly string[],
  path: string,
): Promise<HandledTotals> {
  let ok = 0;
  let all = 0;
  for (const url of metricsUrls) {
    const counts = await grpcHandledCounts(url, path);
    ok += counts.get("OK") ?? 0;
    for (const v of counts.values()) all += v;
  }
  return { ok, all };
}
