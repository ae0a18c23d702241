// What flaredbctl does, independent of how it was asked (command line or shell): run SQL, take and
// load backups, and print the answers.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { syncFolder } from "@photoncloud/raft";
import { SingleBar } from "cli-progress";
import {
  BackupFormat,
  type BackupInfo,
  type Column,
  Consistency,
  type ExecuteResponse,
  type QueryResponse,
  type RestoreRequest,
  type RestoreResponse,
  type Statement,
  type Value,
} from "../gen/flaredb/v1/flaredb.js";
import { verifyBackup } from "../sql/backup.js";
import { inspectStatement } from "../sql/inspect.js";
import { splitStatements } from "../sql/tokenizer.js";
import { type FlareDbConnection, writeChunk } from "./client.js";
import { cellText, formatBytes, renderTable, splitParams, toJson } from "./format.js";

export type OutputFormat = "table" | "json";

export const consistencyNames = ["none", "weak", "linearizable", "strong"] as const;
export type ConsistencyName = (typeof consistencyNames)[number];
const consistencyByName: Record<ConsistencyName, Consistency> = {
  none: Consistency.CONSISTENCY_NONE,
  weak: Consistency.CONSISTENCY_WEAK,
  linearizable: Consistency.CONSISTENCY_LINEARIZABLE,
  strong: Consistency.CONSISTENCY_STRONG,
};

export interface SqlOptions {
  params?: readonly string[];
  /** Set: every statement is sent to Query with this level (a write is then refused by the server). */
  consistency?: ConsistencyName;
  /** Level of the reads of a script when `consistency` is not set (default linearizable). */
  readConsistency?: ConsistencyName;
  freshnessMs?: number;
  /** All statements in one all-or-nothing Execute. */
  tx?: boolean;
}

export type SqlOutcome =
  | { kind: "rows"; sql: string; columns: Column[]; rows: Value[][]; appliedIndex: bigint }
  | { kind: "exec"; sqls: string[]; response: ExecuteResponse };

const readKinds = new Set(["SELECT", "VALUES", "WITH", "EXPLAIN"]);

/** True for statements Query serves; anything unclear goes to Execute, whose server decides. */
export function isRead(sql: string): boolean {
  try {
    const info = inspectStatement(sql);
    return !info.ddl && (readKinds.has(info.kind) || info.kind.startsWith("PRAGMA "));
  } catch {
    return false;
  }
}

/** Runs a script: consecutive writes as one Execute, each read as a Query. */
export async function runSql(
  conn: FlareDbConnection,
  text: string,
  o: SqlOptions = {},
): Promise<SqlOutcome[]> {
  const sqls = splitStatements(text);
  if (sqls.length === 0) throw new Error("no SQL statement given");
  const { positional, named } = splitParams(o.params ?? []);
  if ((positional.length > 0 || named.length > 0) && sqls.length > 1) {
    throw new Error(`--param binds one statement, but ${sqls.length} were given; run them one at a time`);
  }
  const statement = (sql: string): Statement => ({ sql, positional, named });
  if (o.tx) {
    if (o.consistency !== undefined) throw new Error("--tx and --consistency do not go together");
    return [await execute(conn, sqls.map(statement), true)];
  }
  const out: SqlOutcome[] = [];
  let writes: string[] = [];
  const flush = async () => {
    if (writes.length > 0) out.push(await execute(conn, writes.map(statement), false));
    writes = [];
  };
  for (const sql of sqls) {
    if (o.consistency === undefined && !isRead(sql)) {
      writes.push(sql);
      continue;
    }
    await flush();
    const level = o.consistency ?? o.readConsistency ?? "linearizable";
    out.push(await query(conn, statement(sql), level, o.freshnessMs ?? 0));
  }
  await flush();
  return out;
}

async function execute(conn: FlareDbConnection, statements: Statement[], tx: boolean): Promise<SqlOutcome> {
  const response = await conn.unary((e) => ({ client: e.db, fn: e.db.execute }), {
    statements,
    transaction: tx,
  });
  return { kind: "exec", sqls: statements.map((s) => s.sql), response };
}

export async function query(
  conn: FlareDbConnection,
  statement: Statement,
  consistency: ConsistencyName,
  freshnessMs = 0,
): Promise<SqlOutcome & { kind: "rows" }> {
  let columns: Column[] = [];
  const rows: Value[][] = [];
  let appliedIndex = 0n;
  await conn.serverStream<QueryResponse>(
    (e) =>
      e.db.query({
        statement,
        consistency: consistencyByName[consistency],
        freshnessMs: BigInt(freshnessMs),
        pageRows: 0,
      }),
    (page) => {
      if (page.columns.length > 0) columns = page.columns;
      for (const r of page.rows) rows.push(r.values);
      appliedIndex = page.appliedIndex;
    },
  );
  return { kind: "rows", sql: statement.sql, columns, rows, appliedIndex };
}

/** Prints outcomes as tables (with a summary line) or as one JSON document. */
export function renderOutcomes(outcomes: readonly SqlOutcome[], format: OutputFormat): string {
  if (format === "json") return toJson(outcomes.map(jsonOutcome));
  return outcomes.map(tableOutcome).join("\n");
}

function jsonOutcome(o: SqlOutcome): unknown {
  if (o.kind === "rows") {
    const names = o.columns.map((c) => c.name);
    return {
      columns: o.columns.map((c) => ({ name: c.name, declaredType: c.declaredType })),
      rows: o.rows.map((r) => Object.fromEntries(names.map((n, i) => [n, jsonValue(r[i])]))),
      appliedIndex: o.appliedIndex,
    };
  }
  return {
    results: o.response.results.map((r, i) => ({
      sql: o.sqls[i],
      rowsAffected: r.rowsAffected,
      lastInsertId: r.lastInsertId,
      ...(r.error ? { error: { code: r.error.code, message: r.error.message } } : {}),
    })),
    raftIndex: o.response.raftIndex,
  };
}

