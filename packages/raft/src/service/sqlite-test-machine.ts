// A tiny durable state machine used by the demo, tests and benchmark: it appends each command to a
// table and records the applied index in the same transaction (so no entry is applied twice).
import Database from "better-sqlite3";
import { WalFileSync } from "../storage/sync-files.js";
import { SnapshotWorker } from "./snapshot-worker.js";
import type { ApplyEntry, SnapshotJob, StateMachine } from "./state-machine.js";

export class AppendLogMachine implements StateMachine {
  readonly db: Database.Database;
  private applied: bigint;
  private readonly insert;
  private readonly setApplied;
  private readonly snapshots: SnapshotWorker;
  /** Present when made with `persist: true` (see StateMachine.persist); each batch commits at once. */
  readonly persist?: () => Promise<void>;
  private readonly files: WalFileSync | null = null;

  constructor(path: string, options: { persist?: boolean } = {}) {
    if (options.persist === true) {
      const files = new WalFileSync(path);
      this.files = files;
      this.persist = () => files.sync();
    }
    this.db = new Database(path);
    this.snapshots = new SnapshotWorker({
      path,
      appliedSql: "SELECT idx FROM applied WHERE id = 1",
      imageSql: "SELECT idx, cmd FROM log ORDER BY idx",
    });
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(`CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, term INTEGER, ts REAL, cmd BLOB);
      CREATE TABLE IF NOT EXISTS applied (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL);`);
    this.insert = this.db.prepare("INSERT INTO log (idx, term, ts, cmd) VALUES (?, ?, ?, ?)");
    this.setApplied = this.db.prepare("INSERT OR REPLACE INTO applied (id, idx) VALUES (1, ?)");
    const row = this.db.prepare("SELECT idx FROM applied WHERE id = 1").safeIntegers().get() as
      | { idx: bigint }
      | undefined;
    this.applied = row?.idx ?? 0n;
  }

  applyBatch(entries: readonly ApplyEntry[]): Uint8Array[] {
    this.db.transaction(() => {
      for (const e of entries) this.insert.run(e.index, e.term, e.timestampMs, Buffer.from(e.command));
      const last = entries[entries.length - 1];
      if (last !== undefined) this.setApplied.run(last.index);
    })();
    const last = entries[entries.length - 1];
    if (last !== undefined) this.applied = last.index;
    return entries.map((e) => new TextEncoder().encode(`ok ${e.index}`));
  }

  appliedIndex(): bigint {
    return this.applied;
  }

  /** All applied commands in order. */
  commands(): { index: bigint; command: Buffer }[] {
    return (
      this.db.prepare("SELECT idx, cmd FROM log ORDER BY idx").safeIntegers().all() as {
        idx: bigint;
        cmd: Buffer;
      }[]
    ).map((r) => ({ index: r.idx, command: r.cmd }));
  }

  snapshot(): Uint8Array {
    const rows = this.commands().map((r) => [r.index.toString(), r.command.toString("base64")]);
    return new TextEncoder().encode(JSON.stringify(rows));
  }

  /**
   * The same image as snapshot(), built by a worker thread from a view pinned at appliedIndex().
   * The first call starts the worker and takes that one snapshot synchronously.
   */
  beginSnapshot(): SnapshotJob {
    const job = this.snapshots.begin(this.applied);
    return job ?? { index: this.applied, image: Promise.resolve(this.snapshot()) };
  }

  /** Starts the snapshot worker ahead of the first snapshot (otherwise the first one starts it). */
  startSnapshotWorker(): Promise<void> {
    return this.snapshots.start();
  }

  get snapshotWorkerReady(): boolean {
    return this.snapshots.isReady;
  }

  restore(image: Uint8Array, index: bigint): void {
    const rows =
      image.length === 0 ? [] : (JSON.parse(new TextDecoder().decode(image)) as [string, string][]);
    this.db.transaction(() => {
      this.db.exec("DELETE FROM log");
      for (const [i, c] of rows) this.insert.run(BigInt(i), 0n, 0, Buffer.from(c, "base64"));
      this.setApplied.run(index);
    })();
    this.applied = index;
  }

  close(): void {
    this.snapshots.close();
    this.files?.close();
    if (this.db.open) this.db.close();
  }
}
