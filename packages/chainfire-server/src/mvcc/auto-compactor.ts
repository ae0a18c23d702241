// etcd's --auto-compaction-mode / --auto-compaction-retention: the leader compacts the history on
// its own, through the log like a client's Compact.
// - periodic: keep about `retention` of history. Every member samples its revision every tenth of
//   the retention (at most an hour, so every 6 minutes at most); once the retention has passed, the
//   leader compacts to the oldest sample it holds, then again every retention (at most hourly).
// - revision: every 5 minutes the leader compacts to the current revision minus `retention`.
// A compaction another one already covered counts as done. A failed proposal (leadership lost, no
// quorum) is simply tried again at the next round.
import { command } from "@photoncloud/chainfire-api";
import type { Replicated } from "@photoncloud/raft";
import { monotonicMs } from "./lessor.js";
import { encodeCommand } from "./messages.js";
import type { MvccStore } from "./store.js";

export type AutoCompaction =
  | { readonly mode: "periodic"; readonly retentionMs: number }
  | { readonly mode: "revision"; readonly retention: bigint };

const HOUR_MS = 3_600_000;
/** etcd's revision-mode interval. */
export const REVISION_MODE_INTERVAL_MS = 5 * 60_000;

export interface AutoCompactorLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export class AutoCompactor {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** periodic: revisions sampled each interval, oldest first, spanning about the retention. */
  private readonly samples: bigint[] = [];
  private lastSuccessMs: number;
  /** periodic: how long after the last success the next compaction is due. */
  private dueAfterMs: number;
  /** revision: the last revision compacted to. */
  private lastRevision = 0n;

  constructor(
    private readonly policy: AutoCompaction,
    private readonly replicated: Replicated,
    private readonly store: MvccStore,
    private readonly isLeader: () => boolean,
    private readonly log: AutoCompactorLog,
    /** Monotonic: a step of the wall clock does not bring a compaction forward or put it off. */
    private readonly nowMs: () => number = monotonicMs,
  ) {
    this.lastSuccessMs = nowMs();
    this.dueAfterMs = policy.mode === "periodic" ? policy.retentionMs : 0;
  }

  /** Whether the policy compacts at all (a retention of 0 turns it off, as etcd's default). */
  get enabled(): boolean {
    return this.policy.mode === "periodic" ? this.policy.retentionMs > 0 : this.policy.retention > 0n;
  }

  /** How often `tick` runs. */
  get intervalMs(): number {
    if (this.policy.mode === "revision") return REVISION_MODE_INTERVAL_MS;
    return Math.max(1, Math.floor(Math.min(this.policy.retentionMs, HOUR_MS) / 10));
  }

  start(): void {
    if (!this.enabled || this.timer !== null) return;
    this.sample();
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One round: compacts when due and this member leads; then (periodic) takes the next sample. */
  async tick(): Promise<void> {
    if (this.running || !this.enabled) return;
    this.running = true;
    try {
      if (this.policy.mode === "periodic") await this.periodicRound();
      else await this.revisionRound(this.policy.retention);
    } finally {
      this.running = false;
    }
  }

  private sample(): void {
    if (this.policy.mode !== "periodic") return;
    this.samples.push(this.store.currentRevision());
    // The samples span the retention: the oldest is the revision about one retention ago.
    const keep = Math.floor(this.policy.retentionMs / this.intervalMs) + 1;
    while (this.samples.length > keep) this.samples.shift();
  }

  private async periodicRound(): Promise<void> {
    try {
      const now = this.nowMs();
      if (!this.isLeader() || now - this.lastSuccessMs < this.dueAfterMs) return;
      if (await this.compact(this.samples[0]!)) {
        this.lastSuccessMs = now;
        this.dueAfterMs = Math.min(this.dueAfterMs, HOUR_MS);
      }
    } finally {
      this.sample();
    }
  }

  private async revisionRound(retention: bigint): Promise<void> {
    if (!this.isLeader()) return;
    const revision = this.store.currentRevision() - retention;
    if (revision <= 0n || revision === this.lastRevision) return;
    if (await this.compact(revision)) this.lastRevision = revision;
  }

  /** True once the history up to `revision` is compacted (by this proposal or an earlier one). */
  private async compact(revision: bigint): Promise<boolean> {
    if (revision <= this.store.compactRevision()) return true;
    const policy =
      this.policy.mode === "periodic"
        ? { mode: "periodic", retentionMs: this.policy.retentionMs }
        : { mode: "revision", retention: this.policy.retention.toString() };
    try {
      const { result } = await this.replicated.propose(
        encodeCommand({ compaction: { revision, physical: false } }),
      );
      const error = command.MvccResult.decode(result).error;
      // Compacted meanwhile (a client's Compact got there first): the history is as asked.
      if (error !== undefined && revision > this.store.compactRevision()) {
        this.log.warn({ revision, ...policy, error: error.message }, "auto-compaction failed");
        return false;
      }
      this.log.info({ revision, ...policy }, "auto-compacted the history");
      return true;
    } catch (err) {
      this.log.warn({ revision, ...policy, error: (err as Error).message }, "auto-compaction failed");
      return false;
    }
  }
}

const GO_DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: HOUR_MS,
};

/**
 * The retention as etcd reads `--auto-compaction-retention`: a whole number is hours in periodic
 * mode and revisions in revision mode; periodic mode also takes a duration ("30m", "1h30m").
 * Returns a sentence saying what is wrong otherwise.
 */
export function parseAutoCompaction(
  mode: "periodic" | "revision",
  retention: string,
): AutoCompaction | string {
  const text = retention.trim() === "" ? "0" : retention.trim();
  if (/^\d+$/.test(text)) {
    return mode === "periodic"
      ? { mode, retentionMs: Number(text) * HOUR_MS }
      : { mode, retention: BigInt(text) };
  }
  if (mode === "revision") {
    return `in revision mode the retention is a number of revisions (e.g. 1000), got ${JSON.stringify(retention)}`;
  }
  const parts = /^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)/;
  let rest = text;
  let ms = 0;
  while (rest !== "") {
    const match = parts.exec(rest);
    if (match === null) {
      return `expected a number of hours or a duration such as 30m or 1h30m, got ${JSON.stringify(retention)}`;
    }
    const unit = /(ns|us|µs|ms|s|m|h)$/.exec(match[0])![0];
    ms += Number.parseFloat(match[0]) * GO_DURATION_UNITS_MS[unit]!;
    rest = rest.slice(match[0].length);
  }
  return { mode, retentionMs: Math.round(ms) };
}