function jsonValue(v: Value | undefined): unknown {
  if (v === undefined || v.nullValue) return null;
  if (v.intValue !== undefined) return v.intValue;
  if (v.realValue !== undefined) return v.realValue;
  if (v.textValue !== undefined) return v.textValue;
  if (v.blobValue !== undefined) return Buffer.from(v.blobValue);
  return null;
}

function tableOutcome(o: SqlOutcome): string {
  if (o.kind === "rows") {
    const headers = o.columns.map((c) => c.name);
    const body = o.rows.map((r) => headers.map((_, i) => cellText(r[i])));
    const n = o.rows.length;
    return `${renderTable(headers, body)}\n(${n} row${n === 1 ? "" : "s"}, applied index ${o.appliedIndex})`;
  }
  const failed = o.response.results.filter((r) => r.error !== undefined).length;
  const lines = o.response.results.map((r, i) => {
    const what = (o.sqls[i] ?? "").split("\n")[0]!.slice(0, 60);
    if (r.error) return `✗ ${what}\n  ${r.error.code}: ${r.error.message}`;
    const id = r.lastInsertId !== 0n ? `, last insert id ${r.lastInsertId}` : "";
    return `✓ ${what} — ${r.rowsAffected} row${r.rowsAffected === 1n ? "" : "s"} affected${id}`;
  });
  const summary = failed > 0 ? `${failed} statement(s) failed and changed nothing` : "OK";
  return `${lines.join("\n")}\n(${summary}, raft index ${o.response.raftIndex})`;
}

/** Any failed statement inside an Execute answer (used for the exit status). */
export function anyStatementFailed(outcomes: readonly SqlOutcome[]): boolean {
  return outcomes.some((o) => o.kind === "exec" && o.response.results.some((r) => r.error !== undefined));
}

function progressBar(what: string, total: number): SingleBar | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = new SingleBar({
    format: `${what} [{bar}] {percentage}% | {value_h} of {total_h}`,
    stream: process.stderr,
    hideCursor: true,
    formatValue: (v, _o, type) => (type === "value" || type === "total" ? formatBytes(v) : String(v)),
  });
  bar.start(Math.max(total, 1), 0, { value_h: formatBytes(0), total_h: formatBytes(total) });
  return bar;
}

/** Streams a backup into `file` (written to `file.part`, verified, then renamed into place). */
export async function backupTo(
  conn: FlareDbConnection,
  file: string,
  format: "sql" | "sqlite",
  consistency: ConsistencyName = "linearizable",
): Promise<BackupInfo> {
  const estimate = await conn
    .unary((e) => ({ client: e.cluster, fn: e.cluster.status }), {})
    .then((s) => Number(s.dbSizeBytes))
    .catch(() => 0);
  const part = `${file}.part`;
  const fd = openSync(part, "w", 0o600);
  let info: BackupInfo | undefined;
  let written = 0;
  const bar = progressBar("backup ", estimate);
  try {
    await conn.serverStream(
      (e) =>
        e.db.backup({
          format: format === "sqlite" ? BackupFormat.BACKUP_FORMAT_SQLITE : BackupFormat.BACKUP_FORMAT_SQL,
          consistency: consistencyByName[consistency],
        }),
      (m) => {
        if (m.data.length > 0) writeSync(fd, m.data);
        written += m.data.length;
        if (bar && written > bar.getTotal()) bar.setTotal(written);
        bar?.update(written, { value_h: formatBytes(written), total_h: formatBytes(bar.getTotal()) });
        if (m.info !== undefined) info = m.info;
      },
    );
  } catch (err) {
    closeSync(fd);
    rmSync(part, { force: true });
    throw err;
  } finally {
    bar?.stop();
  }
  if (info === undefined) {
    closeSync(fd);
    rmSync(part, { force: true });
    throw new Error("the backup stream ended without its closing BackupInfo message; nothing was written");
  }
  // Durable before it takes the final name, and the name durable before the backup is reported
  // made: a power loss never leaves a partial file under `file`, nor loses a finished one.
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  verifyBackup(readFileSync(part)); // the file on disk is what a restore will read
  renameSync(part, file);
  syncFolder(dirname(file));
  return info;
}

/** Verifies `file` locally, then streams it to Restore. A corrupt file is refused before any byte is sent. */
export async function restoreFrom(conn: FlareDbConnection, file: string): Promise<RestoreResponse> {
  const bytes = readFileSync(file);
  verifyBackup(bytes);
  const chunkBytes = 256 * 1024;
  const bar = progressBar("restore", bytes.length);
  try {
    return await conn.clientStream<RestoreRequest, RestoreResponse>(
      (e, cb) => e.db.restore(cb),
      async (stream) => {
        for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
          const data = bytes.subarray(offset, Math.min(bytes.length, offset + chunkBytes));
          await writeChunk(stream, { data });
          bar?.update(offset + data.length, {
            value_h: formatBytes(offset + data.length),
            total_h: formatBytes(bytes.length),
          });
        }
        stream.end();
      },
    );
  } finally {
    bar?.stop();
  }
}

export function describeBackup(info: BackupInfo, format: OutputFormat): string {
  if (format === "json") return toJson(info);
  return renderTable(
    ["format", "applied index", "size", "content sha256", "file sha256"],
    [
      [
        info.format === BackupFormat.BACKUP_FORMAT_SQLITE ? "sqlite" : "sql",
        String(info.appliedIndex),
        formatBytes(Number(info.sizeBytes)),
        info.contentSha256,
        info.fileSha256,
      ],
    ],
  );
}
