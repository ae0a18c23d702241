import { createHmac } from "node:crypto";
import type { IamStore } from "./store.js";

/** Most audit records (and last-used updates) buffered before a flush is forced. */
const pendingEntriesMax = 512;
const flushIntervalMs = 100;

/**
 * Audit records and credential last-used times, written in batches (one SQLite transaction, one fsync,
 * per flush) so that authentication on the hot path does not pay a disk sync per call. A crash can lose
 * at most the last flush interval of records. Secrets are never recorded: `fingerprint` gives an HMAC.
 */
export class AuditLog {
  private pending: {
    atMs: number;
    actor: string;
    action: string;
    target: string;
    outcome: string;
    detail: string;
  }[] = [];
  private lastUsed = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: IamStore,
    private readonly hmacKey: Buffer,
    private readonly nowMs: () => number,
  ) {}

  /** An HMAC of a secret value, safe to store and compare across records. */
  fingerprint(secret: string): string {
    return createHmac("sha256", this.hmacKey).update(secret).digest("base64url").slice(0, 22);
  }

  record(
    actor: string,
    action: string,
    target: string,
    outcome: string,
    detail: Record<string, unknown> = {},
  ): void {
    this.pending.push({ atMs: this.nowMs(), actor, action, target, outcome, detail: JSON.stringify(detail) });
    this.schedule();
  }

  credentialUsed(accessKeyId: string): void {
    this.lastUsed.set(accessKeyId, this.nowMs());
    this.schedule();
  }

  private schedule(): void {
    if (this.pending.length + this.lastUsed.size >= pendingEntriesMax) {
      this.flush();
      return;
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), flushIntervalMs);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const entries = this.pending;
    const used = this.lastUsed;
    this.pending = [];
    this.lastUsed = new Map();
    if (entries.length === 0 && used.size === 0) return;
    this.store.db.transaction(() => {
      for (const e of entries) this.store.appendAudit(e);
      for (const [id, at] of used) this.store.touchCredential(id, at);
    })();
  }
}
