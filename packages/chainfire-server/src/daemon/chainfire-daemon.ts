// The chainfire daemon: the MVCC store as the Raft member's state machine (member kit), the etcd v3
// API and chainfire.v1.Cluster on the client URLs (health, reflection, metrics), and the background
// parts that follow leadership (lessor, lease expiry proposals).
import { X509Certificate } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chainfirev1, etcd } from "@photoncloud/chainfire-api";
import {
  ConfigError,
  checkListenerTls,
  clientTlsFiles,
  conflict,
  type DaemonContext,
  handedOverHttp,
  peerTlsFiles,
  preparePrivateDir,
  readPem,
  runDaemon,
  startGrpcServer,
  startHttpServer,
} from "@photoncloud/daemon";
import {
  formatId,
  type MemberInfo,
  membershipHandlers,
  parseInitialCluster,
  peerClientTls,
  type RunningMember,
  resolveMemberUrls,
  StateRole,
  startMember,
} from "@photoncloud/raft";
import type { EtcdApiContext } from "../api/context.js";
import { AutoCompactor, parseAutoCompaction } from "../mvcc/auto-compactor.js";
import { LeaseDriver } from "../mvcc/lease-driver.js";
import { minLeaseTtlSeconds } from "../mvcc/lessor.js";
import { MvccStore } from "../mvcc/store.js";
import { WatchHub } from "../watch/watch-hub.js";
import { encodeCommand } from "../mvcc/messages.js";
import { accessControl } from "./access-control.js";
import {
  askPeerHash,
  type CorruptionCheckDeps,
  initialCorruptionCheck,
  startPeriodicCorruptionCheck,
} from "./corruption-check.js";
import { etcdGatewayRoutes } from "./etcd-gateway.js";
import { type EtcdMetrics, registerEtcdMetrics } from "./etcd-metrics.js";
import { clientServices, operatorHandlers } from "./client-services.js";
import { bootstrapFromRestore, dataDirLayout, hasRaftLog, prepareDataDir } from "./data-dir.js";
import { bootstrappedAt, discoverCluster } from "./join-discovery.js";
import { LeaderClients, LeadershipWatcher, memberClientTls, memberFacts } from "./member-runtime.js";
import type { MembershipOps } from "./membership.js";
import { type ChainfireOptions, chainfireOptions } from "./options.js";

export const CHAINFIRE_VERSION = "0.1.0";
/** What Maintenance.Status reports: etcd clients (etcdctl 3.4) gate features on the API level. */
export const ETCD_API_VERSION = "3.4.0";
/** The cluster version etcd's /version reports beside its own. */
const ETCD_CLUSTER_VERSION = "3.4.0";
/** How long etcd's /health waits for its read through the leader. */
const HEALTH_READ_TIMEOUT_MS = 1000;

/**
 * etcd's health check: a leader is known, no alarm is raised, and a read through the leader
 * (linearizable) answers within a second. `health` is etcd's "true"/"false"; `reason` says why not.
 */
async function etcdHealth(
  member: RunningMember,
  apiCtx: EtcdApiContext,
): Promise<{ healthy: boolean; health: "true" | "false"; leader: string | null; reason?: string }> {
  const leaderId = member.raft.node.leader;
  const leader = leaderId === 0n ? null : formatId(leaderId);
  const report = (reason?: string) => ({
    healthy: reason === undefined,
    health: reason === undefined ? ("true" as const) : ("false" as const),
    leader,
    ...(reason === undefined ? {} : { reason }),
  });
  if (leaderId === 0n) return report("no leader");
  const alarms = apiCtx.store.alarms();
  if (alarms.length > 0)
    return report(`alarms raised: ${alarms.map((a) => etcd.AlarmType[a.alarm]).join(", ")}`);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), HEALTH_READ_TIMEOUT_MS);
  });
  const read = member.raft.linearizableRead(() => true).catch(() => false);
  const answered = await Promise.race([read, timedOut]);
  clearTimeout(timer);
  return report(
    answered ? undefined : `a read through the leader did not answer within ${HEALTH_READ_TIMEOUT_MS} ms`,
  );
}
const PROTO_ROOT = fileURLToPath(new URL("../../../../proto", import.meta.url));
/** etcd lets gRPC frames exceed --max-request-bytes by this much; the request check is exact. */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

