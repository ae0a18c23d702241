import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { IamStore } from "./store.js";

/** Most audit records (and last-used updates) gathered before a batch is handed over. */
const batchEntriesMax = 512;
/** Longest a record waits in memory before its batch is handed over. */
const flushIntervalMs = 25;
/**
 * Bound on records handed to the writer and not yet committed. Past it the main thread commits the
 * next batch itself (waiting for the database like the writer would), so a slow disk slows the
 * callers down instead of growing memory without limit.
 */
const uncommittedEntriesMax = 65_536;
/** How long a writer waits for the other connection's write lock before failing a batch. */
const busyTimeoutMs = 10_000;

/** One audit row: [atMs, actor, action, target, outcome, detail JSON]. */
type AuditRow = [number, string, string, string, string, string];

interface Batch {
  id: number;
  rows: AuditRow[];
  /** Credential last-used times: [accessKeyId, atMs]. */
  used: [string, number][];
}

type WriterMessage = { committed: number } | { failed: number; error: string } | { closed: true };

/**
 * The writer thread (plain CommonJS, so it needs no TypeScript loader): its own connection to the
 * same database (WAL, so it does not stop the main connection's readers), one transaction (one fsync)
 * per batch, batches committed in the order they were sent.
 */
const WRITER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true, timeout: workerData.busyTimeoutMs });
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
const append = db.prepare(
  "INSERT INTO audit (at_ms, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)");
