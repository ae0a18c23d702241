// The flaredb state machine: applies replicated SQL to one SQLite database (better-sqlite3).
//
// applyBatch runs all its entries in ONE SQLite transaction (one fsync per batch) with a savepoint
// per entry, so an entry that fails is undone alone and reported as its result; the applied index is
// written in the same transaction. Every entry runs under a DeterminismContext built from the entry's
// timestamp and seed, so every member computes the same bytes.

import { randomBytes } from "node:crypto";
import {
  type ApplyEntry,
  DatabaseStillOpenError,
  discardInterruptedReplace,
  type SnapshotJob,
  replaceDatabaseFile,
  rollbackJournalCopy,
  SnapshotWorker,
  type StateMachine,
  WalFileSync,
  WalCheckpointer,
} from "@photoncloud/raft";
import Database from "better-sqlite3";
import { FlareDbError, fromSqliteError } from "../errors.js";
import { Command, CommandResult, type QueryResult, type RestoreCommand } from "../gen/flaredb/v1/command.js";
import { reusingEncoder } from "@photoncloud/daemon";
import type {
  BackupInfo,
  ExecuteRequest,
  ExecuteResponse,
  MaintenanceBeginRequest,
  MaintenanceState,
  SchemaChange,
  Statement,
  StatementResult,
} from "../gen/flaredb/v1/flaredb.js";
import {
  type BackupFacts,
  contentSha256,
  historyTable,
  sqlBackup,
  sqliteBackup,
  verifyBackup,
} from "./backup.js";
import { DeterminismContext, installDeterministicFunctions, NowCache } from "./determinism.js";
import { checkParameters, inspectStatement, internalTablePrefix, type StatementInfo } from "./inspect.js";
import { splitStatements } from "./tokenizer.js";
import { fromSqlValue, namedObject, stripPrefix, toSqlValue } from "./values.js";

export interface SqlStateMachineOptions {
  /** The database file. */
  readonly path: string;
  /** FULL (default) makes every applied batch durable; NORMAL relies on the Raft log for re-delivery. */
  readonly synchronous?: "full" | "normal";
  /** Prepared statements kept per connection. */
  readonly statementCacheMax?: number;
  /** Most rows one query may return (through the log or locally); beyond it the query fails. */
  readonly resultRowsMax?: number;
  /** Checkpoint the database's WAL from a worker thread (see WalCheckpointer); the daemon does. */
  readonly backgroundCheckpoints?: boolean;
}

export interface QueryRows {
  columns: { name: string; declaredType: string }[];
  rows: unknown[][];
  appliedIndex: bigint;
}

const metaTable = `${internalTablePrefix}meta`;
const dmlKinds = new Set(["INSERT", "REPLACE", "UPDATE", "DELETE", "WITH"]);
const insertKinds = new Set(["INSERT", "REPLACE"]);
/** SQLite errors that mean the database itself is unusable: apply must stop, not report and go on. */
const fatalSqliteCodes = /^SQLITE_(IOERR|FULL|CORRUPT|NOMEM|CANTOPEN|NOTADB|READONLY|PROTOCOL)/;

interface Prepared {
  info: StatementInfo;
  stmt: Database.Statement;
}

/**
 * Transaction control, prepared once per connection: exec() would parse the text again on every
 * entry and statement, and apply runs several of these per entry.
 */
interface Control {
  begin: Database.Statement;
  commit: Database.Statement;
  rollback: Database.Statement;
  entrySavepoint: Database.Statement;
  entryRelease: Database.Statement;
  entryRollback: Database.Statement;
  stmtSavepoint: Database.Statement;
  stmtRelease: Database.Statement;
  stmtRollback: Database.Statement;
}

function prepareControl(db: Database.Database): Control {
  return {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    entrySavepoint: db.prepare("SAVEPOINT entry"),
    entryRelease: db.prepare("RELEASE entry"),
    entryRollback: db.prepare("ROLLBACK TO entry"),
    stmtSavepoint: db.prepare("SAVEPOINT stmt"),
    stmtRelease: db.prepare("RELEASE stmt"),
    stmtRollback: db.prepare("ROLLBACK TO stmt"),
  };
}

/** Every applied entry's result is encoded here: one writer reused (see reusingEncoder). */
const encodeResult = reusingEncoder(CommandResult);
const NO_RESULT = new Uint8Array(0);

