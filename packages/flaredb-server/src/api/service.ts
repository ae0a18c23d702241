// The flaredb.v1 FlareDBService handlers. Writes, reads through the log, maintenance and restore are
// proposed through the Raft layer; other reads run on local state under the requested consistency.
// Requests are validated before proposing (statement rules, parameters, SQL syntax, sizes), so bad
// input costs no log entry and changes nothing; apply re-checks everything and is the authority.

import { Metadata, type ServerErrorResponse, status } from "@grpc/grpc-js";
import {
  ERROR_METADATA,
  grpcError,
  isMappedGrpcError,
  type MappedGrpcError,
  reusingEncoder,
} from "@photoncloud/daemon";
import { NotLeaderError, RaftError, raftErrorToGrpcStatus } from "@photoncloud/raft";
import Database from "better-sqlite3";
import { FlareDbError, fromSqliteError, grpcStatusOf } from "../errors.js";
import { Command, CommandResult } from "../gen/flaredb/v1/command.js";
import {
  BackupFormat,
  type BackupResponse,
  Consistency,
  type ExecuteRequest,
  type FlareDBServiceServer,
  type QueryRequest,
  type QueryResponse,
  type Statement,
} from "../gen/flaredb/v1/flaredb.js";
import { verifyBackup } from "../sql/backup.js";
import { checkParameters, inspectStatement, type StatementInfo } from "../sql/inspect.js";
import { backupInfo, type QueryRows, type SqlStateMachine } from "../sql/state-machine.js";
import { fromSqlValue, stripPrefix, toSqlValue } from "../sql/values.js";
import type { ReplicatedDb } from "./replicated-db.js";

export interface FlareDbServiceOptions {
  /** Largest encoded Execute command proposed to the log. */
  readonly requestBytesMax?: number;
  readonly statementsPerRequestMax?: number;
  readonly pageRowsDefault?: number;
  readonly pageRowsMax?: number;
  /** Largest backup accepted by Restore (it travels through the log as one entry). */
  readonly restoreBytesMax?: number;
  readonly backupChunkBytes?: number;
  readonly schemaHistoryLimitMax?: number;
}

const defaults = {
  requestBytesMax: 4 * 1024 * 1024,
  statementsPerRequestMax: 1000,
  pageRowsDefault: 500,
  pageRowsMax: 10_000,
  restoreBytesMax: 64 * 1024 * 1024,
  backupChunkBytes: 1024 * 1024,
  schemaHistoryLimitMax: 10_000,
};

export function createFlareDbService(
  sm: SqlStateMachine,
  replicated: ReplicatedDb,
  options: FlareDbServiceOptions = {},
): FlareDBServiceServer {
  const o = { ...defaults, ...options };
  const api = new FlareDbApi(sm, replicated, o);
  return {
    execute: (call, callback) => settle(api.execute(call.request), callback),
    query: (call) => streamed(call, () => api.query(call.request, (page) => write(call, page))),
    backup: (call) =>
      streamed(call, () => api.backup(call.request.format, call.request.consistency, (m) => write(call, m))),
    restore: (call, callback) => settle(api.restore(collect(call, o.restoreBytesMax)), callback),
    maintenanceBegin: (call, callback) =>
      settle(
        api
          .propose({ maintenanceBegin: call.request })
          .then((r) => ({ state: r.result.maintenance, raftIndex: r.index })),
        callback,
      ),
    maintenanceEnd: (_call, callback) =>
      settle(
        api
          .propose({ maintenanceEnd: {} })
          .then((r) => ({ state: r.result.maintenance, raftIndex: r.index })),
        callback,
      ),
    maintenanceStatus: (_call, callback) =>
      settle(
        Promise.resolve().then(() =>
          replicated.serializableRead(() => ({
            state: sm.maintenanceState(),
            appliedIndex: sm.appliedIndex(),
          })),
        ),
        callback,
      ),
    schemaHistory: (call, callback) => {
      const limit = Math.min(call.request.limit || 1000, o.schemaHistoryLimitMax);
      settle(
        replicated.linearizableRead(() => ({ changes: sm.schemaHistory(call.request.afterIndex, limit) })),
        callback,
      );
    },
  };
}

const checkedTextsMax = 1024;

/** A connection without the schema: SQL that fails to prepare here with a syntax error is refused early. */
let scratchConnection: Database.Database | undefined;
function scratch(): Database.Database {
  scratchConnection ??= new Database(":memory:");
  return scratchConnection;
}

/** Every proposal is encoded here: one writer reused (see reusingEncoder). */
const encodeCommand = reusingEncoder(Command);

class FlareDbApi {
  constructor(
    private readonly sm: SqlStateMachine,
    private readonly replicated: ReplicatedDb,
    private readonly o: typeof defaults,
  ) {}

