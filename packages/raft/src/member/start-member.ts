// Starts one Raft member of a daemon from its MemberConfig: the RaftService over <data-dir>/raft/,
// and the RaftPeer gRPC server on --listen-peer-urls (TLS per the --peer-* flags, which also give
// the client credentials for connections to https:// peers).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  type ConnectionOptions,
  createSecureContext,
  type DetailedPeerCertificate,
  type PeerCertificate,
  checkServerIdentity as tlsCheckServerIdentity,
} from "node:tls";
import * as grpc from "@grpc/grpc-js";
import {
  clientCertificateCheck,
  type DaemonMetrics,
  type Logger,
  loadTlsMaterial,
  readPem,
  peerTlsFiles,
  type RunningGrpcServer,
  startGrpcServer,
} from "@photoncloud/daemon";
import type { RaftLogger } from "../core/types.js";
import { GrpcTransport } from "../transport/grpc-transport.js";
import { ConfChangePendingError, MemberNotFoundError } from "../service/errors.js";
import { RaftService, type RaftServiceConfig } from "../service/raft-service.js";
import type { MemberInfo } from "../service/members.js";
import type { StateMachine } from "../service/state-machine.js";
import { formatId } from "./ids.js";
import {
  commitIdentity,
  type MemberPlan,
  planMember,
  readIdentity,
  stageIdentity,
  writeIdentity,
} from "./member-config.js";
import { registerMemberMetrics } from "./member-metrics.js";
import { RemovalWatcher } from "./removal-watcher.js";
import type { MemberConfig } from "./member-options.js";

export interface StartMemberArgs {
  /** Used in messages and metrics. */
  daemon: "chainfire" | "flaredb";
  config: MemberConfig;
  /** The daemon's state machine; RaftService.stop() closes it. */
  stateMachine: StateMachine;
  logger: Logger;
  metrics?: DaemonMetrics;
  onShutdown(name: string, fn: () => Promise<void> | void): void;
  /** Called when the node stops itself on a storage failure (a failed fsync): the daemon exits. */
  fatal?(err: unknown, what: string): void;
  version: string;
  /** Tests: shorter timeouts, small snapshot intervals. */
  raftOverrides?: Partial<RaftServiceConfig>;
  /**
   * A joining member's first start: the cluster's member list as a running member gave it. It
   * replaces the --initial-cluster guess, whose IDs derive from the names, for the peers this
   * member dials: a member added by peer URL or with --member-id has an ID no name derives, and a
   * joiner that cannot dial its leader cannot answer it, so never catches up. Ignored unless it
   * lists this member.
   */
  knownMembers?: readonly MemberInfo[];
}

export interface MemberHeader {
  clusterId: bigint;
  memberId: bigint;
  raftTerm: bigint;
  leaderId: bigint;
}

export interface RunningMember {
  raft: RaftService;
  memberId: bigint;
  /** 0n only while a member that joined an existing cluster has not yet learned it. */
  clusterId: bigint;
  /** Whether the member restarted: its data dir held its identity (member.json) from an earlier start. */
  restarted: boolean;
  /** RaftPeer on --listen-peer-urls (TLS per --peer-* flags). */
  peerServer: RunningGrpcServer;
  /** The config the member runs with (the membership handlers read the cluster token from it). */
  config: MemberConfig;
  version: string;
  /** Header fields for responses: cluster_id, member_id, raft_term, leader_id (leader 0 when unknown). */
  header(): MemberHeader;
  /**
   * Calls `fn` once this member was removed from the cluster, as the leader confirms when asked: at
   * once when its own configuration lacks it, or after two to four election timeouts without hearing
   * from a leader (see RemovalWatcher). The daemon typically stops (etcd exits). Watching starts with the
   * first registration.
   */
  onRemoved(fn: () => void): void;
}

/** Peer snapshots and batches can be large; the peer port is not exposed to clients. */
const PEER_MESSAGE_BYTES_MAX = 256 << 20;

/** grpc-js logs bigint fields as numbers (precision lost): IDs go out as hex, other numbers in decimal. */
function raftLogger(logger: Logger): RaftLogger {
  const conv = (fields: Record<string, unknown>) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) {
      if (typeof v !== "bigint") out[k] = v;
      else
        out[k] = /(^id$|Id$|^from$|^to$|^lead(er)?$)/.test(k)
          ? formatId(BigInt.asUintN(64, v))
          : v.toString();
    }
    return out;
  };
  return {
    debug: (f, m) => logger.debug(conv(f), m),
    info: (f, m) => logger.info(conv(f), m),
    warn: (f, m) => logger.warn(conv(f), m),
    error: (f, m) => logger.error(conv(f), m),
  };
}

