import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { IamStore } from "./store.js";

/** Most audit records (and last-used updates) in one batch. */
const batchEntriesMax = 512;
/**
 * Bound on records handed to the writer and not yet committed. Past it the main thread commits the
 * next batch itself (waiting for the database like the writer would), so a slow disk slows the
 * callers down instead of growing memory without limit.
 */
const uncommittedEntriesMax = 65_536;
/**
 * Batches the writer may hold at once: the one it commits and the next, queued, so that it starts the
 * next commit as soon as one ends instead of idling until the main thread (busy serving calls) reads
 * its "committed" message and hands over more.
 */
const writerDepth = 2;
/** How long a writer waits for the other connection's write lock before failing a batch. */
const busyTimeoutMs = 10_000;

/** One audit row: [atMs, actor, action, target, outcome, detail JSON]. */
type AuditRow = [number, string, string, string, string, string];

/** Told once a batch is committed (null) or could not be written (the error). */
export type DurableCallback = (err: Error | null) => void;

interface Batch {
  id: number;
  /** Sequence numbers of the first and last audit record in the batch (first > last: no record). */
  firstSeq: number;
  lastSeq: number;
  rows: AuditRow[];
  /** Credential last-used times: [accessKeyId, atMs]. */
  used: [string, number][];
  /** Who waits for the batch to be committed. */
  waiters: DurableCallback[];
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
 * Audit records and credential last-used times, committed by a worker thread with its own SQLite
 * connection (one transaction, one fsync per batch) so that disk syncs do not block the event loop.
 * Secrets are never recorded: `fingerprint` gives an HMAC.
 *
 * Durability (audit before answer): `record()` returns the record's sequence number and
 * `whenDurable(seq, done)` (or the promise `durable(seq)`) reports when the batch holding that record
 * is committed (fsync'd); the gRPC layer answers a call that recorded anything only after that, and
 * fails the call (UNAVAILABLE) if the batch could not be written, so no caller ever holds a token or a
 * result whose audit record could still be lost by a crash (kill -9, power loss). Batches are formed by group commit: when the
 * writer is idle, what was recorded is handed over at once (at the end of the current event-loop turn,
 * so calls parsed together share a batch); while the writer is busy (one batch committing, the next
 * queued behind it: `writerDepth`), records accumulate and go as one batch when a commit completes
 * (or when `batchEntriesMax` entries are waiting). There is no timer: an idle writer adds no delay
 * beyond one commit. `close()` (at shutdown, after the gRPC
 * server stopped taking calls) drains every record before it resolves. If the writer thread fails,
 * the batches it had not committed are written by the main thread, which then writes every later
 * batch itself (a batch the writer had committed without saying so may then appear twice: a
 * duplicate record rather than a lost one); if that write fails too, the waiting calls fail.
 */
export class AuditLog {
  private pending: AuditRow[] = [];
  private pendingWaiters: DurableCallback[] = [];
  private lastUsed = new Map<string, number>();
  private handOverQueued = false;
  private writer: Worker | null = null;
  /** Batches handed to the writer and not yet reported committed, in sending order. */
  private readonly uncommitted = new Map<number, Batch>();
  private uncommittedEntries = 0;
  private nextBatchId = 1;
  /** Sequence number of the last record made (0: none yet). */
  private seq = 0;
  /** The last batch that failed to commit (its records are lost: waiters for them fail). */
  private lastFailure: { firstSeq: number; lastSeq: number; error: Error } | null = null;
  private closed = false;

  constructor(
    private readonly store: IamStore,
    private readonly hmacKey: Buffer,
    private readonly nowMs: () => number,
  ) {
    // An in-memory database has no file a second connection could open: it is written inline.
    if (!store.db.memory) this.writer = this.startWriter(store.db.name);
  }

  /** Sequence number of the most recent record (compare before/after a call to see if it recorded). */
  get recorded(): number {
    return this.seq;
  }

  /** An HMAC of a secret value, safe to store and compare across records. */
  fingerprint(secret: string): string {
    return createHmac("sha256", this.hmacKey).update(secret).digest("base64url").slice(0, 22);
  }

  /** Appends a record to the next batch; returns its sequence number (see `durable`). */
  record(
    actor: string,
    action: string,
    target: string,
    outcome: string,
    detail: Record<string, unknown> = {},
  ): number {
    this.pending.push([this.nowMs(), actor, action, target, outcome, JSON.stringify(detail)]);
    this.schedule();
    return ++this.seq;
  }

  credentialUsed(accessKeyId: string): void {
    this.lastUsed.set(accessKeyId, this.nowMs());
    this.schedule();
  }

  /**
   * Calls `done` once the record `seq` (and, for the writer's batches, every record before it) is
   * committed, with the error if its batch could not be written. A callback, not a promise: the
   * request path calls this once per audited call.
   */
  whenDurable(seq: number, done: DurableCallback): void {
    const failed = this.lastFailure;
    if (failed !== null && seq >= failed.firstSeq && seq <= failed.lastSeq) {
      done(failed.error);
      return;
    }
    if (seq > this.seq - this.pending.length) {
      this.pendingWaiters.push(done);
      return;
    }
    for (const batch of this.uncommitted.values()) {
      if (seq <= batch.lastSeq && seq >= batch.firstSeq) {
        batch.waiters.push(done);
        return;
      }
    }
    done(null); // committed already
  }

  /** `whenDurable` as a promise. */
  durable(seq: number): Promise<void> {
    return new Promise((resolve, reject) => this.whenDurable(seq, (err) => (err ? reject(err) : resolve())));
  }

  /** Hands over what is pending and resolves once everything recorded so far is committed. */
  async flush(): Promise<void> {
    const last = this.seq;
    this.handOver();
    await Promise.all(
      [...this.uncommitted.values()].map(
        (b) =>
          new Promise<void>((resolve, reject) => b.waiters.push((err) => (err ? reject(err) : resolve()))),
      ),
    );
    await this.durable(last);
  }

  /**
   * Drains every record (see the class comment) and stops the writer thread; rejects if the last
   * records could not be written.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.stopWriter();
    }
  }

  private async stopWriter(): Promise<void> {
    const writer = this.writer;
    if (writer === null) return;
    this.writer = null;
    writer.ref();
    await new Promise<void>((resolve) => {
      writer.once("exit", () => resolve());
      writer.postMessage("close");
    });
  }

  /**
   * Group commit: while the writer has room (fewer than `writerDepth` batches), hand over at the end
   * of this event-loop turn; otherwise keep gathering (`committed` hands over the next batch) unless
   * the batch is full.
   */
  private schedule(): void {
    if (this.pending.length + this.lastUsed.size >= batchEntriesMax) {
      this.handOver();
      return;
    }
    if (this.uncommitted.size < writerDepth && !this.handOverQueued) {
      this.handOverQueued = true;
      setImmediate(() => {
        this.handOverQueued = false;
        if (this.uncommitted.size < writerDepth) this.handOver();
      });
    }
  }

  /** Moves the pending records into a batch: to the writer thread, or committed here when there is none. */
  private handOver(): void {
    if (this.pending.length === 0 && this.lastUsed.size === 0) return;
    const batch: Batch = {
      id: this.nextBatchId++,
      firstSeq: this.seq - this.pending.length + 1,
      lastSeq: this.seq,
      rows: this.pending,
      used: [...this.lastUsed],
      waiters: this.pendingWaiters,
    };
    this.pending = [];
    this.pendingWaiters = [];
    this.lastUsed = new Map();
    const entries = batch.rows.length + batch.used.length;
    if (this.writer === null || this.uncommittedEntries + entries > uncommittedEntriesMax) {
      this.commitHere(batch, null);
      return;
    }
    this.uncommitted.set(batch.id, batch);
    this.uncommittedEntries += entries;
    // While batches are outstanding the writer keeps the process alive, so none is dropped at exit.
    this.writer.ref();
    this.writer.postMessage({ id: batch.id, rows: batch.rows, used: batch.used });
  }

  /** Commits a batch on the main thread's connection; a failure fails the batch's waiters. */
  private commitHere(batch: Batch, cause: Error | null): void {
    try {
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
    } catch (err) {
      const reason = cause === null ? "" : ` after ${cause.message}`;
      const error = new Error(`audit records could not be written${reason}: ${(err as Error).message}`, {
        cause: err,
      });
      this.lastFailure = { firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, error };
      settle(batch, error);
      return;
    }
    settle(batch, null);
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
    // The writer commits in sending order: everything sent before this batch is committed too.
    settle(batch, null);
    // What gathered while this commit ran is the next batch: hand it over now.
    if (this.uncommitted.size < writerDepth) this.handOver();
    if (this.uncommitted.size === 0) this.writer?.unref();
  }

  /** The writer failed: the main thread commits what it had not, and every batch from now on. */
  private writerFailed(cause: Error): void {
    const writer = this.writer;
    this.writer = null;
    if (writer !== null) void writer.terminate();
    const batches = [...this.uncommitted.values()];
    this.uncommitted.clear();
    this.uncommittedEntries = 0;
    for (const batch of batches) this.commitHere(batch, cause);
    // Records gathered while waiting for the writer are committed here from now on.
    this.handOver();
  }
}

/** Tells every waiter of a batch; one that throws does not keep the others from being told. */
function settle(batch: Batch, err: Error | null): void {
  for (const done of batch.waiters) {
    try {
      done(err);
    } catch (thrown) {
      queueMicrotask(() => {
        throw thrown;
      });
    }
  }
}