  async execute(req: ExecuteRequest) {
    if (req.statements.length === 0) {
      throw new FlareDbError(
        "FLAREDB_EMPTY_REQUEST",
        "ExecuteRequest.statements is empty; give at least one",
      );
    }
    if (req.statements.length > this.o.statementsPerRequestMax) {
      throw new FlareDbError(
        "FLAREDB_REQUEST_TOO_LARGE",
        `${req.statements.length} statements exceed the limit of ${this.o.statementsPerRequestMax} per request; split the batch`,
      );
    }
    req.statements.forEach((st, i) => {
      try {
        this.precheck(st);
      } catch (err) {
        throw err instanceof FlareDbError ? err.at(i) : err;
      }
    });
    const { result, index } = await this.propose({ execute: req });
    return result.execute ?? { results: [], raftIndex: index };
  }

  /** Statement texts that passed the rules and the syntax check, with their inspection (bounded). */
  private readonly checked = new Map<string, StatementInfo>();

  /** Statement rules, parameters and syntax, checked without touching the database. */
  precheck(st: Statement | undefined): StatementInfo {
    if (st === undefined) throw new FlareDbError("FLAREDB_EMPTY_REQUEST", "the statement is missing");
    const info = this.checked.get(st.sql) ?? this.inspectText(st.sql);
    checkParameters(
      info,
      st.positional.length,
      st.named.map((n) => stripPrefix(n.name)),
    );
    return info;
  }

  /**
   * Inspects new statement text and prepares it on the schema-less scratch connection. The result
   * is cached per text: applications repeat the same statements, and a failed prepare (any real
   * table is missing there) costs two exception objects per request.
   */
  private inspectText(sql: string): StatementInfo {
    const info = inspectStatement(sql);
    try {
      scratch().prepare(info.sql);
    } catch (err) {
      const domain = fromSqliteError(err);
      if (domain.code === "FLAREDB_SQL_SYNTAX") throw domain;
      // Anything else (no such table, no such function) depends on the schema: apply decides.
    }
    if (this.checked.size >= checkedTextsMax) this.checked.delete(this.checked.keys().next().value!);
    this.checked.set(sql, info);
    return info;
  }

  async propose(
    command: Command,
    bytesMax = this.o.requestBytesMax,
  ): Promise<{ result: CommandResult; index: bigint }> {
    const bytes = encodeCommand(command);
    if (bytes.length > bytesMax) {
      throw new FlareDbError(
        "FLAREDB_REQUEST_TOO_LARGE",
        `the request is ${bytes.length} bytes, over the limit of ${bytesMax}; split it into smaller batches`,
      );
    }
    const { result, index } = await this.replicated.propose(bytes);
    const decoded = CommandResult.decode(result);
    if (decoded.error !== undefined) {
      const e = decoded.error;
      throw new FlareDbError(e.code as FlareDbError["code"], e.message, e.statementIndex);
    }
    return { result: decoded, index };
  }

  async query(req: QueryRequest, send: (page: QueryResponse) => Promise<void>): Promise<void> {
    const info = this.precheck(req.statement);
    if (info.ddl || ["INSERT", "REPLACE", "UPDATE", "DELETE"].includes(info.kind)) {
      throw new FlareDbError(
        "FLAREDB_WRITE_IN_QUERY",
        `Query accepts only statements that read (this one is ${info.kind}); send writes with Execute`,
      );
    }
    const rows = await this.readRows(req);
    const pageRows = Math.min(req.pageRows || this.o.pageRowsDefault, this.o.pageRowsMax);
    let offset = 0;
    do {
      const slice = rows.rows.slice(offset, offset + pageRows);
      offset += pageRows;
      await send({
        columns: offset === pageRows ? rows.columns : [],
        rows: slice.map((r) => ({ values: r.map(fromSqlValue) })),
        appliedIndex: rows.appliedIndex,
        last: offset >= rows.rows.length,
      });
    } while (offset < rows.rows.length);
  }

  private async readRows(req: QueryRequest): Promise<QueryRows> {
    const st = req.statement!;
    const local = () => this.sm.withLocalContext(() => this.sm.queryRows(st));
    switch (req.consistency) {
      case Consistency.CONSISTENCY_STRONG: {
        const { result, index } = await this.propose({ query: req });
        const q = result.query ?? { columns: [], rows: [] };
        return { columns: q.columns, rows: q.rows.map((r) => r.values.map(toSqlValue)), appliedIndex: index };
      }
      case Consistency.CONSISTENCY_LINEARIZABLE:
        return this.replicated.linearizableRead(local);
      case Consistency.CONSISTENCY_NONE:
        this.checkFreshness(Number(req.freshnessMs));
        return this.replicated.serializableRead(local);
      default:
        this.checkLeader();
        return this.replicated.serializableRead(local);
    }
  }

  private checkLeader(): void {
    if (this.replicated.isLeader()) return;
    const hint = this.replicated.leaderHint?.();
    throw new FlareDbError(
      "FLAREDB_NOT_LEADER",
      `WEAK reads are served by the leader and this member is not the leader${hint ? ` (leader: ${hint})` : ""}; retry there, or use LINEARIZABLE or NONE`,
    );
  }

  private checkFreshness(boundMs: number): void {
    if (boundMs <= 0) return;
    const lag = this.replicated.lastContactMs();
    if (lag > boundMs) {
      throw new FlareDbError(
        "FLAREDB_STALE_READ",
        `this member last heard from the leader ${Number.isFinite(lag) ? `${Math.round(lag)} ms` : "never"} ago, beyond freshness_ms=${boundMs}; retry elsewhere or raise the bound`,
      );
    }
  }