export class SqlStateMachine implements StateMachine {
  private db!: Database.Database;
  private setAppliedStmt!: Database.Statement;
  private control!: Control;
  private readonly builtin: Database.Database;
  private ctx: DeterminismContext;
  /** Shared by the entries applied here (reads outside the log use their own). */
  private readonly applyNow = new NowCache();
  private readonly cache = new Map<string, Prepared>();
  private applied = 0n;
  private readonly statementCacheMax: number;
  readonly resultRowsMax: number;
  /** Takes snapshots off the event loop once `startSnapshotWorker` was called (file databases only). */
  private readonly snapshots: SnapshotWorker | null;
  /** Checkpoints the database's WAL from a worker thread, when asked for (see WalCheckpointer). */
  private checkpointer: WalCheckpointer | null = null;
  /** Syncs the database's WAL off the event loop (null for an in-memory database). */
  private files: WalFileSync | null = null;

  constructor(private readonly options: SqlStateMachineOptions) {
    this.statementCacheMax = options.statementCacheMax ?? 512;
    this.resultRowsMax = options.resultRowsMax ?? 100_000;
    this.builtin = new Database(":memory:");
    this.ctx = readContext();
    this.snapshots =
      options.path === ":memory:"
        ? null
        : new SnapshotWorker({
            path: options.path,
            appliedSql: `SELECT applied_index AS idx FROM ${metaTable}`,
          });
    // A restore a crash interrupted leaves no trustworthy file: the machine starts empty and the
    // Raft layer installs its stored snapshot again (see discardInterruptedReplace).
    if (options.path !== ":memory:") discardInterruptedReplace(options.path);
    this.open();
  }