type Ctx = DaemonContext<ChainfireOptions>;

/** Runs the daemon as this process (parses argv, starts, stops on SIGTERM/SIGINT). */
export function main(): Promise<void> {
  return runDaemon({
    name: "chainfire",
    version: CHAINFIRE_VERSION,
    description: "chainfire: the etcd-compatible Raft key-value store of the PhotonCloud control plane",
    options: chainfireOptions,
    configFileEnv: "CHAINFIRE_CONFIG_FILE",
    envPrefix: "CHAINFIRE_",
    // An etcd unit's environment (ETCD_NAME, ETCD_INITIAL_CLUSTER, ...) works as it does for etcd.
    envAliasPrefix: "ETCD_",
    logLevelOption: "logLevel",
    logFileOption: "logFile",
    // etcd's metrics carry no such label: `etcdctl check datascale` reads the bare
    // `process_resident_memory_bytes <n>` line from the client URL's /metrics.
    metricsDaemonLabel: false,
    main: startChainfire,
  });
}

export async function startChainfire(ctx: Ctx): Promise<void> {
  const { config, logger } = ctx;
  // Every certificate and key is read and parsed before the data dir is made or touched.
  checkListenerTls(
    [
      { urls: config.listenClientUrls, tls: clientTlsFiles(config), what: "--listen-client-urls" },
      { urls: config.listenPeerUrls, tls: peerTlsFiles(config), what: "--listen-peer-urls" },
      // https:// metrics URLs use the client certificate (an http:// one is etcd's usual setting).
      {
        urls: (config.listenMetricsUrls ?? []).filter((url) => url.tls),
        tls: clientTlsFiles(config),
        what: "--listen-metrics-urls",
      },
    ],
    (fields, msg) => logger.warn(fields, msg),
  );
  if (config.peerTrustedCaFile !== undefined) readPem(config.peerTrustedCaFile, "--peer-trusted-ca-file");
  checkOwnClientCertificate(config);
  const autoCompaction = parseAutoCompaction(config.autoCompactionMode, config.autoCompactionRetention);
  if (typeof autoCompaction === "string") {
    throw conflict("--auto-compaction-retention", `${autoCompaction} (0 turns auto-compaction off)`);
  }
  const createdDir = preparePrivateDir(config.dataDir, "--data-dir", (fields, msg) =>
    logger.warn(fields, msg),
  );
  const store = new MvccStore({
    path: dataDirLayout.mvccDb(config.dataDir),
    quotaBackendBytes: BigInt(config.quotaBackendBytes),
    maxTxnOps: config.maxTxnOps,
    minLeaseTtlSeconds: minLeaseTtlSeconds(config.heartbeatIntervalMs, config.electionTimeoutMs),
    leaseCheckpointIntervalMs: config.leaseCheckpointIntervalMs,
    backendBatchIntervalMs: config.backendBatchIntervalMs,
    backendBatchLimit: config.backendBatchLimit,
    backgroundCheckpoints: true,
    slowApplyMs: config.warningApplyDurationMs,
  });
  // etcd's warning, which operators search their logs for: the request without its values.
  store.onSlowApply = (request, tookMs) =>
    logger.warn(
      { took: `${tookMs.toFixed(1)}ms`, "expected-duration": `${config.warningApplyDurationMs}ms`, request },
      "apply request took too long",
    );
  let member: RunningMember;
  let bootstrap: typeof config = config;
  try {
    prepareDataDir(config.dataDir, () => store.appliedIndex());
    await store.startSnapshotWorker().catch((err: unknown) => {
      logger.warn(
        { err: String(err) },
        "snapshot worker did not start; snapshots are taken on the event loop",
      );
    });
    // A data dir made by `snapshot restore` bootstraps the membership it was restored for.
    bootstrap = bootstrapFromRestore(config.dataDir, config, ctx.sources);
    member = await startRaftMember({ ...ctx, config: bootstrap }, store);
  } catch (err) {
    // A configuration mistake leaves no trace: nothing of this start stays on disk.
    if (err instanceof ConfigError) {
      store.close();
      if (createdDir) rmSync(config.dataDir, { recursive: true, force: true });
    }
    throw err;
  }
  const hub = new WatchHub(store);
  ctx.onShutdown("watch-hub", () => hub.close());
  const leaderClients = new LeaderClients(member, memberClientTls(config));
  ctx.onShutdown("leader-clients", () => leaderClients.close());
  const apiCtx: EtcdApiContext = {
    replicated: member.raft,
    store,
    hub,
    member: memberFacts(member),
    version: ETCD_API_VERSION,
    // As etcd: a watch response is cut only past what a gRPC message may carry beyond the request limit.
    watchFragmentBytesMax: config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    maxRequestBytes: config.maxRequestBytes,
    nowMs: () => store.lessor.nowMs(),
    forwarding: leaderClients,
    shuttingDown: ctx.shuttingDown,
    leaderCheckMs: config.electionTimeoutMs,
  };
  const etcdMetrics = registerEtcdMetrics(ctx.metrics, {
    member,
    store,
    hub,
    quotaBackendBytes: store.quotaBackendBytes,
    serverVersion: ETCD_API_VERSION,
  });
  ctx.onShutdown("etcd-metrics", () => etcdMetrics.stop());
  startLeaseMachinery(ctx, member, store);
  const compactor = new AutoCompactor(
    autoCompaction,
    member.raft,
    store,
    () => member.raft.node.role === StateRole.Leader,
    logger,
  );
  compactor.start();
  ctx.onShutdown("auto-compactor", () => compactor.stop());
  // The raft library watches for this member's removal (settled by the leader's word).
  member.onRemoved(() => {
    logger.warn(
      { memberId: formatId(member.memberId) },
      "this member was removed from the cluster; stopping",
    );
    process.kill(process.pid, "SIGTERM");
  });
  const membership: MembershipOps = membershipHandlers(member, () => ({
    dbSizeBytes: store.dbSizeBytes(),
    revision: store.currentRevision(),
    compactRevision: store.compactRevision(),
  }));
  await startCorruptionChecks(ctx, member, store);
  // On the peer URL too: the member list, which a joining member reads to find the ID given to its
  // peer URL (and members of earlier versions read to learn of their removal).
  member.peerServer.server.addService(chainfirev1.ClusterService, operatorHandlers(membership));
  // A member that restarts with its data, or joins a running cluster, is behind the cluster. (Its
  // identity file says it restarted: the store's file may not have committed an applied entry yet.)
  if (member.restarted || config.initialClusterState === "existing") {
    await catchUpBeforeServing(member, config.electionTimeoutMs, logger);
  }
  // The token the cluster was bootstrapped with (a restore's, when the data dir came from one).
  await startServers(ctx, apiCtx, membership, member, bootstrap.initialClusterToken, etcdMetrics);
  logger.info(
    {
      memberId: formatId(member.memberId),
      clusterId: formatId(member.clusterId),
      clientUrls: config.listenClientUrls.map((u) => u.href),
    },
    "chainfire member ready",
  );
}