  async backup(format: BackupFormat, consistency: Consistency, send: (m: BackupResponse) => Promise<void>) {
    const fmt = format === BackupFormat.BACKUP_FORMAT_SQLITE ? "sqlite" : "sql";
    const take = () => this.sm.backup(fmt);
    if (consistency === Consistency.CONSISTENCY_WEAK) this.checkLeader();
    const local =
      consistency === Consistency.CONSISTENCY_NONE || consistency === Consistency.CONSISTENCY_WEAK;
    const { bytes, facts } = local
      ? this.replicated.serializableRead(take)
      : await this.replicated.linearizableRead(take);
    for (let offset = 0; offset < bytes.length; offset += this.o.backupChunkBytes) {
      const end = Math.min(bytes.length, offset + this.o.backupChunkBytes);
      await send({ data: bytes.subarray(offset, end), info: undefined });
    }
    await send({ data: Buffer.alloc(0), info: backupInfo(facts) });
  }

  async restore(upload: Promise<Buffer>) {
    const bytes = await upload;
    const verified = verifyBackup(bytes);
    const localState = this.replicated.serializableRead(() => ({
      empty: this.sm.isEmpty(),
      maintenance: this.sm.maintenanceState().open,
    }));
    if (!localState.empty && !localState.maintenance) {
      throw new FlareDbError(
        "FLAREDB_RESTORE_NOT_EMPTY",
        "restore replaces the whole database and is refused while it holds tables (rule: restore into a fresh cluster, or inside a maintenance window opened with `flaredbctl maintenance begin --backup <file>`)",
      );
    }
    // A restore is one entry by design (all members switch content at one index); its own bound applies.
    const { result, index } = await this.propose(
      { restore: { backup: bytes } },
      this.o.restoreBytesMax + 1024,
    );
    return { info: result.restored ?? backupInfo(verified), raftIndex: index };
  }
}

/**
 * The one mapping from errors to gRPC status for this server. The result is marked as mapped for the
 * daemon kit (which would otherwise report it as INTERNAL) and carries the stable code in the
 * `x-photon-error-code` metadata; a Raft "not leader" error also carries the leader's ID.
 */
export function toServiceError(err: unknown): MappedGrpcError {
  const metadata = new Metadata();
  if (err instanceof FlareDbError) {
    metadata.set(ERROR_METADATA.code, err.code);
    return grpcError(grpcStatusOf(err.code), `${err.code}: ${err.message}`, metadata);
  }
  if (err instanceof RaftError) {
    metadata.set(ERROR_METADATA.code, err.code);
    if (err instanceof NotLeaderError && err.leader !== 0n)
      metadata.set(ERROR_METADATA.leaderId, err.leader.toString(16));
    const { code } = raftErrorToGrpcStatus(err);
    return grpcError(code === status.OK ? status.INTERNAL : code, `${err.code}: ${err.message}`, metadata);
  }
  if (isMappedGrpcError(err)) return err;
  metadata.set(ERROR_METADATA.code, "INTERNAL");
  return grpcError(status.INTERNAL, "internal error in flaredb; see the server log", metadata);
}

function settle<T>(
  work: Promise<T> | T,
  callback: (err: Partial<ServerErrorResponse> | null, value?: T) => void,
): void {
  Promise.resolve()
    .then(() => work)
    .then(
      (value) => callback(null, value),
      (err) => callback(toServiceError(err)),
    );
}

interface WritableCall<T> {
  write(message: T): boolean;
  once(event: "drain", listener: () => void): unknown;
  end(metadata?: Metadata): void;
  destroy(error?: Error): void;
  emit(event: "error", error: Partial<ServerErrorResponse>): boolean;
}

/** Writes one message, waiting for the transport to drain when its buffer is full (bounded memory). */
function write<T>(call: WritableCall<T>, message: T): Promise<void> {
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve) => call.once("drain", () => resolve()));
}

function streamed<T>(call: WritableCall<T>, run: () => Promise<void>): void {
  Promise.resolve()
    .then(run)
    .then(
      () => call.end(),
      (err) => call.emit("error", toServiceError(err)),
    );
}

interface ReadableCall {
  on(event: "data", listener: (m: { data: Uint8Array }) => void): unknown;
  on(event: "end" | "error", listener: (e?: unknown) => void): unknown;
}

/** Collects a client stream of chunks, refusing more than `bytesMax` in total. */
function collect(call: ReadableCall, bytesMax: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let failed = false;
    call.on("data", (m) => {
      if (failed) return;
      total += m.data.length;
      if (total > bytesMax) {
        failed = true;
        reject(
          new FlareDbError(
            "FLAREDB_REQUEST_TOO_LARGE",
            `the backup is over the restore limit of ${bytesMax} bytes; raise the server's restore limit`,
          ),
        );
        return;
      }
      chunks.push(Buffer.from(m.data));
    });
    call.on("end", () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    call.on("error", (e) => {
      if (!failed) reject(e);
    });
  });
}
