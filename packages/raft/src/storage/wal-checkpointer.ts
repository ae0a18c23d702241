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
const { workerData } = require("node:worker_threads");
const ctl = new Int32Array(workerData.control);
try {
  const Database = require(workerData.driver);
  const db = new Database(workerData.path, { fileMustExist: true, timeout: 0 });
  try {
    if (Atomics.compareExchange(ctl, 0, ${STARTING}, ${RUNNING}) === ${STARTING}) {
      const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
      while (Atomics.wait(ctl, 0, ${RUNNING}, workerData.intervalMs) === "timed-out") {
        try {
          checkpoint.run();
        } catch {
          // Busy or failed: the writer's own checkpoint is the fallback; try again next interval.
        }
      }
    }
  } finally {
    db.close();
  }
} catch {
  // No driver or no database: only the background checkpoints are lost.
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
    // A worker that cannot start only loses the background checkpoints.
    this.worker.on("error", () => {});
  }

  /**
   * Stops the worker and waits (bounded) until its connection is closed, so that the writer's own
   * close is the last one and checkpoints the database as SQLite does then. The writer's automatic
   * checkpoint goes back to SQLite's default.
   */
  close(): void {
    const worker = this.worker;
    if (worker === null) return;
    this.worker = null;
    if (Atomics.compareExchange(this.control, 0, STARTING, STOPPING) === RUNNING) {
      Atomics.store(this.control, 0, STOPPING);
      Atomics.notify(this.control, 0);
    }
    Atomics.wait(this.control, 0, STOPPING, this.options.closeTimeoutMs ?? 5000);
    void worker.terminate();
    if (this.db.open) this.db.pragma("wal_autocheckpoint = 1000");
  }
}