/**
 * Client credentials for connections to peers (for grpc-js, and as TLS options for the batch streams): https:// peers get TLS with --peer-trusted-ca-file
 * (system roots when unset) and, when --peer-cert-file/--peer-key-file are set, present that
 * certificate (mTLS); http:// peers are plain. As etcd's peer client does, it offers only the
 * --cipher-suites given and holds the peer's server certificate to --peer-cert-allowed-cn or
 * --peer-cert-allowed-hostname (and the --peer-crl-file), on top of the usual hostname check.
 */
export function peerClientTls(
  config: MemberConfig,
  warn: (fields: Record<string, unknown>, msg: string) => void = () => {},
): {
  credentialsFor: (url: string) => grpc.ChannelCredentials;
  tlsFor: (url: string) => ConnectionOptions | undefined;
} {
  const files = peerTlsFiles(config);
  const haveCert = files.certFile !== undefined && files.keyFile !== undefined;
  const material = haveCert ? loadTlsMaterial(files, "--initial-advertise-peer-urls") : undefined;
  const ca =
    material?.ca ??
    (config.peerTrustedCaFile !== undefined
      ? readPem(config.peerTrustedCaFile, "--peer-trusted-ca-file")
      : null);
  const allowed = material === undefined ? undefined : clientCertificateCheck(material);
  const warned = new Set<string>();
  const checkServerIdentity = (host: string, cert: PeerCertificate): Error | undefined => {
    const mismatch = tlsCheckServerIdentity(host, cert);
    if (mismatch !== undefined || allowed === undefined || allowed(cert as DetailedPeerCertificate))
      return mismatch;
    const rules = [
      material?.allowedCn !== undefined ? `--peer-cert-allowed-cn=${material.allowedCn}` : "",
      material?.allowedHostname !== undefined
        ? `--peer-cert-allowed-hostname=${material.allowedHostname}`
        : "",
      material?.crlFile !== undefined ? `--peer-crl-file=${material.crlFile}` : "",
    ].filter((r) => r !== "");
    const refusal = `the peer's certificate (CN ${JSON.stringify(cert.subject?.CN ?? "")}) does not pass ${rules.join(" and ")}`;
    // Once per peer host and reason: the transport dials again with backoff and logs nothing itself.
    if (!warned.has(`${host}\0${refusal}`)) {
      warned.add(`${host}\0${refusal}`);
      warn({ host }, `refused a peer's TLS certificate: ${refusal}`);
    }
    return new Error(refusal);
  };
  // The same trust and identity for grpc-js and for the batch streams on the kit's HTTP/2 client.
  const options: ConnectionOptions = {
    ...(ca !== null ? { ca } : {}),
    ...(material !== undefined ? { key: material.key, cert: material.cert } : {}),
    ...(material?.ciphers !== undefined ? { ciphers: material.ciphers } : {}),
    checkServerIdentity,
  };
  const tls = grpc.credentials.createFromSecureContext(createSecureContext(options), { checkServerIdentity });
  const plain = grpc.credentials.createInsecure();
  return {
    credentialsFor: (url) => (url.startsWith("https://") ? tls : plain),
    tlsFor: (url) => (url.startsWith("https://") ? options : undefined),
  };
}

function raftConfig(args: StartMemberArgs, plan: MemberPlan, raftDir: string): RaftServiceConfig {
  const c = args.config;
  return {
    id: plan.memberId,
    dataDir: raftDir,
    initialMembers: plan.initialMembers,
    join: plan.join,
    tickMs: c.heartbeatIntervalMs,
    heartbeatTicks: 1,
    electionTicks: Math.max(5, Math.round(c.electionTimeoutMs / c.heartbeatIntervalMs)),
    snapshotEntries: c.snapshotCount,
    snapshotTailEntries: Math.min(5000, Math.max(1, Math.floor(c.snapshotCount / 2))),
    backgroundCheckpoints: true,
    // etcd's request timeout: 5 s plus two election timeouts (a leader change fits in it).
    requestTimeoutMs: 5000 + 2 * c.electionTimeoutMs,
    logger: raftLogger(args.logger.child({ component: "raft" })),
    ...args.raftOverrides,
    transport: { ...peerClientTls(c, (f, m) => args.logger.warn(f, m)), ...args.raftOverrides?.transport },
  };
}

