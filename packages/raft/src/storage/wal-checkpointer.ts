// Background WAL checkpoints. SQLite checkpoints a WAL-mode database on the committing connection
// once the WAL passes its auto-checkpoint size: that COMMIT copies every page back into the database
// file and syncs the WAL and the file, 10-20 ms of the event loop under a write load. Here a worker
// thread with its own connection runs a PASSIVE checkpoint every `intervalMs` (it neither waits for
// nor blocks the writer), and the writer's own automatic checkpoint is set `writerPagesMax` pages
// out, a fallback that then finds only the last interval's pages left to copy. When a checkpoint
// has copied everything, the writer's next transaction restarts the WAL from its beginning.
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";

/** The control word shared with the worker. */
const STARTING = 0;
const RUNNING = 1;
const STOPPING = 2;
const STOPPED = 3;

/** Runs in the worker (plain CommonJS, so it needs no TypeScript loader). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const ctl = new Int32Array(workerData.control);
// Each failure is reported once until a checkpoint succeeds again (one every interval otherwise).
let reported = null;
const report = (err) => {
  const text = String(err && err.code ? err.code + ": " + err.message : err);
  if (text !== reported) parentPort.postMessage(text);
  reported = text;
};
try {
  const Database = require(workerData.driver);
  const db = new Database(workerData.path, { fileMustExist: true, timeout: 0 });
  try {
    // A checkpoint syncs the WAL before copying it and the database file before the WAL may start
    // over, unless its connection runs with synchronous=OFF: set here, not left to a build default.
    db.pragma("synchronous = NORMAL");
    if (Atomics.compareExchange(ctl, 0, ${STARTING}, ${RUNNING}) === ${STARTING}) {
      const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
      while (Atomics.wait(ctl, 0, ${RUNNING}, workerData.intervalMs) === "timed-out") {
        try {
          checkpoint.run();
          reported = null;
        } catch (err) {
          // Busy: another checkpoint is running. Anything else (an I/O error) is reported. Either
          // way the frames stay in the WAL, the writer's own checkpoint is the fallback, and this
          // one tries again next interval.
          const code = err && err.code;
          // (extended codes such as SQLITE_BUSY_SNAPSHOT included).
          if (!/^SQLITE_(BUSY|LOCKED)/.test(String(code))) report(err);
        }
      }
    }
  } finally {
    db.close();
  }
} catch (err) {
  // No driver or no database: only the background checkpoints are lost.
  report(err);
} finally {
  Atomics.store(ctl, 0, ${STOPPED});
  Atomics.notify(ctl, 0);
}
`;

export interface WalCheckpointerOptions {
  /** Time between the worker's checkpoints (default 100 ms). */
  intervalMs?: number;
  /** The writer's own auto-checkpoint size while the worker runs (default 10000 pages). */
  writerPagesMax?: number;
  /** How long `close` may wait for the worker to close its connection (default 5 s). */
  closeTimeoutMs?: number;
  /**
   * Told of a checkpoint that failed other than by being busy (once until one succeeds again), or
   * of a worker that could not start. Default: a process warning.
   */
  onError?: (message: string) => void;
}

export class WalCheckpointer {
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  private worker: Worker | null;

  /** `db` is the writer's open connection to a WAL-mode database file. */
  constructor(
    private readonly db: Database.Database,
    private readonly options: WalCheckpointerOptions = {},
  ) {
    this.db.pragma(`wal_autocheckpoint = ${options.writerPagesMax ?? 10_000}`);
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        driver: createRequire(import.meta.url).resolve("better-sqlite3"),
        path: db.name,
        intervalMs: options.intervalMs ?? 100,
        control: this.control.buffer,
      },
    });
    this.worker.unref();
    const onError =
      options.onError ??
      ((message: string) => process.emitWarning(`${db.name}: background WAL checkpoint failed: ${message}`));
    this.worker.on("message", (message: unknown) => onError(String(message)));
    // A worker that cannot start only loses the background checkpoints.
    this.worker.on("error", (err) => onError(String(err)));
  }

  /**
   * Stops the worker and waits (at most `closeTimeoutMs`) until its connection is closed, so that
   * the writer's own close is the last one and checkpoints the database as SQLite does then. The
   * writer's automatic checkpoint goes back to SQLite's default. Returns whether the worker's
   * connection is closed: false when it was still open at the deadline (a checkpoint stuck in I/O),
   * and a caller about to remove or replace the database's files must then leave them alone.
   */
  close(): boolean {
    const worker = this.worker;
    if (worker !== null) {
      this.worker = null;
      if (Atomics.compareExchange(this.control, 0, STARTING, STOPPING) === RUNNING) {
        Atomics.store(this.control, 0, STOPPING);
        Atomics.notify(this.control, 0);
      }
      Atomics.wait(this.control, 0, STOPPING, this.options.closeTimeoutMs ?? 5000);
      void worker.terminate();
      if (this.db.open) this.db.pragma("wal_autocheckpoint = 1000");
    }
    return Atomics.load(this.control, 0) === STOPPED;
  }
}