/**
 * A first start that would bootstrap a new cluster, refused as etcd refuses it ("member ... has
 * already been bootstrapped") when a member of that cluster has seen this one run.
 */
async function refuseIfBootstrapped(config: Ctx["config"]): Promise<void> {
  const urls = resolveMemberUrls(config);
  const cluster = parseInitialCluster(urls.initialCluster, config.initialClusterToken);
  const self = cluster.find((m) => m.name === config.name);
  const others = cluster.filter((m) => m !== self).flatMap((m) => m.peerUrls);
  if (self === undefined || others.length === 0) return;
  const via = await bootstrappedAt(
    { otherPeerUrls: others, credentialsFor: peerClientTls(config).credentialsFor, deadlineMs: 1000 },
    self.id,
  );
  if (via === undefined) return;
  const id = formatId(self.id);
  throw conflict(
    "--initial-cluster-state",
    `new, but member ${id} (${config.name}) has already been bootstrapped: ${via.replace(/\/$/, "")} lists it ` +
      `as a running member, so it ran in that cluster with a data dir other than ${config.dataDir}. Start it ` +
      `with that data dir, or remove it (etcdctl member remove ${id}), add it again and start it with ` +
      "--initial-cluster-state existing",
  );
}

/** How long a joining member asks the peers in --initial-cluster for a member list with itself in it. */
const JOIN_DISCOVERY_MS = 10_000;