const touch = db.prepare("UPDATE credentials SET last_used_ms = ? WHERE access_key_id = ?");
const commit = db.transaction((batch) => {
  for (const r of batch.rows) append.run(r[0], r[1], r[2], r[3], r[4], r[5]);
  for (const u of batch.used) touch.run(u[1], u[0]);
});
parentPort.on("message", (m) => {
  if (m === "close") {
    db.close();
    parentPort.postMessage({ closed: true });
    parentPort.close();
    return;
  }
  try {
    commit(m);
    parentPort.postMessage({ committed: m.id });
  } catch (err) {
    parentPort.postMessage({ failed: m.id, error: String((err && err.message) || err) });
  }
});
`;

/**
 * Audit records and credential last-used times. Recording is an append to memory; records are
 * gathered into batches (25 ms or 512 entries) that a worker thread with its own SQLite connection
 * commits, one transaction and one fsync per batch, so neither the records nor the disk syncs cost
 * the request path more than the hand-over. Secrets are never recorded: `fingerprint` gives an HMAC.
 *
 * Durability: `flush()` resolves once everything recorded before it is committed; `close()` (at
 * shutdown, after the gRPC server stopped taking calls) drains every record before it resolves, so a
 * clean stop loses nothing. A crash can lose the records of the last moments (those not yet
 * committed: at most one flush interval plus one commit), as any group commit can. If the writer
 * thread fails, the batches it had not committed are written by the main thread, which then writes
 * every later batch itself (a batch it had committed without saying so may then appear twice:
 * a duplicate record rather than a lost one).
 */
export class AuditLog {
  private pending: AuditRow[] = [];
  private lastUsed = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private writer: Worker | null = null;
  /** Batches handed to the writer and not yet reported committed, by id (in sending order). */
  private readonly uncommitted = new Map<number, Batch>();
  private uncommittedEntries = 0;
  private nextBatchId = 1;
  /** Waiters for "every batch up to id is committed". */
  private committedWaiters: { id: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  private closed = false;

  constructor(
    private readonly store: IamStore,
    private readonly hmacKey: Buffer,
    private readonly nowMs: () => number,
  ) {
    // An in-memory database has no file a second connection could open: it is written inline.
    if (!store.db.memory) this.writer = this.startWriter(store.db.name);
  }

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
    this.pending.push([this.nowMs(), actor, action, target, outcome, JSON.stringify(detail)]);
    this.schedule();
  }

  credentialUsed(accessKeyId: string): void {
    this.lastUsed.set(accessKeyId, this.nowMs());
    this.schedule();
  }

  /** Hands over what is pending and resolves once everything recorded so far is committed. */
  flush(): Promise<void> {
    this.handOver();
    const last = this.nextBatchId - 1;
    if (this.uncommitted.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.committedWaiters.push({ id: last, resolve, reject }));
  }

  /** Drains every record (see the class comment) and stops the writer thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    const writer = this.writer;
    if (writer === null) return;
    this.writer = null;
    writer.ref();
    await new Promise<void>((resolve) => {
      writer.once("exit", () => resolve());
      writer.postMessage("close");
    });
  }

  private schedule(): void {
    if (this.pending.length + this.lastUsed.size >= batchEntriesMax) {
      this.handOver();
      return;
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => this.handOver(), flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Moves the pending records into a batch: to the writer thread, or committed here when there is none. */
  private handOver(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0 && this.lastUsed.size === 0) return;
    const batch: Batch = { id: this.nextBatchId++, rows: this.pending, used: [...this.lastUsed] };
    this.pending = [];
    this.lastUsed = new Map();
    const entries = batch.rows.length + batch.used.length;
    if (this.writer === null || this.uncommittedEntries + entries > uncommittedEntriesMax) {
      this.commitHere(batch);
      return;
    }
    this.uncommitted.set(batch.id, batch);
    this.uncommittedEntries += entries;
    // While batches are outstanding the writer keeps the process alive, so none is dropped at exit.
    this.writer.ref();
    this.writer.postMessage(batch);
  }

  private commitHere(batch: Batch): void {
    this.store.db.transaction(() => {
      for (const r of batch.rows)
        this.store.appendAudit({
          atMs: r[0],
          actor: r[1],
          action: r[2],
          target: r[3],
          outcome: r[4],
          detail: r[5],
        });
      for (const [id, at] of batch.used) this.store.touchCredential(id, at);
    })();
  }

  private startWriter(path: string): Worker {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    const writer = new Worker(WRITER_SOURCE, { eval: true, workerData: { driver, path, busyTimeoutMs } });
    writer.unref();
    writer.on("message", (m: WriterMessage) => {
      if ("committed" in m) this.committed(m.committed);
      else if ("failed" in m) this.writerFailed(new Error(`audit writer: ${m.error}`));
    });
    writer.on("error", (err) => this.writerFailed(err));
    writer.on("exit", () => {
      if (this.writer === writer) this.writerFailed(new Error("audit writer thread exited"));
    });
    return writer;
  }

  private committed(id: number): void {
    const batch = this.uncommitted.get(id);
    if (batch === undefined) return;
    this.uncommitted.delete(id);
    this.uncommittedEntries -= batch.rows.length + batch.used.length;
    if (this.uncommitted.size === 0) this.writer?.unref();
    this.settleWaiters(null);
  }

  /** The writer failed: the main thread commits what it had not, and every batch from now on. */
  private writerFailed(cause: Error): void {
    const writer = this.writer;
    this.writer = null;
    if (writer !== null) void writer.terminate();
    const batches = [...this.uncommitted.values()];
    this.uncommitted.clear();
    this.uncommittedEntries = 0;
    let error: Error | null = null;
    for (const batch of batches) {
      try {
        this.commitHere(batch);
      } catch (err) {
        error = new Error(`audit records could not be written (${cause.message})`, { cause: err });
      }
    }
    this.settleWaiters(error);
    if (error !== null) throw error;
  }

  private settleWaiters(error: Error | null): void {
    const oldest = this.uncommitted.keys().next();
    const firstUncommitted = oldest.done ? Number.POSITIVE_INFINITY : oldest.value;
    const still: typeof this.committedWaiters = [];
    for (const w of this.committedWaiters) {
      if (error !== null) w.reject(error);
      else if (w.id < firstUncommitted) w.resolve();
      else still.push(w);
    }
    this.committedWaiters = still;
  }
}
