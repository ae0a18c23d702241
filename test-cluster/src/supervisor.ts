// One supervised daemon process: started with its flags, its stdout and stderr appended to its own
// log file, stopped with SIGTERM (escalating to SIGKILL after a grace period) or killed outright,
// restarted, and waited on until its health endpoint answers.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { DeadlineError, fatal, pollUntil } from "./poll.js";

export interface ProcessSpec {
  /** Unique within a cluster, e.g. `chainfire/node01`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly logFile: string;
  /** GET answers 200 when the member is healthy. */
  readonly healthUrl: string;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class ProcessExitedError extends Error {
  readonly code = "PROCESS_EXITED";
  constructor(
    readonly member: string,
    readonly exit: ExitInfo,
    readonly logTail: string,
  ) {
    super(
      `${member} exited (code ${exit.code ?? "-"}, signal ${exit.signal ?? "-"}); last log lines:\n${logTail}`,
    );
  }
}

/** Every live child of this process, so an abrupt exit of the harness still kills them. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) child.kill("SIGKILL");
  });
}

export class SupervisedProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<ExitInfo> | undefined;
  private lastExit: ExitInfo | undefined;
  /** Called when the process exits without being asked to (crash, external kill). */
  onUnexpectedExit: ((exit: ExitInfo) => void) | undefined;
  private stopping = false;
  startCount = 0;

  constructor(readonly spec: ProcessSpec) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.lastExit === undefined;
  }

  /** How the last run ended, if it has. */
  get exit(): ExitInfo | undefined {
    return this.lastExit;
  }

  start(options: { detached?: boolean } = {}): void {
    if (this.running) throw new Error(`${this.spec.name} is already running (pid ${this.pid})`);
    installExitHook();
    mkdirSync(dirname(this.spec.logFile), { recursive: true });
    const fd = openSync(this.spec.logFile, "a");
    try {
      this.child = spawn(this.spec.command, [...this.spec.args], {
        env: { ...this.spec.env },
        stdio: ["ignore", fd, fd],
        detached: options.detached ?? false,
      });
    } finally {
      closeSync(fd);
    }
    const child = this.child;
    this.lastExit = undefined;
    this.stopping = false;
    this.startCount++;
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        const info = { code, signal };
        if (this.child === child) this.lastExit = info;
        if (!this.stopping) this.onUnexpectedExit?.(info);
        resolve(info);
      });
      child.once("error", () => {
        live.delete(child);
        const info = { code: -1, signal: null };
        if (this.child === child) this.lastExit = info;
        resolve(info);
      });
    });
  }

  /** SIGTERM, then SIGKILL if still alive after `graceMs`. Resolves with how it exited. */
  async stop(graceMs = 10_000): Promise<ExitInfo | undefined> {
    return this.signalAndWait("SIGTERM", graceMs);
  }

  /** SIGKILL: the power-loss case. */
  async kill(): Promise<ExitInfo | undefined> {
    return this.signalAndWait("SIGKILL", 0);
  }

  private async signalAndWait(signal: NodeJS.Signals, graceMs: number): Promise<ExitInfo | undefined> {
    const child = this.child;
    if (child === undefined || this.exited === undefined || !this.running) return this.lastExit;
    this.stopping = true;
    child.kill(signal);
    if (signal === "SIGKILL") return this.exited;
    let timer: NodeJS.Timeout | undefined;
    const escalate = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve(undefined);
      }, graceMs);
    });
    await Promise.race([this.exited, escalate]);
    clearTimeout(timer);
    return this.exited;
  }

  /** Stop (SIGTERM, or SIGKILL when `hard`) and start again with the same flags. */
  async restart(options: { hard?: boolean; graceMs?: number } = {}): Promise<void> {
    if (options.hard) await this.kill();
    else await this.stop(options.graceMs);
    this.start();
  }

  /** Polls the health URL until it answers 200; fails at once if the process exits meanwhile. */
  async waitHealthy(deadlineMs: number): Promise<unknown> {
    try {
      return await pollUntil(
        `${this.spec.name} to become healthy at ${this.spec.healthUrl}`,
        async () => {
          if (!this.running) {
            fatal(
              new ProcessExitedError(
                this.spec.name,
                this.lastExit ?? { code: null, signal: null },
                this.logTail(),
              ),
            );
          }
          const res = await fetch(this.spec.healthUrl, { signal: AbortSignal.timeout(2000) });
          const body = await res.text();
          if (res.status !== 200) throw new Error(`health answered ${res.status}: ${body.slice(0, 200)}`);
          return body.length > 0 ? (JSON.parse(body) as unknown) : {};
        },
        { deadlineMs, intervalMs: 100 },
      );
    } catch (err) {
      if (err instanceof DeadlineError) {
        throw new Error(`${err.message}\nlast log lines of ${this.spec.name}:\n${this.logTail()}`);
      }
      throw err;
    }
  }

  /** The last `lines` lines of the member's log file. */
  logTail(lines = 15): string {
    try {
      const size = statSync(this.spec.logFile).size;
      const text = readFileSync(this.spec.logFile, "utf8").slice(Math.max(0, size - 16_384));
      return text.trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log yet)";
    }
  }
}
