import { credentials, Server, ServerCredentials, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createFlareDbService } from "../src/api/service.js";
import {
  type BackupResponse,
  BackupFormat,
  Consistency,
  type ExecuteResponse,
  FlareDBServiceClient,
  FlareDBServiceService,
  type MaintenanceBeginRequest,
  type MaintenanceBeginResponse,
  type MaintenanceEndResponse,
  type MaintenanceStatusResponse,
  type QueryRequest,
  type QueryResponse,
  type RestoreResponse,
  type SchemaHistoryResponse,
  type Statement,
} from "../src/gen/flaredb/v1/flaredb.js";
import { dumpBody } from "../src/sql/backup.js";
import type { SqlStateMachine } from "../src/sql/state-machine.js";
import { LocalReplicated } from "../src/testing/local-replicated.js";
import { cleanupDirs, stmt, tempMachine, v } from "./helpers.js";

interface Node {
  sm: SqlStateMachine;
  replicated: LocalReplicated;
  server: Server;
  client: FlareDBServiceClient;
}

async function start(options = {}): Promise<Node> {
  const sm = tempMachine();
  const replicated = new LocalReplicated(sm);
  const server = new Server();
  server.addService(FlareDBServiceService, createFlareDbService(sm, replicated, options));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const client = new FlareDBServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return { sm, replicated, server, client };
}

async function stop(node: Node): Promise<void> {
  node.client.close();
  await new Promise<void>((resolve) => node.server.tryShutdown(() => resolve()));
  node.sm.close();
}

/** Promisifies one unary call: `call<Res>((cb) => client.method(request, cb))`. */
function call<Res>(invoke: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res)));
  });
}

function execute(node: Node, statements: Statement[], transaction = false) {
  return call<ExecuteResponse>((cb) => node.client.execute({ statements, transaction }, cb));
}

function query(node: Node, req: Partial<QueryRequest>): Promise<QueryResponse[]> {
  const full: QueryRequest = { statement: undefined, consistency: 0, freshnessMs: 0n, pageRows: 0, ...req };
  return new Promise((resolve, reject) => {
    const pages: QueryResponse[] = [];
    const call = node.client.query(full);
    call.on("data", (p: QueryResponse) => pages.push(p));
    call.on("error", reject);
    call.on("end", () => resolve(pages));
  });
}

function backup(node: Node, format: BackupFormat): Promise<BackupResponse[]> {
  return new Promise((resolve, reject) => {
    const out: BackupResponse[] = [];
    const call = node.client.backup({ format, consistency: Consistency.CONSISTENCY_LINEARIZABLE });
    call.on("data", (m: BackupResponse) => out.push(m));
    call.on("error", reject);
    call.on("end", () => resolve(out));
  });
}

function restore(node: Node, bytes: Buffer, chunkBytes = 1000): Promise<RestoreResponse> {
  return new Promise((resolve, reject) => {
    const call = node.client.restore((err, res) => (err ? reject(err) : resolve(res)));
    for (let i = 0; i < bytes.length; i += chunkBytes)
      call.write({ data: bytes.subarray(i, i + chunkBytes) });
    call.end();
  });
}

async function expectError(p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  const err = (await p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: ServiceError) => e,
  )) as ServiceError;
  expect(err.code, err.details).toBe(code);
  expect(err.details).toMatch(message);
}

let node: Node;
beforeAll(async () => {
  node = await start({ requestBytesMax: 64 * 1024, pageRowsMax: 50 });
  await execute(node, [
    stmt("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, big INTEGER, r REAL, b BLOB)"),
  ]);
});
afterAll(async () => {
  await stop(node);
  cleanupDirs();
});
beforeEach(() => {
  node.replicated.leader = true;
  node.replicated.contactMs = 0;
});

