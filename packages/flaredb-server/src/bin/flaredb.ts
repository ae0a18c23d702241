// The flaredb daemon: one Raft member (the shared member kit) whose state machine is the SQLite
// database, serving flaredb.v1.FlareDBService and flaredb.v1.Cluster on --listen-client-urls (with
// gRPC health and reflection) and /metrics, /health, /version on --listen-metrics-urls.
//
// Data directory: <data-dir>/raft/ holds the Raft log and snapshots (the member kit's), and
// <data-dir>/flaredb.sqlite (+ -wal, -shm) is the replicated database.

import { statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  clientTlsFiles,
  type DaemonContext,
  defineOptions,
  preparePrivateDir,
  reusingEncoder,
  runDaemon,
  startGrpcServer,
  startHttpServer,
  unary,
} from "@photoncloud/daemon";
import { memberOptions, membershipHandlers, type RunningMember, startMember } from "@photoncloud/raft";
import { Gauge } from "prom-client";
import { RaftReplicatedDb } from "../api/raft-replicated-db.js";
import { createFlareDbService, toServiceError } from "../api/service.js";
import { ClusterService, type ClusterServer } from "../gen/flaredb/v1/cluster.js";
import { ExecuteResponse, FlareDBServiceService } from "../gen/flaredb/v1/flaredb.js";
import { SqlStateMachine } from "../sql/state-machine.js";
import { FLAREDB_VERSION } from "../version.js";

/** proto/ at the repository root (the same depth from src/bin and dist/bin). */
const PROTO_ROOT = fileURLToPath(new URL("../../../../proto/", import.meta.url));

export const flaredbOptions = defineOptions({
  ...memberOptions("FLAREDB_", { client: 2479, peer: 2480, metrics: 2481 }),
  dbSynchronous: {
    flag: "db-synchronous",
    env: "FLAREDB_DB_SYNCHRONOUS",
    type: "enum",
    values: ["normal", "full"],
    // normal is safe here: every entry is already durable in the Raft log (synchronous=FULL) before
    // it is applied, and a snapshot is stored durably before the log is compacted behind it. After a
    // power loss that rolled the database back, the member restarts from the database's applied
    // index and re-applies the log, or restores the stored snapshot first when the database is older
    // than it. full adds one fsync per applied batch for no extra safety.
    default: "normal",
    description:
      "SQLite synchronous mode of the database: normal (the Raft log already holds every applied entry durably and re-applies it after a power loss) or full (also fsync every applied batch)",
  },
  maxResultRows: {
    flag: "max-result-rows",
    env: "FLAREDB_MAX_RESULT_ROWS",
    type: "int",
    default: 100_000,
    min: 1,
    description: "most rows one query may return (beyond it the query fails with RESOURCE_EXHAUSTED)",
  },
  maxRestoreBytes: {
    flag: "max-restore-bytes",
    env: "FLAREDB_MAX_RESTORE_BYTES",
    type: "bytes",
    default: "64MiB",
    min: 1,
    description: "largest backup Restore accepts (it travels through the Raft log as one entry)",
  },
});

type Ctx = DaemonContext<typeof flaredbOptions>;

/** The database file and its WAL: what Status reports as db_size_bytes. */
function databaseBytes(path: string): bigint {
  let total = 0;
  for (const f of [path, `${path}-wal`]) {
    try {
      total += statSync(f).size;
    } catch {
      // The WAL may not exist yet.
    }
  }
  return BigInt(total);
}

/** flaredb.v1.Cluster bound to the shared membership layer; Raft errors mapped like every other. */
function clusterService(member: RunningMember, dbPath: string): ClusterServer {
  const m = membershipHandlers(member, () => ({ dbSizeBytes: databaseBytes(dbPath) }));
  const mapped =
    <Req, Res>(fn: (req: Req) => Promise<Res>) =>
    (req: Req) =>
      fn(req).catch((err: unknown) => {
        throw toServiceError(err);
      });
  return {
    memberAdd: unary(mapped(m.memberAdd)),
    memberRemove: unary(mapped(m.memberRemove)),
    memberList: unary(mapped(m.memberList)),
    status: unary(mapped(m.status)),
    leaderTransfer: unary(mapped(m.leaderTransfer)),
  } as ClusterServer;
}