  /** Opens the database file, or (in memory) an empty database or a restored image. */
  private open(source: string | Buffer = this.options.path): void {
    const db = new Database(source);
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${this.options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
    db.defaultSafeIntegers(true);
    installDeterministicFunctions(db, this.builtin, () => this.ctx);
    db.exec(`CREATE TABLE IF NOT EXISTS ${metaTable} (
      id INTEGER PRIMARY KEY CHECK (id = 1), applied_index INTEGER NOT NULL,
      maintenance_open INTEGER NOT NULL DEFAULT 0, opened_at_index INTEGER, opened_at_ms INTEGER,
      backup_applied_index INTEGER, backup_content_sha256 TEXT, reason TEXT)`);
    db.exec(`INSERT OR IGNORE INTO ${metaTable}(id, applied_index) VALUES (1, 0)`);
    db.exec(`CREATE TABLE IF NOT EXISTS ${historyTable} (
      id INTEGER PRIMARY KEY, raft_index INTEGER NOT NULL, applied_at_ms INTEGER NOT NULL,
      kind TEXT NOT NULL, statement TEXT NOT NULL, maintenance INTEGER NOT NULL, destructive INTEGER NOT NULL)`);
    this.db = db;
    this.setAppliedStmt = db.prepare(`UPDATE ${metaTable} SET applied_index = ?`);
    this.control = prepareControl(db);
    this.cache.clear();
    this.applied = db.prepare(`SELECT applied_index FROM ${metaTable}`).pluck().get() as bigint;
    if (this.options.backgroundCheckpoints === true) this.checkpointer = new WalCheckpointer(db);
    if (this.options.path !== ":memory:") this.files = new WalFileSync(this.options.path);
  }

  /**
   * The background checkpoints stop first, so that this connection's close is the last one.
   * Returns whether the checkpointer's connection closed too: only then may the file be replaced.
   */
  private closeDb(): boolean {
    const checkpointerClosed = this.checkpointer?.close() ?? true;
    this.checkpointer = null;
    this.files?.close();
    this.files = null;
    this.db.close();
    return checkpointerClosed;
  }

  appliedIndex(): bigint {
    return this.applied;
  }

  applyBatch(entries: readonly ApplyEntry[]): Uint8Array[] {
    if (entries.length === 0) return [];
    let previous = this.applied;
    for (const e of entries) {
      if (e.index <= previous) throw new Error(`apply out of order: entry ${e.index} after ${previous}`);
      previous = e.index;
    }
    const results: Uint8Array[] = [];
    this.control.begin.run();
    try {
      for (const entry of entries) results.push(this.applyEntry(entry));
      this.setAppliedStmt.run(previous);
      this.control.commit.run();
    } catch (err) {
      if (this.db.inTransaction) this.control.rollback.run();
      throw err;
    } finally {
      this.ctx = readContext();
    }
    this.applied = previous;
    return results;
  }

  private applyEntry(entry: ApplyEntry): Uint8Array {
    this.ctx = new DeterminismContext(entry.timestampMs, entry.seed, this.applyNow);
    // An empty command is a no-op entry (e.g. a leader's first entry of its term).
    if (entry.command.length === 0) return new Uint8Array(0);
    let command: Command;
    try {
      command = Command.decode(entry.command);
    } catch (err) {
      return encodeError(
        new FlareDbError("FLAREDB_BAD_COMMAND", `undecodable command: ${(err as Error).message}`),
      );
    }
    const c = this.control;
    c.entrySavepoint.run();
    try {
      const result = this.dispatch(command, entry);
      c.entryRelease.run();
      // Nobody on this member waits for it (another member proposed the entry).
      return entry.resultWanted === false ? NO_RESULT : encodeResult(result);
    } catch (err) {
      if (!(err instanceof FlareDbError)) throw err;
      c.entryRollback.run();
      c.entryRelease.run();
      return encodeError(err);
    }
  }

  private dispatch(command: Command, entry: ApplyEntry): CommandResult {
    if (command.execute !== undefined) return { execute: this.executeBatch(command.execute, entry) };
    if (command.query?.statement !== undefined) {
      const q = this.queryRows(command.query.statement);
      return { query: { columns: q.columns, rows: q.rows.map((r) => ({ values: r.map(fromSqlValue) })) } };
    }
    if (command.maintenanceBegin !== undefined)
      return { maintenance: this.beginMaintenance(command.maintenanceBegin, entry) };
    if (command.maintenanceEnd !== undefined) return { maintenance: this.endMaintenance(entry) };
    if (command.restore !== undefined) return { restored: this.restoreBackup(command.restore, entry) };
    throw new FlareDbError("FLAREDB_BAD_COMMAND", "the command is empty or of an unknown kind");
  }

  private executeBatch(req: ExecuteRequest, entry: ApplyEntry): ExecuteResponse {
    if (req.statements.length === 0)
      throw new FlareDbError("FLAREDB_EMPTY_REQUEST", "ExecuteRequest.statements is empty");
    const results: StatementResult[] = [];
    const c = this.control;
    // A lone statement outside a transaction is undone by rolling back to the entry's savepoint
    // (still open: applyEntry releases it), which saves a savepoint of its own.
    const alone = !req.transaction && req.statements.length === 1;
    req.statements.forEach((st, i) => {
      if (req.transaction) {
        results.push(this.attributed(() => this.runStatement(st, entry), i));
        return;
      }
      // Without a transaction each statement stands alone: a failure undoes that statement only.
      if (!alone) c.stmtSavepoint.run();
      try {
        results.push(this.attributed(() => this.runStatement(st, entry), i));
        if (!alone) c.stmtRelease.run();
      } catch (err) {
        if (!(err instanceof FlareDbError)) throw err;
        if (alone) c.entryRollback.run();
        else {
          c.stmtRollback.run();
          c.stmtRelease.run();
        }
        results.push({ rowsAffected: 0n, lastInsertId: 0n, error: detailOf(err) });
      }
    });
    return { results, raftIndex: entry.index };
  }

  private attributed<T>(run: () => T, index: number): T {
    try {
      return run();
    } catch (err) {
      if (err instanceof FlareDbError) throw err.at(index);
      throw err;
    }
  }

  private runStatement(st: Statement, entry: ApplyEntry): StatementResult {
    const { info, stmt } = this.prepare(st.sql);
    if (info.destructive && !this.maintenanceOpen()) throw destructiveRefusal(info.kind);
    const params = bindParameters(info, st);
    let run: Database.RunResult;
    try {
      run = stmt.run(...params);
    } catch (err) {
      throw this.statementError(err);
    }
    // The connection's change count is left over from earlier statements for anything that did not
    // write; report 0 there so results are the same on every member.
    const changes = dmlKinds.has(info.kind) && !stmt.readonly ? BigInt(run.changes) : 0n;
    const lastInsertId = insertKinds.has(info.kind) && changes > 0n ? BigInt(run.lastInsertRowid) : 0n;
    if (dmlKinds.has(info.kind) && !stmt.readonly) {
      this.ctx.changes = changes;
      if (lastInsertId > 0n) this.ctx.lastInsertRowid = lastInsertId;
    }
    if (info.ddl) this.recordHistory(entry, info.kind, st.sql, info.destructive);
    return { rowsAffected: changes, lastInsertId, error: undefined };
  }

  /** Domain errors are reported; errors that mean the database is broken stop the member. */
  private statementError(err: unknown): FlareDbError {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && fatalSqliteCodes.test(code)) throw err;
    if (!this.db.inTransaction) throw new Error(`a statement ended the apply transaction: ${String(err)}`);
    return fromSqliteError(err);
  }