async function startRaftMember(ctx: Ctx, store: MvccStore): Promise<RunningMember> {
  const { config, logger } = ctx;
  let memberId = config.memberId;
  let knownMembers: MemberInfo[] | undefined;
  if (config.initialClusterState === "existing" && !hasRaftLog(config.dataDir)) {
    const urls = resolveMemberUrls(config);
    const own = urls.initialAdvertisePeerUrls.map((u) => u.href);
    const cluster = parseInitialCluster(urls.initialCluster, config.initialClusterToken);
    const others = cluster.flatMap((m) => m.peerUrls).filter((u) => !own.includes(u));
    const found = await discoverCluster(
      {
        ownPeerUrls: own,
        otherPeerUrls: others,
        credentialsFor: peerClientTls(config).credentialsFor,
        deadlineMs: 2000,
      },
      logger,
      JOIN_DISCOVERY_MS,
    );
    // As etcd, a joining member starts only as a member the running cluster lists: with a guessed
    // ID it would never be let in, and would serve its empty store.
    if (found === undefined)
      throw conflict(
        "--initial-cluster",
        `no member at its other peer URLs (${others.map((u) => u.replace(/\/$/, "")).join(", ")}) answered within ${JOIN_DISCOVERY_MS / 1000} s; ` +
          "--initial-cluster-state existing joins a running cluster, whose member list is read first: start " +
          "this member once those members run, or list their peer URLs",
      );
    const shown = own.map((u) => u.replace(/\/$/, "")).join(",");
    if (found.own === undefined)
      throw conflict(
        "--initial-cluster-state",
        `existing joins a running cluster, but its member list has no member with this member's peer URL ` +
          `(${shown}): add it first (etcdctl member add ${config.name} --peer-urls=${shown}), ` +
          "then start it; or check --initial-advertise-peer-urls",
      );
    if (memberId !== undefined && memberId !== found.own.id)
      throw conflict(
        "--member-id",
        `${formatId(memberId)} is not the ID the running cluster has for this member's peer URL ` +
          `(${formatId(found.own.id)}): remove --member-id, or give that ID`,
      );
    memberId = found.own.id;
    knownMembers = found.members;
  } else if (!hasRaftLog(config.dataDir) && !existsSync(dataDirLayout.restoredFor(config.dataDir))) {
    await refuseIfBootstrapped(config);
  }
  return startMember({
    daemon: "chainfire",
    config: memberId === undefined ? config : { ...config, memberId },
    stateMachine: store,
    logger,
    metrics: ctx.metrics,
    onShutdown: ctx.onShutdown,
    fatal: ctx.fatal,
    version: CHAINFIRE_VERSION,
    raftOverrides:
      config.snapshotCatchupEntries === undefined
        ? {}
        : { snapshotTailEntries: config.snapshotCatchupEntries },
    ...(knownMembers === undefined ? {} : { knownMembers }),
  });
}

/**
 * etcd's corruption checks: once before this member serves clients (--experimental-initial-corrupt-
 * check; a member whose data differs from a peer's refuses to start), and on the leader every
 * --experimental-corrupt-check-time (the CORRUPT alarm for a member that differs).
 */
/**
 * Members call each other's client URLs with this member's --cert-file (lease keep-alives relayed
 * to the leader, corruption checks): with --client-cert-allowed-hostname, that certificate must
 * pass the check itself, or members would shut each other out.
 */