function registerMetrics(ctx: Ctx, member: RunningMember, dbPath: string): void {
  const raft = member.raft;
  const registers = [ctx.metrics.registry];
  new Gauge({
    name: "flaredb_applied_index",
    help: "Raft index of the last entry applied to this member's database",
    registers,
    collect() {
      this.set(Number(raft.node.appliedIndex()));
    },
  });
  new Gauge({
    name: "flaredb_is_leader",
    help: "1 when this member is the Raft leader",
    registers,
    collect() {
      this.set(raft.node.leader === member.memberId ? 1 : 0);
    },
  });
  new Gauge({
    name: "flaredb_db_size_bytes",
    help: "size of the SQLite database file and its WAL",
    registers,
    collect() {
      this.set(Number(databaseBytes(dbPath)));
    },
  });
}

async function startFlareDb(ctx: Ctx): Promise<void> {
  const { config, logger } = ctx;
  preparePrivateDir(config.dataDir, "--data-dir", (fields, msg) => logger.warn(fields, msg));
  const dbPath = join(config.dataDir, "flaredb.sqlite");
  const sm = new SqlStateMachine({
    path: dbPath,
    synchronous: config.dbSynchronous,
    resultRowsMax: config.maxResultRows,
    backgroundCheckpoints: true,
  });
  await sm.startSnapshotWorker().catch((err: unknown) => {
    logger.warn({ err: String(err) }, "snapshot worker did not start; snapshots are taken on the event loop");
  });
  const member = await startMember({
    daemon: "flaredb",
    config,
    stateMachine: sm,
    logger,
    metrics: ctx.metrics,
    onShutdown: ctx.onShutdown,
    fatal: ctx.fatal,
    version: FLAREDB_VERSION,
  });
  const replicated = new RaftReplicatedDb(member.raft);
  const grpc = await startGrpcServer({
    urls: config.listenClientUrls,
    tls: clientTlsFiles(config),
    services: [
      {
        // Execute answers are serialised through one reused writer (the hot call).
        definition: {
          ...FlareDBServiceService,
          execute: {
            ...FlareDBServiceService.execute,
            responseSerialize: reusingEncoder(ExecuteResponse),
          },
        },
        implementation: createFlareDbService(sm, replicated, {
          requestBytesMax: config.maxRequestBytes,
          restoreBytesMax: config.maxRestoreBytes,
        }),
        // Statements are the hot call: served by the daemon kit's lean unary path.
        leanUnaryMethods: ["execute"],
      },
      { definition: ClusterService, implementation: clusterService(member, dbPath) },
    ],
    protoFiles: ["flaredb/v1/flaredb.proto", "flaredb/v1/cluster.proto"],
    includeDirs: [PROTO_ROOT],
    // Restore streams chunks; every other request is one message bounded by --max-request-bytes.
    maxReceiveMessageBytes: config.maxRequestBytes,
    maxSendMessageBytes: 64 * 1024 * 1024,
    logger,
    metrics: ctx.metrics,
    what: "--listen-client-urls",
  });
  ctx.onShutdown("client gRPC server", () => grpc.shutdown());
  registerMetrics(ctx, member, dbPath);
  const http = await startHttpServer({
    urls: config.listenMetricsUrls,
    metrics: ctx.metrics,
    logger,
    health: () => ({
      healthy: member.raft.node.leader !== 0n,
      leader: member.raft.node.leader.toString(16),
      appliedIndex: member.raft.node.appliedIndex().toString(),
    }),
    version: { name: "flaredb", version: FLAREDB_VERSION },
    what: "--listen-metrics-urls",
  });
  ctx.onShutdown("metrics HTTP server", () => http.close());
  logger.info(
    {
      memberId: member.memberId.toString(16).padStart(16, "0"),
      clientUrls: grpc.urls.map((u) => u.href),
      metricsUrls: http.urls.map((u) => u.href),
      database: dbPath,
    },
    "flaredb ready",
  );
}

/** The `flaredb` program. */
export function main(): Promise<void> {
  return runDaemon({
    name: "flaredb",
    version: FLAREDB_VERSION,
    description: "PhotonCloud flaredb: SQL on Raft (SQLite on every member, deterministic replicas)",
    options: flaredbOptions,
    configFileEnv: "FLAREDB_CONFIG_FILE",
    logLevelOption: "logLevel",
    logFileOption: "logFile",
    main: startFlareDb,
  });
}