  /** Inspects and prepares `sql` (cached); throws FlareDbError for refused or invalid statements. */
  prepare(sql: string): Prepared {
    const hit = this.cache.get(sql);
    if (hit !== undefined) return hit;
    const info = inspectStatement(sql);
    let stmt: Database.Statement;
    try {
      stmt = this.db.prepare(info.sql);
    } catch (err) {
      throw fromSqliteError(err);
    }
    if (stmt.reader) stmt.raw(true);
    if (this.cache.size >= this.statementCacheMax)
      this.cache.delete(this.cache.keys().next().value as string);
    const prepared = { info, stmt };
    this.cache.set(sql, prepared);
    return prepared;
  }

  private recordHistory(entry: ApplyEntry, kind: string, statement: string, destructive: boolean): void {
    this.db
      .prepare(
        `INSERT INTO ${historyTable}(raft_index, applied_at_ms, kind, statement, maintenance, destructive)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(
        entry.index,
        BigInt(Math.trunc(entry.timestampMs)),
        kind,
        statement,
        this.maintenanceOpen() ? 1 : 0,
        destructive ? 1 : 0,
      );
  }

  /**
   * Runs a read-only statement and returns at most resultRowsMax rows. Used for reads through the
   * log (inside apply) and for local reads (outside apply, with the local clock and randomness).
   */
  queryRows(st: Statement): QueryRows {
    const { info, stmt } = this.prepare(st.sql);
    if (!stmt.readonly || !stmt.reader) {
      throw new FlareDbError(
        "FLAREDB_WRITE_IN_QUERY",
        `Query accepts only statements that read (this one is ${info.kind}); send writes with Execute`,
      );
    }
    const params = bindParameters(info, st);
    const columns = stmt.columns().map((c) => ({ name: c.name, declaredType: c.type ?? "" }));
    const rows: unknown[][] = [];
    try {
      for (const row of stmt.iterate(...params) as Iterable<unknown[]>) {
        if (rows.length >= this.resultRowsMax) {
          throw new FlareDbError(
            "FLAREDB_RESULT_TOO_LARGE",
            `the query returns more than ${this.resultRowsMax} rows; add LIMIT/OFFSET or a narrower WHERE`,
          );
        }
        rows.push(row);
      }
    } catch (err) {
      throw fromSqliteError(err);
    }
    return { columns, rows, appliedIndex: this.applied };
  }

  private maintenanceOpen(): boolean {
    return this.maintenanceState().open;
  }

  maintenanceState(): MaintenanceState {
    const row = this.db.prepare(`SELECT * FROM ${metaTable}`).get() as Record<string, bigint | string | null>;
    return {
      open: row["maintenance_open"] === 1n,
      openedAtIndex: (row["opened_at_index"] as bigint | null) ?? 0n,
      openedAtMs: (row["opened_at_ms"] as bigint | null) ?? 0n,
      backupAppliedIndex: (row["backup_applied_index"] as bigint | null) ?? 0n,
      backupContentSha256: (row["backup_content_sha256"] as string | null) ?? "",
      reason: (row["reason"] as string | null) ?? "",
    };
  }

  private beginMaintenance(req: MaintenanceBeginRequest, entry: ApplyEntry): MaintenanceState {
    if (this.maintenanceOpen()) {
      throw new FlareDbError(
        "FLAREDB_MAINTENANCE_ALREADY_OPEN",
        "a maintenance window is already open; end it with `flaredbctl maintenance end` first",
      );
    }
    const current = contentSha256(this.db);
    if (req.backupContentSha256 !== current || req.backupAppliedIndex > this.applied) {
      throw new FlareDbError(
        "FLAREDB_MAINTENANCE_STALE_BACKUP",
        `the backup (applied index ${req.backupAppliedIndex}, content ${req.backupContentSha256.slice(0, 12) || "none"}) does not match the current state (applied index ${this.applied}, content ${current.slice(0, 12)}) (rule: a maintenance window opens only against a fresh backup); take a new backup with \`flaredbctl backup <file>\` and retry \`flaredbctl maintenance begin --backup <file>\``,
      );
    }
    this.db
      .prepare(
        `UPDATE ${metaTable} SET maintenance_open = 1, opened_at_index = ?, opened_at_ms = ?,
         backup_applied_index = ?, backup_content_sha256 = ?, reason = ?`,
      )
      .run(
        entry.index,
        BigInt(Math.trunc(entry.timestampMs)),
        req.backupAppliedIndex,
        req.backupContentSha256,
        req.reason,
      );
    this.recordHistory(entry, "MAINTENANCE BEGIN", req.reason, false);
    return this.maintenanceState();
  }

  private endMaintenance(entry: ApplyEntry): MaintenanceState {
    if (!this.maintenanceOpen()) {
      throw new FlareDbError("FLAREDB_MAINTENANCE_NOT_OPEN", "no maintenance window is open");
    }
    this.recordHistory(entry, "MAINTENANCE END", "", false);
    this.db.exec(
      `UPDATE ${metaTable} SET maintenance_open = 0, opened_at_index = NULL, opened_at_ms = NULL,
       backup_applied_index = NULL, backup_content_sha256 = NULL, reason = NULL`,
    );
    return this.maintenanceState();
  }

  /** True when no user table, view, index or trigger exists (a fresh database). */
  isEmpty(): boolean {
    return userObjects(this.db).length === 0;
  }

  /** Replaces all user data with the backup's content, inside the apply transaction. */
  private restoreBackup(cmd: RestoreCommand, entry: ApplyEntry): BackupInfo {
    const backup = verifyBackup(cmd.backup);
    if (!this.isEmpty() && !this.maintenanceOpen()) {
      throw new FlareDbError(
        "FLAREDB_RESTORE_NOT_EMPTY",
        "restore replaces the whole database and is refused while it holds tables (rule: restore into a fresh cluster, or inside a maintenance window opened with `flaredbctl maintenance begin --backup <file>`)",
      );
    }
    for (const o of userObjects(this.db)) {
      if (o.type === "table") this.db.exec(`DROP TABLE IF EXISTS "${o.name.split('"').join('""')}"`);
      else if (o.type !== "index")
        this.db.exec(`DROP ${o.type.toUpperCase()} IF EXISTS "${o.name.split('"').join('""')}"`);
    }
    this.db.exec(`DELETE FROM ${historyTable}`);
    if (this.db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").get() !== undefined) {
      this.db.exec("DELETE FROM sqlite_sequence");
    }
    for (const statement of splitStatements(backup.body)) this.db.exec(statement);
    const facts = `format=${backup.format} applied_index=${backup.appliedIndex} content_sha256=${backup.contentSha256}`;
    this.recordHistory(entry, "RESTORE", facts, true);
    return backupInfo(backup);
  }

  /** The schema history, oldest first. */
  schemaHistory(afterIndex: bigint, limit: number): SchemaChange[] {
    const rows = this.db
      .prepare(`SELECT * FROM ${historyTable} WHERE raft_index > ? ORDER BY id LIMIT ?`)
      .all(afterIndex, limit) as Record<string, bigint | string>[];
    return rows.map((r) => ({
      raftIndex: r["raft_index"] as bigint,
      appliedAtMs: r["applied_at_ms"] as bigint,
      kind: r["kind"] as string,
      statement: r["statement"] as string,
      maintenance: r["maintenance"] === 1n,
      destructive: r["destructive"] === 1n,
    }));
  }

  backup(format: "sql" | "sqlite"): { bytes: Buffer; facts: BackupFacts } {
    return format === "sql" ? sqlBackup(this.db, this.applied) : sqliteBackup(this.db, this.applied);
  }

  snapshot(): Uint8Array {
    return this.db.serialize();
  }

  /**
   * Starts the thread that takes snapshots off the event loop (see `beginSnapshot`): serializing a
   * large database stalls every request on this member for as long as it takes.
   */
  async startSnapshotWorker(): Promise<void> {
    await this.snapshots?.start();
  }

  /** Whether `beginSnapshot` hands the work to the worker (it is running). */
  get snapshotsOffLoop(): boolean {
    return this.snapshots?.isReady === true;
  }

  /**
   * A snapshot at the applied index, produced off the event loop: the worker's own connection pins
   * a read view of the database (this call blocks only until it has; every applied batch is
   * already committed) and serializes it while later entries are applied here. Without a running
   * worker the snapshot is taken here and now.
   */
  beginSnapshot(): SnapshotJob {
    const job = this.snapshotsOffLoop ? this.snapshots?.begin(this.applied) : undefined;
    return job ?? { index: this.applied, image: Promise.resolve(this.snapshot()) };
  }

  /**
   * The database file is the snapshot the Raft layer records every interval (see
   * StateMachine.persist): every applied batch is already committed, so the file is synced, off the
   * event loop. An image (`beginSnapshot`) is made only for a follower that needs one.
   */
  persist(): Promise<void> | null {
    return this.files?.sync() ?? null;
  }

  restore(image: Uint8Array, index: bigint): void {
    const header = Buffer.from(image.buffer, image.byteOffset, Math.min(16, image.byteLength)).toString(
      "binary",
    );
    if (header !== "SQLite format 3\0") throw new Error("snapshot image is not a SQLite database");
    if (this.options.path === ":memory:") {
      this.closeDb();
      this.open(rollbackJournalCopy(image));
    } else {
      // Every connection to the file is closed before it is replaced: the snapshot worker's, the
      // background checkpointer's and the writer's.
      const workerClosed = this.snapshots?.suspend() ?? true;
      const checkpointerClosed = this.closeDb();
      if (!workerClosed || !checkpointerClosed) throw new DatabaseStillOpenError(this.options.path);
      // Never a torn file or the new image with the old WAL (see replaceDatabaseFile).
      replaceDatabaseFile(this.options.path, image);
      this.open();
    }
    this.setAppliedStmt.run(index);
    this.applied = index;
    this.snapshots?.resume();
  }

  close(): void {
    this.snapshots?.close();
    this.cache.clear();
    if (this.db.open) this.closeDb();
    if (this.builtin.open) this.builtin.close();
  }

  /** Runs `fn` with the local clock and fresh randomness (reads outside the log). */
  withLocalContext<T>(fn: () => T): T {
    this.ctx = readContext();
    return fn();
  }

  /** The underlying connection, for tests and tooling that compare replicas. */
  get database(): Database.Database {
    return this.db;
  }

  get path(): string {
    return this.options.path;
  }
}