/**
 * Validates the config (ConfigError naming the key and the fix), creates <data-dir>/raft/, starts
 * the RaftService and its peer server, and registers their shutdown with `onShutdown` (the member
 * stops after everything the daemon registers later, i.e. after its client server).
 */
export async function startMember(args: StartMemberArgs): Promise<RunningMember> {
  const { config, logger } = args;
  const raftDir = join(config.dataDir, "raft");
  const stored = readIdentity(raftDir);
  const plan = planMember(config, stored, args.knownMembers);
  mkdirSync(raftDir, { recursive: true, mode: 0o700 });
  if (stored === undefined) stageIdentity(raftDir, plan);
  const raft = new RaftService(raftConfig(args, plan, raftDir), args.stateMachine);
  if (stored === undefined) commitIdentity(raftDir);
  // etcd exits when its log cannot be synced; a member that stopped itself must not linger,
  // answering every request with an error, where a supervisor would restart it.
  const fatal = args.fatal;
  if (fatal !== undefined)
    raft.node.onFatal = (err) => fatal(err, "this member stopped: its storage failed; exiting");
  let peerServer: RunningGrpcServer;
  try {
    peerServer = await startGrpcServer({
      urls: config.listenPeerUrls,
      tls: peerTlsFiles(config),
      services: [
        {
          definition: GrpcTransport.serviceDefinition(),
          implementation: raft.transport.serviceImplementation(),
          // Every message between members arrives on these streams: served without grpc-js's call
          // machinery (the transport's handler only listens for "data" and "end").
          leanClientStreamMethods: ["sendMessages"],
        },
      ],
      maxReceiveMessageBytes: PEER_MESSAGE_BYTES_MAX,
      maxSendMessageBytes: PEER_MESSAGE_BYTES_MAX,
      logger,
      ...(args.metrics !== undefined ? { metrics: args.metrics } : {}),
      // Other members keep their streams open: do not wait long for them at shutdown.
      shutdownTimeoutMs: 500,
      what: "--listen-peer-urls",
    });
  } catch (err) {
    raft.stop();
    throw err;
  }
  args.onShutdown(`${args.daemon} peer server`, () => peerServer.shutdown());
  raft.start();
  args.onShutdown(`${args.daemon} raft`, async () => {
    await handOffLeadership(raft, plan.memberId, config.electionTimeoutMs, logger);
    raft.stop();
  });
  if (args.metrics !== undefined) registerMemberMetrics(args.metrics, raft, plan.memberId);
  logger.info(
    {
      memberId: formatId(plan.memberId),
      clusterId: formatId(plan.clusterId),
      name: plan.name,
      restart: plan.restart,
      join: plan.join,
      peerUrls: peerServer.urls.map((u) => u.href),
    },
    plan.restart ? "raft member restarted (initial cluster flags ignored)" : "raft member started",
  );
  const member = runningMember(args, plan, raft, peerServer);
  raft.clusterId = plan.clusterId;
  const retryMs = config.electionTimeoutMs;
  if (member.clusterId === 0n) void learnClusterId(member, raftDir, plan.name, retryMs, logger);
  void publishSelf(member, plan, retryMs, logger);
  return member;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How often publishSelf looks for a leader before it has one. */
const PUBLISH_POLL_MS = 20;

/**
 * etcd's graceful stop: a leader hands leadership to its most up-to-date voter heard from
 * recently, so the cluster does not wait an election timeout. Bounded by two election timeouts
 * (at least 1 s, for loaded machines); on failure the member stops anyway (the others then elect
 * a leader as usual).
 */
async function handOffLeadership(
  raft: RaftService,
  memberId: bigint,
  electionTimeoutMs: number,
  logger: Logger,
): Promise<void> {
  if (raft.node.isStopped || raft.node.leader !== memberId) return;
  const horizon = performance.now() - 2 * electionTimeoutMs;
  let target = 0n;
  let best = -1n;
  for (const id of raft.node.currentConfState().voters) {
    const match = raft.node.core.tracker.progress.get(id)?.match ?? -1n;
    if (
      id !== memberId &&
      (raft.node.lastHeard.get(id) ?? Number.NEGATIVE_INFINITY) >= horizon &&
      match > best
    ) {
      target = id;
      best = match;
    }
  }
  if (target === 0n) return;
  const boundMs = Math.max(2 * electionTimeoutMs, 1000);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no hand-off within ${boundMs} ms`)), boundMs);
  });
  try {
    await Promise.race([raft.transferLeader(target), deadline]);
    logger.info({ to: formatId(target) }, "handed leadership over before stopping");
  } catch (err) {
    logger.warn(
      { to: formatId(target), err: (err as Error).message },
      "leadership hand-off failed; stopping anyway",
    );
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A member that joined a running cluster asks its peers for the cluster ID until one knows it,
 * then records it in member.json (so it survives restarts).
 */
async function learnClusterId(
  member: RunningMember,
  raftDir: string,
  name: string,
  retryMs: number,
  logger: Logger,
): Promise<void> {
  const raft = member.raft;
  while (!raft.node.isStopped) {
    for (const peer of raft.node.members.keys()) {
      if (peer === member.memberId || raft.node.isStopped) continue;
      const info = await raft.transport.clusterInfo(peer, retryMs).catch(() => undefined);
      if (info === undefined || info.clusterId === 0n) continue;
      member.clusterId = info.clusterId;
      raft.clusterId = info.clusterId;
      writeIdentity(raftDir, { name, memberId: member.memberId, clusterId: info.clusterId });
      logger.info({ clusterId: formatId(info.clusterId), from: formatId(peer) }, "learned the cluster ID");
      return;
    }
    await pause(retryMs);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * etcd's publish: once the cluster has a leader, this member records its name and advertised
 * client URLs in the replicated member list (through the leader), unless they are already there.
 * Retried every `retryMs` until done, the member is removed, or Raft stops.
 */
async function publishSelf(member: RunningMember, plan: MemberPlan, retryMs: number, logger: Logger) {
  const raft = member.raft;
  let failures = 0;
  while (!raft.node.isStopped) {
    const me = raft.node.members.get(member.memberId);
    if (me !== undefined && me.name === plan.name && sameList(me.clientUrls, plan.advertiseClientUrls))
      return;
    // Published as soon as a leader is known: until then a member list shows no client URL for it.
    if (raft.node.leader === 0n) {
      await pause(PUBLISH_POLL_MS);
      continue;
    }
    try {
      await raft.publishAttributes(member.memberId, plan.name, plan.advertiseClientUrls);
      logger.info({ clientUrls: plan.advertiseClientUrls }, "published this member's client URLs");
      return;
    } catch (err) {
      if (err instanceof MemberNotFoundError) return;
      // Members starting together publish at once and wait for each other's change (one membership
      // change at a time), so a few failures are normal; a run of them is worth a warning.
      failures++;
      logger[failures % 5 === 0 ? "warn" : "debug"](
        { err: (err as Error).message, failures },
        "publishing this member's client URLs failed; retrying",
      );
      // Another member's change is applied within a round trip or two.
      if (err instanceof ConfChangePendingError) {
        await pause(Math.min(retryMs, 4 * PUBLISH_POLL_MS));
        continue;
      }
    }
    await pause(retryMs);
  }
}

function runningMember(
  args: StartMemberArgs,
  plan: MemberPlan,
  raft: RaftService,
  peerServer: RunningGrpcServer,
): RunningMember {
  const c = args.config;
  const watcher = new RemovalWatcher(
    raft.node,
    plan.memberId,
    () => raft.clusterId,
    (peer) => raft.transport.clusterInfo(peer, 1000),
    c.heartbeatIntervalMs,
    2 * c.electionTimeoutMs,
    args.logger,
  );
  args.onShutdown(`${args.daemon} removal watcher`, () => watcher.stop());
  const member: RunningMember = {
    raft,
    memberId: plan.memberId,
    clusterId: plan.clusterId,
    restarted: plan.restart,
    peerServer,
    config: args.config,
    version: args.version,
    header: () => ({
      clusterId: member.clusterId,
      memberId: plan.memberId,
      raftTerm: raft.node.core.term,
      leaderId: raft.node.leader,
    }),
    onRemoved: (fn) => watcher.onRemoved(fn),
  };
  return member;
}