function checkOwnClientCertificate(config: Ctx["config"]): void {
  const hostname = config.clientCertAllowedHostname;
  if (!hostname || config.certFile === undefined) return;
  const own = new X509Certificate(readPem(config.certFile, "--cert-file"));
  if (own.checkHost(hostname) === undefined)
    throw conflict(
      "--client-cert-allowed-hostname",
      `this member's --cert-file is not valid for ${JSON.stringify(hostname)}, and members present it to each other's client URLs (relayed lease keep-alives, corruption checks); issue it for that name too`,
    );
}

async function startCorruptionChecks(ctx: Ctx, member: RunningMember, store: MvccStore): Promise<void> {
  const { config, logger } = ctx;
  if (!config.initialCorruptCheck && config.corruptCheckTimeMs === 0) return;
  const tls = memberClientTls(config);
  const deps: CorruptionCheckDeps = {
    peers: () =>
      [...member.raft.node.members.entries()].flatMap(([id, info]) =>
        id === member.memberId || info.clientUrls[0] === undefined
          ? []
          : [{ id, clientUrl: info.clientUrls[0] }],
      ),
    localHash: (revision) => store.hashKV(revision),
    peerHash: (peer, revision) => askPeerHash(peer, revision, tls, config.electionTimeoutMs * 5),
    settled: () =>
      member.raft.linearizableRead(() => ({
        revision: store.currentRevision(),
        compactRevision: store.compactRevision(),
      })),
    logger,
  };
  if (config.initialCorruptCheck) await initialCorruptionCheck(deps);
  if (config.corruptCheckTimeMs === 0) return;
  const stop = startPeriodicCorruptionCheck(deps, {
    intervalMs: config.corruptCheckTimeMs,
    leading: () => member.raft.node.role === StateRole.Leader,
    raiseCorrupt: async (memberId) => {
      await member.raft.propose(
        encodeCommand({
          alarm: {
            action: etcd.AlarmRequest_AlarmAction.ACTIVATE,
            memberID: memberId,
            alarm: etcd.AlarmType.CORRUPT,
          },
        }),
      );
    },
    corruptMembers: () => store.alarms(etcd.AlarmType.CORRUPT).map((a) => a.memberID),
  });
  ctx.onShutdown("corruption-check", stop);
}

function startLeaseMachinery(ctx: Ctx, member: RunningMember, store: MvccStore): void {
  const watcher = new LeadershipWatcher(member, store, (leading) =>
    ctx.logger.info({ leading }, leading ? "lessor promoted: this member leads" : "lessor demoted"),
  );
  watcher.start(ctx.config.heartbeatIntervalMs);
  ctx.onShutdown("lessor", () => watcher.stop());
  const driver = new LeaseDriver(member.raft, store, {
    intervalMs: Math.max(50, ctx.config.heartbeatIntervalMs * 5),
    leasesPerProposalMax: 1000,
  });
  driver.start();
  ctx.onShutdown("lease-driver", () => driver.stop());
}

/**
 * As etcd serves clients only once it has published itself through the log (so it has applied what
 * the cluster committed before): a restarted or joining member first applies everything the leader
 * had committed (a linearizable read's barrier), or a serializable read, a watch or a status would
 * answer from the state it stopped at. Without a leader within the bound (quorum lost), it serves
 * what it has, as before, and says so.
 */
async function catchUpBeforeServing(member: RunningMember, electionTimeoutMs: number, logger: Ctx["logger"]) {
  const boundMs = Math.max(CATCH_UP_BOUND_MS, 10 * electionTimeoutMs);
  const deadline = Date.now() + boundMs;
  const started = Date.now();
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  while (Date.now() < deadline && !member.raft.node.isStopped) {
    // A read asked before any leader is known is only retried an election timeout later.
    if (member.raft.node.leader === 0n) {
      await pause(20);
      continue;
    }
    try {
      await member.raft.linearizableRead(() => undefined);
      logger.info(
        { tookMs: Date.now() - started, appliedIndex: member.raft.node.appliedIndex().toString() },
        "caught up with the cluster's commits; serving clients",
      );
      return;
    } catch {
      await pause(Math.min(electionTimeoutMs, 1000));
    }
  }
  logger.warn(
    { waitedMs: Date.now() - started },
    "could not reach the cluster's leader to catch up; serving clients with what this member has applied",
  );
}