/** The context of reads outside the log: this member's clock, fresh randomness drawn when used. */
function readContext(): DeterminismContext {
  return new DeterminismContext(Date.now(), () => randomBytes(8).readBigUInt64BE());
}

function userObjects(db: Database.Database): { type: string; name: string }[] {
  return db
    .prepare(
      `SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
       AND name NOT LIKE '\\_flaredb\\_%' ESCAPE '\\' ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END, rowid`,
    )
    .all() as { type: string; name: string }[];
}

function bindParameters(info: StatementInfo, st: Statement): unknown[] {
  checkParameters(
    info,
    st.positional.length,
    st.named.map((n) => stripPrefix(n.name)),
  );
  return info.names.length > 0 ? [namedObject(st.named)] : st.positional.map(toSqlValue);
}

export function destructiveRefusal(kind: string): FlareDbError {
  return new FlareDbError(
    "FLAREDB_SCHEMA_DESTRUCTIVE_DDL",
    `${kind} is refused outside a maintenance window (rule: additive-first schema evolution — new tables, nullable columns, indexes, views and triggers are applied online; DROP, RENAME and rewrites only in maintenance). The way through: take a fresh backup (\`flaredbctl backup <file>\`), open a window with \`flaredbctl maintenance begin --backup <file>\`, run the statement, then \`flaredbctl maintenance end\``,
  );
}

export function detailOf(err: FlareDbError): { code: string; message: string; statementIndex: number } {
  return { code: err.code, message: err.message, statementIndex: err.statementIndex };
}

function encodeError(err: FlareDbError): Uint8Array {
  return CommandResult.encode({ error: detailOf(err) }).finish();
}

function backupInfo(b: BackupFacts): BackupInfo {
  return {
    format: b.format === "sql" ? 1 : 2,
    appliedIndex: b.appliedIndex,
    contentSha256: b.contentSha256,
    fileSha256: b.fileSha256,
    sizeBytes: BigInt(b.sizeBytes),
  };
}

export { backupInfo, type QueryResult };
