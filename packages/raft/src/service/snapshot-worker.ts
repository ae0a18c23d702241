// Off-event-loop snapshots for SQLite state machines that keep their applied index in the same
// database: a worker thread with its own connection pins a read transaction at the caller's
// applied index (the caller blocks only until the view is pinned), then builds the image while
// the caller keeps applying entries. The view is checked: the applied index read inside it must be
// the one expected, otherwise the job fails. The image comes back in memory (`begin`) or is written
// to a file (`beginFile`), which bounds neither the caller's memory nor a Buffer's size.
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { SnapshotFileJob, SnapshotJob } from "./state-machine.js";

/**
 * Runs in the worker (plain CommonJS, so it needs no TypeScript loader). `appliedSql` returns one
 * row with column `idx`. The image is the whole database file as of the pinned view (SQLite's
 * serialization) or, with `imageSql`, its rows turned into JSON `[[idx, base64(cmd)], ...]`, the
 * format of AppendLogMachine.snapshot(). A file job copies the pinned view's pages into a new file
 * with SQLite's online backup, a step of pages per turn of the worker's loop: the read transaction
 * held across the steps keeps every step on the same view, so writers meanwhile change nothing in
 * it. Jobs run one at a time; a close asked for during a file job stops that job at its next step.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { rmSync } = require("node:fs");
const pinned = new Int32Array(workerData.signal);
const closed = new Int32Array(workerData.closed);
function signal() { Atomics.store(pinned, 0, 1); Atomics.notify(pinned, 0); }
function signalClosed() { Atomics.store(closed, 0, 1); Atomics.notify(closed, 0); }
// Pages a file job copies per turn of the loop (4 MiB of 4-KiB pages): a close waits for one step.
const FILE_STEP_PAGES = 1024;
let db;
try {
  const Database = require(workerData.driver);
  db = new Database(workerData.path, { fileMustExist: true });
} catch (err) {
  signalClosed(); // no connection was opened
  throw err;
}
db.defaultSafeIntegers(true);
const applied = db.prepare(workerData.appliedSql);
const rows = workerData.imageSql === undefined ? null : db.prepare(workerData.imageSql);
const queue = [];
let running = false;
let closing = false;
parentPort.postMessage({ ready: true });
const cancelled = new Set();
parentPort.on("message", (job) => {
  if (job.close === true) closing = true;
  else if (job.cancel !== undefined) cancelled.add(job.cancel);
  else queue.push(job);
  if (!running) void drain();
});
async function drain() {
  running = true;
  while (queue.length > 0 && !closing) {
    const job = queue.shift();
    // Given up by the caller (its pin timed out) before it started: not made at all.
    if (cancelled.delete(job.id)) {
      parentPort.postMessage({ id: job.id, skipped: true });
      continue;
    }
    await run(job);
    cancelled.delete(job.id);
  }
  running = false;
  if (closing) {
    db.close();
    signalClosed();
    parentPort.close();
  }
}
/** Pins the view at the job's index (telling the caller once it is pinned, either way). */
function pin(job) {
  try {
    db.exec("BEGIN");
    const row = applied.get();
    const at = row === undefined ? 0n : row.idx;
    if (at.toString() !== job.index) throw new Error("pinned view is at index " + at + ", expected " + job.index);
  } finally {
    signal();
  }
}
async function run(job) {
  let image;
  try {
    pin(job);
    if (job.file !== undefined) {
      await db.backup(job.file, {
        progress() {
          if (closing) throw new Error("the state machine was closed while the image was made");
          return FILE_STEP_PAGES;
        },
      });
    } else if (rows === null) {
      image = db.serialize();
    } else {
      const out = [];
      for (const r of rows.iterate()) out.push([r.idx.toString(), Buffer.from(r.cmd).toString("base64")]);
      image = Buffer.from(JSON.stringify(out));
    }
  } catch (err) {
    if (job.file !== undefined) rmSync(job.file, { force: true });
    parentPort.postMessage({ id: job.id, error: String((err && err.message) || err) });
    return;
  } finally {
    if (db.inTransaction) db.exec("COMMIT");
  }
  if (job.file !== undefined) {
    parentPort.postMessage({ id: job.id, file: true });
    return;
  }
  const ab = image.buffer.slice(image.byteOffset, image.byteOffset + image.byteLength);
  parentPort.postMessage({ id: job.id, image: ab }, [ab]);
}
`;

interface Pending {
  /** The image of a `begin` job; undefined for a `beginFile` job, whose image is in its file. */
  resolve(image: Uint8Array | undefined): void;
  reject(err: Error): void;
}

export type { SnapshotFileJob };

export interface SnapshotWorkerOptions {
  /** The database file (WAL mode, so a reader's view is not disturbed by the writer). */
  path: string;
  appliedSql: string;
  /** Rows of a JSON image (see WORKER_SOURCE); without it the image is the serialized database. */
  imageSql?: string;
  /** How long `begin` may block waiting for the worker to pin its view. */
  pinTimeoutMs?: number;
  /** How long `close` may block waiting for the worker to close its connection (default 5 s). */
  closeTimeoutMs?: number;
}

export class SnapshotWorker {
  private worker: Worker | null = null;
  private readonly signal = new SharedArrayBuffer(4);
  /**
   * Set to 1 once the last worker started has closed its connection (by itself, or when its thread
   * exited); null until a worker is started. One buffer per worker.
   */
  private closed: Int32Array | null = null;
  /** `suspend` closed a started worker: `resume` starts one again. */
  private suspended = false;
  private readonly pending = new Map<number, Pending>();
  /** The file of each file job not answered yet. */
  private readonly files = new Map<number, string>();
  /** Settles once every job begun so far has (see `whenIdle`). */
  private inFlight: Promise<void> = Promise.resolve();
  private nextId = 1;
  private ready = false;
  /** The last worker started could not open its connection (it exited before it was ready). */
  private failedToStart = false;

  constructor(private readonly options: SnapshotWorkerOptions) {}

  /**
   * Pins a view at `index` (blocking until pinned, bounded) and returns the job producing the
   * image; `undefined` while the worker is still starting (it is started by the first call), so
   * the caller never blocks on a thread start-up and takes this snapshot synchronously instead.
   */
  begin(index: bigint): SnapshotJob | undefined {
    const job = this.post(index, undefined);
    return job && { index, image: job as Promise<Uint8Array> };
  }

  /**
   * As `begin`, but the worker writes the image to `file` (a new file, in an existing folder)
   * instead of sending it: the caller reads it from there, in pieces, and removes it. A job that
   * fails leaves no file.
   */
  beginFile(index: bigint, file: string): SnapshotFileJob | undefined {
    const job = this.post(index, file);
    return job && { index, written: job.then(() => undefined) };
  }

  private post(index: bigint, file: string | undefined): Promise<Uint8Array | undefined> | undefined {
    const worker = this.ensureWorker();
    if (!this.ready) return undefined;
    const flag = new Int32Array(this.signal);
    Atomics.store(flag, 0, 0);
    const id = this.nextId++;
    const done = new Promise<Uint8Array | undefined>((resolve, reject) =>
      this.pending.set(id, { resolve, reject }),
    );
    // Settled to nothing, so the chain keeps no image alive.
    this.inFlight = Promise.allSettled([this.inFlight, done]).then(() => undefined);
    if (file !== undefined) this.files.set(id, file);
    worker.postMessage({ id, index: index.toString(), file });
    const waited = Atomics.wait(flag, 0, 0, this.options.pinTimeoutMs ?? 500);
    if (waited === "timed-out") {
      // The worker skips the job if it has not started it; if it has, its answer no longer
      // matters (and a file it writes is removed when that answer comes).
      worker.postMessage({ cancel: id });
      this.settle(id, new Error("the snapshot worker did not pin its view in time"));
    }
    return done;
  }

  /** Starts the worker (if needed) and resolves once it can pin views. */
  async start(): Promise<void> {
    const worker = this.ensureWorker();
    if (this.ready) return;
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: { ready?: boolean }) => {
        if (m.ready !== true) return;
        worker.off("message", onMessage);
        resolve();
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
      worker.once("exit", () => reject(new Error("the snapshot worker exited before it was ready")));
    });
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** Whether the last worker started exited before it was ready (it could not open the file). */
  get startFailed(): boolean {
    return this.failedToStart;
  }

  /**
   * Whether a job is in flight. The worker makes one image at a time: `begin` while it is busy
   * blocks until the worker is free to pin (at most `pinTimeoutMs`). A caller that can wait for
   * its image, unlike the Raft layer, waits for `whenIdle` first.
   */
  get busy(): boolean {
    return this.pending.size > 0;
  }

  /** Resolves once every job begun so far has settled. */
  async whenIdle(): Promise<void> {
    await this.inFlight;
  }

  private ensureWorker(): Worker {
    if (this.worker !== null) return this.worker;
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    const closed = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ...this.options, driver, signal: this.signal, closed: closed.buffer },
    });
    worker.unref();
    // A worker closed earlier may still answer or exit after a new one started: only the current
    // one's events count (the jobs of a closed one were failed when it was closed).
    type Answer = {
      id: number;
      ready?: boolean;
      image?: ArrayBuffer;
      file?: boolean;
      skipped?: boolean;
      error?: string;
    };
    worker.on("message", (m: Answer) => {
      if (this.worker !== worker) return;
      if (m.ready === true) {
        this.ready = true;
        this.failedToStart = false;
      } else if (m.image !== undefined) this.pending.get(m.id)?.resolve(new Uint8Array(m.image));
      else if (m.file === true) {
        const pending = this.pending.get(m.id);
        // A file written for a job already given up (its pin timed out): nobody will read it.
        const file = this.files.get(m.id);
        if (pending !== undefined) pending.resolve(undefined);
        else if (file !== undefined) rmSync(file, { force: true });
      } else if (m.skipped === true) {
        // A job given up before it started: already settled, nothing was written.
      } else this.settle(m.id, new Error(m.error ?? "snapshot failed"));
      this.pending.delete(m.id);
      this.files.delete(m.id);
    });
    worker.on("error", (err) => {
      if (this.worker === worker) this.failAll(err);
    });
    worker.on("exit", () => {
      Atomics.store(closed, 0, 1); // the thread is gone, its connection with it
      if (this.worker !== worker) return;
      if (!this.ready) this.failedToStart = true;
      this.worker = null;
      this.ready = false;
      this.failAll(new Error("the snapshot worker exited"));
    });
    this.worker = worker;
    this.closed = closed;
    return worker;
  }

  private settle(id: number, err: Error): void {
    this.pending.get(id)?.reject(err);
    this.pending.delete(id);
  }

  private failAll(err: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id, err);
  }

  /**
   * Before the database file is replaced (a restore): closes a started worker's connection, as
   * `close` does, and returns whether it is closed; `resume` then starts a new worker on the new
   * file. A connection left open on the old file while its WAL is removed and the new file is
   * renamed over it would still be reading the old files' descriptors and shared memory.
   */
  suspend(): boolean {
    this.suspended = this.worker !== null;
    return this.close();
  }

  /**
   * After the replacement: starts a new worker if `suspend` closed one (until it is ready, `begin`
   * answers undefined and the caller snapshots synchronously).
   */
  resume(): void {
    if (!this.suspended) return;
    this.suspended = false;
    void this.start().catch(() => {});
  }

  /**
   * Fails the pending jobs, asks the worker to close its connection and waits for it (at most
   * `closeTimeoutMs`: an image the worker is serializing is finished first, a file job stops at
   * its next step and removes its file). Returns whether the connection is closed (true when no
   * worker was started).
   */
  close(): boolean {
    this.failAll(new Error("the state machine was closed"));
    const worker = this.worker;
    const closed = this.closed;
    this.worker = null;
    this.ready = false;
    if (worker !== null && closed !== null) {
      worker.postMessage({ close: true });
      Atomics.wait(closed, 0, 0, this.options.closeTimeoutMs ?? 5000);
      void worker.terminate();
    }
    return closed === null || Atomics.load(closed, 0) === 1;
  }
}