/** How long a restarted member waits at most to catch up before serving clients (see catchUpBeforeServing). */
const CATCH_UP_BOUND_MS = 10_000;

async function startServers(
  ctx: Ctx,
  apiCtx: EtcdApiContext,
  membership: MembershipOps,
  member: RunningMember,
  clusterToken: string,
  etcdMetrics: EtcdMetrics,
): Promise<void> {
  const { config, logger } = ctx;
  const health = async () => {
    const report = await etcdHealth(member, apiCtx);
    etcdMetrics.health(report.healthy);
    return report;
  };
  const services = clientServices({
    ctx: apiCtx,
    membership,
    clusterToken,
    watch: { progressIntervalMs: config.watchProgressNotifyIntervalMs },
    messageBytes: etcdMetrics.clientMessageBytes,
  });
  // As etcd, the client URLs also answer HTTP/1.x: /health and /version in etcd's words, /metrics,
  // and the etcd API as JSON (etcd's gRPC gateway).
  const clientHttp = handedOverHttp({
    metrics: ctx.metrics,
    logger,
    beforeRoute: accessControl({ cors: config.cors, hostWhitelist: config.hostWhitelist, logger }),
    goHttpAnswers: true,
    routes: {
      "/health": async (_req, res) => {
        const report = await health();
        res.writeHead(report.healthy ? 200 : 503, { "content-type": "text/plain; charset=utf-8" });
        res.end(JSON.stringify({ health: report.health }));
      },
      "/version": (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ etcdserver: ETCD_API_VERSION, etcdcluster: ETCD_CLUSTER_VERSION }));
      },
    },
    // --enable-grpc-gateway=false leaves /v3/... unanswered (404), as etcd does.
    ...(config.enableGrpcGateway
      ? {
          anyMethodRoutes: etcdGatewayRoutes({
            services,
            protoRoot: PROTO_ROOT,
            // Base64 makes a JSON body a third larger than the message it carries.
            maxBodyBytes: 2 * config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
          }),
        }
      : {}),
  });
  const grpc = await startGrpcServer({
    urls: config.listenClientUrls,
    http1: clientHttp.accept,
    http2: clientHttp.h2,
    tls: clientTlsFiles(config),
    services,
    protoFiles: ["etcd/etcdserverpb/rpc.proto", "chainfire/v1/cluster.proto"],
    includeDirs: [PROTO_ROOT],
    maxReceiveMessageBytes: config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    // As etcd (math.MaxInt32): no answer is refused for its size, a large Range or watch history included.
    maxSendMessageBytes: 2 ** 31 - 1,
    maxConcurrentStreams: config.maxConcurrentStreams,
    // As etcd: 0 for either leaves grpc-go's defaults (2h, 20s).
    keepalive:
      config.grpcKeepaliveIntervalMs > 0 && config.grpcKeepaliveTimeoutMs > 0
        ? { intervalMs: config.grpcKeepaliveIntervalMs, timeoutMs: config.grpcKeepaliveTimeoutMs }
        : { intervalMs: 7_200_000, timeoutMs: 20_000 },
    logger,
    metrics: ctx.metrics,
    shutdownTimeoutMs: 3000,
    what: "--listen-client-urls",
  });
  ctx.onShutdown("client-grpc", () => grpc.shutdown());
  ctx.onShutdown("client-http", () => clientHttp.close());
  if (config.listenMetricsUrls === undefined) return;
  const http = await startHttpServer({
    urls: config.listenMetricsUrls,
    // https:// metrics URLs use the client certificate, like etcd's.
    tls: clientTlsFiles(config),
    metrics: ctx.metrics,
    logger,
    health,
    version: { name: "chainfire", version: CHAINFIRE_VERSION, etcdApi: ETCD_API_VERSION },
    what: "--listen-metrics-urls",
    goHttpAnswers: true,
  });
  ctx.onShutdown("metrics-http", () => http.close());
}
