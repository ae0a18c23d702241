// The proof-lane framework. A lane runs named steps in order inside its own run directory
// `work/<lane>/<UTC timestamp>/`; each step leaves `<step>.json` (what it observed, or why it
// failed), and the lane ends with `result.json`, a summary table, and every process it started
// stopped — whether it passed, failed or was interrupted.
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { NetnsNetwork } from "./netns.js";
import { utcStamp, workRoot } from "./paths.js";
import { formatTable, toJson } from "./table.js";

export interface LaneOptions {
  /** rollout-soak: how long to soak, in ms. */
  readonly durationMs?: number;
  /** Overrides work/ (tests). */
  readonly workDir?: string;
  /** Print progress lines (the CLI does; tests do not). */
  readonly verbose?: boolean;
  /** Each member in its own network namespace (root and iproute2 required); see netns.ts. */
  readonly netns?: boolean;
}

export interface StepRecord {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  /** Path of the step's artifact, relative to the run directory. */
  readonly artifact: string;
  readonly error?: string;
}

export interface LaneResult {
  readonly lane: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly ok: boolean;
  readonly runDir: string;
  readonly steps: StepRecord[];
  readonly error?: string;
}

export class StepFailedError extends Error {
  readonly code = "STEP_FAILED";
  constructor(
    readonly step: string,
    override readonly cause: unknown,
  ) {
    super(`step ${step} failed: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

export class LaneContext {
  readonly steps: StepRecord[] = [];
  /** With --netns: the run's bridge and namespaces, described in `network.json`. */
  network: NetnsNetwork | undefined;
  private readonly cleanups: { name: string; fn: () => Promise<void> | void }[] = [];

  constructor(
    readonly lane: string,
    readonly runDir: string,
    readonly options: LaneOptions,
  ) {}

  log(message: string): void {
    if (this.options.verbose) process.stderr.write(`[${this.lane}] ${message}\n`);
  }

  /** Writes an extra JSON file into the run directory and returns its relative path. */
  writeArtifact(fileName: string, data: unknown): string {
    writeFileSync(join(this.runDir, fileName), `${toJson(data)}\n`);
    return fileName;
  }

  /**
   * Runs one step. Its return value becomes `<name>.json`; a throw is recorded there too and ends the
   * lane, since later steps build on earlier ones.
   */
  async step<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
    return (await this.run(name, fn, false)) as T;
  }

  /** A step that later steps do not depend on: a failure is recorded and the lane goes on. */
  async check<T>(name: string, fn: () => Promise<T> | T): Promise<T | undefined> {
    return this.run(name, fn, true);
  }

  private async run<T>(name: string, fn: () => Promise<T> | T, continueOnFailure: boolean) {
    const startedAt = new Date();
    this.log(`step ${name} ...`);
    const artifact = `${name}.json`;
    try {
      const result = await fn();
      const ms = Date.now() - startedAt.getTime();
      this.writeArtifact(artifact, { step: name, ok: true, startedAt: startedAt.toISOString(), ms, result });
      this.steps.push({ name, ok: true, ms, artifact });
      this.log(`step ${name} ok (${ms} ms)`);
      return result;
    } catch (err) {
      const ms = Date.now() - startedAt.getTime();
      const error = err instanceof Error ? err.message : String(err);
      const detail = {
        step: name,
        ok: false,
        startedAt: startedAt.toISOString(),
        ms,
        error,
        ...errorFields(err),
      };
      this.writeArtifact(artifact, detail);
      this.steps.push({ name, ok: false, ms, artifact, error });
      this.log(`step ${name} FAILED: ${error}`);
      if (continueOnFailure) return undefined;
      throw new StepFailedError(name, err);
    }
  }

  /** Registers cleanup to run when the lane ends (last registered runs first). */
  onCleanup(name: string, fn: () => Promise<void> | void): void {
    this.cleanups.push({ name, fn });
  }

  async runCleanups(): Promise<string[]> {
    const problems: string[] = [];
    for (const { name, fn } of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        problems.push(`cleanup ${name}: ${(err as Error).message}`);
      }
    }
    return problems;
  }
}

function errorFields(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return {};
  const extra: Record<string, unknown> = {};
  for (const key of ["code", "details", "expected", "actual"]) {
    const v = (err as unknown as Record<string, unknown>)[key];
    if (v !== undefined) extra[key] = v;
  }
  return extra;
}

export interface LaneDefinition {
  readonly name: string;
  readonly description: string;
  run(ctx: LaneContext): Promise<void>;
}

/** A fresh `work/<lane>/<stamp>/` (suffixed if two runs start within the same second). */
export function makeRunDir(lane: string, workDir: string, now = new Date()): string {
  const base = join(workDir, lane, utcStamp(now));
  let dir = base;
  for (let n = 2; existsSync(dir); n++) dir = `${base}-${n}`;
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Points `work/<lane>/latest` at the newest run, so operators and CI find it without a listing. */
function linkLatest(workDir: string, lane: string, runDir: string): void {
  const link = join(workDir, lane, "latest");
  try {
    rmSync(link, { force: true });
    symlinkSync(relative(join(workDir, lane), runDir), link);
  } catch {
    // A filesystem without symlinks only loses the convenience link.
  }
}

let interrupted: ((signal: string) => void) | undefined;

/** Runs a lane to the end and writes result.json. Never throws for a failing step: see `ok`. */
export async function runLane(def: LaneDefinition, options: LaneOptions = {}): Promise<LaneResult> {
  const workDir = options.workDir ?? workRoot();
  const started = new Date();
  const runDir = makeRunDir(def.name, workDir, started);
  linkLatest(workDir, def.name, runDir);
  const ctx = new LaneContext(def.name, runDir, options);
  ctx.log(`run directory ${runDir}`);
  let error: string | undefined;
  const stopSignal = new Promise<never>((_, reject) => {
    interrupted = (signal) => reject(new Error(`interrupted by ${signal}`));
  });
  try {
    if (options.netns) {
      const network = NetnsNetwork.create();
      ctx.network = network;
      network.onChange = (d) => ctx.writeArtifact("network.json", d);
      ctx.writeArtifact("network.json", network.describe());
      ctx.log(`network namespaces on bridge ${network.bridge} (${network.subnet})`);
      // Registered first, so it runs last: after every cluster of the lane has been stopped.
      ctx.onCleanup(`network ${network.bridge}`, () => {
        network.healAll();
        ctx.writeArtifact("network.json", network.describe());
        const problems = network.destroy();
        if (problems.length > 0) throw new Error(problems.join("; "));
      });
    }
    await Promise.race([def.run(ctx), stopSignal]);
  } catch (err) {
    error = err instanceof StepFailedError ? err.message : `${(err as Error).message ?? err}`;
  } finally {
    interrupted = undefined;
    const problems = await ctx.runCleanups();
    if (problems.length > 0) error = [error, ...problems].filter(Boolean).join("; ");
  }
  const ok = error === undefined && ctx.steps.length > 0 && ctx.steps.every((s) => s.ok);
  const result: LaneResult = {
    lane: def.name,
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    ok,
    runDir,
    steps: ctx.steps,
    ...(error === undefined ? {} : { error }),
  };
  writeFileSync(join(runDir, "result.json"), `${toJson(result)}\n`);
  return result;
}

/** Lets the CLI turn Ctrl-C into an orderly end of the running lane (cleanups still run). */
export function interruptLane(signal: string): boolean {
  if (interrupted === undefined) return false;
  interrupted(signal);
  return true;
}

export function summaryTable(result: LaneResult): string {
  const rows = result.steps.map((s) => [s.ok ? "ok" : "FAIL", s.name, `${s.ms}`, s.artifact]);
  const verdict = result.ok ? "PASSED" : "FAILED";
  const lines = [
    formatTable(["", "step", "ms", "artifact"], rows),
    "",
    `${result.lane}: ${verdict}${result.error ? ` (${result.error})` : ""}`,
    `artifacts: ${result.runDir}`,
  ];
  return lines.join("\n");
}