describe("flaredb.v1 over gRPC", () => {
  it("executes writes with positional and named parameters and returns ids and the raft index", async () => {
    // Proves Execute's per-statement results, int64 as bigint, and named parameter binding.
    const res = await execute(node, [
      stmt(
        "INSERT INTO t(name, big, r, b) VALUES (?, ?, ?, ?)",
        "a",
        9223372036854775807n,
        0.5,
        Buffer.from([1, 2]),
      ),
      {
        sql: "INSERT INTO t(name, big) VALUES (:name, @big)",
        positional: [],
        named: [
          { name: ":name", value: v("b") },
          { name: "big", value: v(-9223372036854775808n) },
        ],
      },
    ]);
    expect(res.results.map((r) => [r.rowsAffected, r.lastInsertId, r.error])).toEqual([
      [1n, 1n, undefined],
      [1n, 2n, undefined],
    ]);
    expect(res.raftIndex).toBe(node.sm.appliedIndex());
    const pages = await query(node, {
      statement: stmt("SELECT name, big, r, b, NULL AS empty_value FROM t ORDER BY id"),
    });
    expect(pages[0]!.columns).toEqual([
      { name: "name", declaredType: "TEXT" },
      { name: "big", declaredType: "INTEGER" },
      { name: "r", declaredType: "REAL" },
      { name: "b", declaredType: "BLOB" },
      { name: "empty_value", declaredType: "" },
    ]);
    expect(pages[0]!.rows[0]!.values).toEqual([
      v("a"),
      v(9223372036854775807n),
      v(0.5),
      v(Buffer.from([1, 2])),
      { nullValue: true },
    ]);
    expect(pages[0]!.rows[1]!.values[1]).toEqual(v(-9223372036854775808n));
  });

  it("a failed transaction applies nothing and names the statement", async () => {
    // Proves all-or-nothing through the API, with FAILED_PRECONDITION for a constraint.
    const before = dumpBody(node.sm.database);
    await expectError(
      execute(
        node,
        [stmt("INSERT INTO t(name) VALUES ('tx1')"), stmt("INSERT INTO t(name) VALUES ('a')")],
        true,
      ),
      status.FAILED_PRECONDITION,
      /FLAREDB_SQL_CONSTRAINT: statement 1: UNIQUE constraint failed/,
    );
    expect(dumpBody(node.sm.database)).toBe(before);
  });

  it("streams large results in bounded pages", async () => {
    // Proves paging: columns once, every row once, `last` on the final page.
    const values = Array.from({ length: 120 }, (_, i) => `(${1000 + i}, 'p${i}')`).join(", ");
    await execute(node, [stmt(`INSERT INTO t(id, name) VALUES ${values}`)]);
    const pages = await query(node, {
      statement: stmt("SELECT id FROM t WHERE id >= 1000 ORDER BY id"),
      consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      pageRows: 1000,
    });
    expect(pages.map((p) => p.rows.length)).toEqual([50, 50, 20]);
    expect(pages.map((p) => p.last)).toEqual([false, false, true]);
    expect(pages[1]!.columns).toEqual([]);
    expect(pages.flatMap((p) => p.rows.map((r) => r.values[0]!.intValue))).toEqual(
      Array.from({ length: 120 }, (_, i) => BigInt(1000 + i)),
    );
  });

  it("serves each consistency level as documented", async () => {
    // Proves STRONG goes through the log, WEAK needs leadership, NONE honours the freshness bound.
    const q = stmt("SELECT count(*) FROM t");
    const indexBefore = node.sm.appliedIndex();
    const strong = await query(node, { statement: q, consistency: Consistency.CONSISTENCY_STRONG });
    expect(strong[0]!.appliedIndex).toBe(indexBefore + 1n);
    expect(node.sm.appliedIndex()).toBe(indexBefore + 1n);
    const none = await query(node, {
      statement: q,
      consistency: Consistency.CONSISTENCY_NONE,
      freshnessMs: 1000n,
    });
    expect(none[0]!.rows[0]!.values).toEqual(strong[0]!.rows[0]!.values);
    node.replicated.leader = false;
    await expectError(
      query(node, { statement: q, consistency: Consistency.CONSISTENCY_WEAK }),
      status.UNAVAILABLE,
      /FLAREDB_NOT_LEADER/,
    );
    node.replicated.contactMs = 5000;
    await expectError(
      query(node, { statement: q, consistency: Consistency.CONSISTENCY_NONE, freshnessMs: 1000n }),
      status.UNAVAILABLE,
      /FLAREDB_STALE_READ: this member last heard from the leader 5000 ms ago/,
    );
    const unbounded = await query(node, { statement: q, consistency: Consistency.CONSISTENCY_NONE });
    expect(unbounded[0]!.rows).toHaveLength(1);
  });

  it("refuses bad input with a clear error and applies nothing", async () => {
    // Proves syntax errors, parameter mismatches, multiple statements, oversize requests and writes sent to Query are refused before proposing.
    const index = node.sm.appliedIndex();
    const before = dumpBody(node.sm.database);
    const cases: [() => Promise<unknown>, status, RegExp][] = [
      [
        () => execute(node, [stmt("INSRT INTO t VALUES (1)")]),
        status.INVALID_ARGUMENT,
        /FLAREDB_SQL_SYNTAX: statement 0: near "INSRT": syntax error/,
      ],
      [
        () => execute(node, [stmt("SELECT 1"), stmt("INSERT INTO t(name) VALUES ('x'")]),
        status.INVALID_ARGUMENT,
        /statement 1: incomplete input/,
      ],
      [
        () => execute(node, [stmt("INSERT INTO t(name) VALUES (?)")]),
        status.INVALID_ARGUMENT,
        /FLAREDB_PARAMETER_MISMATCH: statement 0: the statement has 1 positional parameter\(s\) but 0/,
      ],
      [
        () => execute(node, [stmt("INSERT INTO t(name) VALUES (:n)", "x")]),
        status.INVALID_ARGUMENT,
        /named parameters \(:n\)/,
      ],
      [
        () => execute(node, [stmt("INSERT INTO t(name) VALUES ('x'); DELETE FROM t")]),
        status.INVALID_ARGUMENT,
        /FLAREDB_MULTIPLE_STATEMENTS: statement 0: expected one statement, found 2/,
      ],
      [
        () => execute(node, [stmt("INSERT INTO t(name) VALUES (?)", "x".repeat(70_000))]),
        status.RESOURCE_EXHAUSTED,
        /FLAREDB_REQUEST_TOO_LARGE/,
      ],
      [() => execute(node, []), status.INVALID_ARGUMENT, /FLAREDB_EMPTY_REQUEST/],
      [
        () => query(node, { statement: stmt("DELETE FROM t") }),
        status.INVALID_ARGUMENT,
        /FLAREDB_WRITE_IN_QUERY: Query accepts only statements that read \(this one is DELETE\)/,
      ],
      [
        () => query(node, { statement: stmt("WITH x AS (SELECT 1) DELETE FROM t") }),
        status.INVALID_ARGUMENT,
        /FLAREDB_WRITE_IN_QUERY/,
      ],
      [
        () => query(node, { statement: stmt("SELECT 1; SELECT 2") }),
        status.INVALID_ARGUMENT,
        /FLAREDB_MULTIPLE_STATEMENTS/,
      ],
      [
        () => query(node, { statement: stmt("SELECT * FROM missing") }),
        status.INVALID_ARGUMENT,
        /FLAREDB_SQL_EXECUTION: no such table: missing/,
      ],
      [
        () => execute(node, [stmt("PRAGMA synchronous = OFF")]),
        status.INVALID_ARGUMENT,
        /FLAREDB_STATEMENT_REFUSED: statement 0: PRAGMA synchronous is refused/,
      ],
      [
        () => execute(node, [stmt("DROP TABLE t")], true),
        status.FAILED_PRECONDITION,
        /FLAREDB_SCHEMA_DESTRUCTIVE_DDL: statement 0: DROP TABLE is refused outside a maintenance window/,
      ],
    ];
    for (const [call, code, message] of cases) await expectError(call(), code, message);
    // Only the DROP reached the log (the guard's authority is apply); it changed nothing.
    expect(node.sm.appliedIndex()).toBe(index + 1n);
    expect(dumpBody(node.sm.database)).toBe(before);
  });

  it("backs up, refuses corrupt uploads, and restores into a fresh member through the log", async () => {
    // Proves Backup streams a checksummed file, Restore verifies before proposing, and the data comes back identical.
    const fresh = await start();
    try {
      for (const format of [BackupFormat.BACKUP_FORMAT_SQL, BackupFormat.BACKUP_FORMAT_SQLITE]) {
        const messages = await backup(node, format);
        const bytes = Buffer.concat(messages.map((m) => m.data));
        const info = messages.at(-1)!.info!;
        expect(info.sizeBytes).toBe(BigInt(bytes.length));
        expect(info.appliedIndex).toBe(node.sm.appliedIndex());
        const corrupted = Buffer.from(bytes);
        corrupted[100]! ^= 0xff;
        const indexBefore = fresh.sm.appliedIndex();
        await expectError(restore(fresh, corrupted), status.INVALID_ARGUMENT, /FLAREDB_BACKUP_CORRUPT/);
        await expectError(
          restore(fresh, bytes.subarray(0, bytes.length - 10)),
          status.INVALID_ARGUMENT,
          /FLAREDB_BACKUP_CORRUPT/,
        );
        expect(fresh.sm.appliedIndex()).toBe(indexBefore);
        if (format === BackupFormat.BACKUP_FORMAT_SQL) {
          const res = await restore(fresh, bytes);
          expect(res.info?.contentSha256).toBe(info.contentSha256);
          const strip = (d: string) => d.replace(/INSERT INTO "_flaredb_schema_history".*'RESTORE'.*\n/, "");
          expect(strip(dumpBody(fresh.sm.database))).toBe(dumpBody(node.sm.database));
          // A second restore over live data is refused before proposing.
          await expectError(restore(fresh, bytes), status.FAILED_PRECONDITION, /FLAREDB_RESTORE_NOT_EMPTY/);
        }
      }
    } finally {
      await stop(fresh);
    }
  });

  it("refuses a restore upload over the server's bound", async () => {
    // Proves the client stream is bounded: the upload is refused with RESOURCE_EXHAUSTED and nothing changes.
    const small = await start({ restoreBytesMax: 1000 });
    try {
      const bytes = Buffer.concat((await backup(node, BackupFormat.BACKUP_FORMAT_SQL)).map((m) => m.data));
      await expectError(
        restore(small, bytes, 300),
        status.RESOURCE_EXHAUSTED,
        /FLAREDB_REQUEST_TOO_LARGE: the backup is over the restore limit of 1000 bytes/,
      );
      expect(small.sm.appliedIndex()).toBe(0n);
    } finally {
      await stop(small);
    }
  });

  it("opens a maintenance window against a fresh backup, then allows destructive DDL and records it", async () => {
    // Proves the Maintenance and SchemaHistory calls end to end.
    const messages = await backup(node, BackupFormat.BACKUP_FORMAT_SQL);
    const info = messages.at(-1)!.info!;
    const begin = (req: MaintenanceBeginRequest) =>
      call<MaintenanceBeginResponse>((cb) => node.client.maintenanceBegin(req, cb));
    const opened = await begin({
      backupAppliedIndex: info.appliedIndex,
      backupContentSha256: info.contentSha256,
      reason: "drop old",
    });
    expect(opened.state?.open).toBe(true);
    await execute(node, [stmt("CREATE TABLE old (a)")]);
    await execute(node, [stmt("DROP TABLE old")]);
    const status_ = await call<MaintenanceStatusResponse>((cb) => node.client.maintenanceStatus({}, cb));
    expect(status_.state?.reason).toBe("drop old");
    const ended = await call<MaintenanceEndResponse>((cb) => node.client.maintenanceEnd({}, cb));
    expect(ended.state?.open).toBe(false);
    await expectError(
      begin({ backupAppliedIndex: info.appliedIndex, backupContentSha256: info.contentSha256, reason: "" }),
      status.FAILED_PRECONDITION,
      /FLAREDB_MAINTENANCE_STALE_BACKUP/,
    );
    const history = await call<SchemaHistoryResponse>((cb) =>
      node.client.schemaHistory({ afterIndex: 0n, limit: 0 }, cb),
    );
    expect(history.changes.map((c) => [c.kind, c.maintenance])).toEqual([
      ["CREATE TABLE", false],
      ["MAINTENANCE BEGIN", true],
      ["CREATE TABLE", true],
      ["DROP TABLE", true],
      ["MAINTENANCE END", true],
    ]);
  });
});
