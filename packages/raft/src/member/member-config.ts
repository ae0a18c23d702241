// Turns a parsed MemberConfig (plus what the data directory already holds) into the plan a member
// starts from: its ID, the cluster ID, the bootstrap members, join or restart. Pure apart from the
// identity file helpers; every problem is a ConfigError naming the key and the fix.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ConfigError, ConfigErrorCode, type ConfigIssue, type DaemonUrl } from "@photoncloud/daemon";
import type { MemberInfo } from "../service/members.js";
import { syncFile, syncFolder } from "../storage/sync-files.js";
import { deriveClusterId, deriveMemberId, formatId } from "./ids.js";
import { parseInitialCluster } from "./initial-cluster.js";
import type { MemberConfig } from "./member-options.js";

/** What `<data-dir>/raft/member.json` records at first start, so a restart needs no initial flags. */
export interface StoredIdentity {
  name: string;
  memberId: bigint;
  /** 0n while a joining member has not yet learned it from the cluster. */
  clusterId: bigint;
}

export interface MemberPlan {
  name: string;
  memberId: bigint;
  clusterId: bigint;
  advertisePeerUrls: string[];
  advertiseClientUrls: string[];
  /** Bootstrap configuration (new), the peers to contact (existing), or [] on restart. */
  initialMembers: MemberInfo[];
  join: boolean;
  restart: boolean;
}

/** etcd's derived defaults: advertise URLs default to the listen URLs, the cluster to this member. */
export function resolveMemberUrls(config: MemberConfig): {
  advertiseClientUrls: DaemonUrl[];
  initialAdvertisePeerUrls: DaemonUrl[];
  initialCluster: string;
} {
  const advertiseClientUrls = config.advertiseClientUrls ?? config.listenClientUrls;
  const initialAdvertisePeerUrls = config.initialAdvertisePeerUrls ?? config.listenPeerUrls;
  const initialCluster =
    config.initialCluster ?? initialAdvertisePeerUrls.map((u) => `${config.name}=${u.href}`).join(",");
  return { advertiseClientUrls, initialAdvertisePeerUrls, initialCluster };
}

const IDENTITY_FILE = "member.json";
/** The identity of a first start, made durable before its log is created (see `stageIdentity`). */
const STAGED_IDENTITY_FILE = "member.json.staged";
const LOG_FILE = "raft.db";

/**
 * This member's identity from <raft dir>/member.json; undefined before its first start. A first
 * start interrupted after its log was created completes here: the identity it staged for that log
 * becomes member.json. A log with no identity, or a file that cannot be read, stops the start
 * with a ConfigError that names the file: going on under an ID derived again from the flags would
 * be wrong for a member added with a server-chosen ID.
 */
export function readIdentity(raftDir: string): StoredIdentity | undefined {
  const path = join(raftDir, IDENTITY_FILE);
  const staged = join(raftDir, STAGED_IDENTITY_FILE);
  if (!existsSync(path) && existsSync(staged)) {
    if (existsSync(join(raftDir, LOG_FILE))) commitIdentity(raftDir);
    else {
      // The first start stopped before its log existed: it starts again from the beginning.
      rmSync(staged);
      syncFolder(raftDir);
    }
  }
  if (!existsSync(path)) {
    if (!existsSync(join(raftDir, LOG_FILE))) return undefined;
    throw identityError(path, "is missing while raft.db is there");
  }
  let j: { name?: unknown; memberId?: unknown; clusterId?: unknown };
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw identityError(path, `cannot be read (${(err as Error).message})`);
  }
  if (typeof j.name !== "string" || typeof j.memberId !== "string" || typeof j.clusterId !== "string")
    throw identityError(path, "does not hold a name, memberId and clusterId");
  return { name: j.name, memberId: BigInt(`0x${j.memberId}`), clusterId: BigInt(`0x${j.clusterId}`) };
}

function identityError(path: string, what: string): ConfigError {
  return new ConfigError([
    {
      code: ConfigErrorCode.FileUnreadable,
      key: "--data-dir",
      message:
        `--data-dir: ${path} ${what}, so this member does not know its ID: remove the member from its ` +
        "cluster, empty the data dir and add the member again (or restore it from a snapshot)",
    },
  ]);
}

function identityText(id: StoredIdentity): string {
  const text = JSON.stringify({
    name: id.name,
    memberId: formatId(id.memberId),
    clusterId: formatId(id.clusterId),
  });
  return `${text}\n`;
}

/** Writes `text` to `path` durably: a synced temporary file renamed over it, and the folder synced. */
function writeDurably(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
  syncFile(`${path}.tmp`);
  renameSync(`${path}.tmp`, path);
  syncFolder(dirname(path));
}

/** Replaces member.json (a cluster ID learned after the first start). */
export function writeIdentity(raftDir: string, id: StoredIdentity): void {
  writeDurably(join(raftDir, IDENTITY_FILE), identityText(id));
}

/**
 * A first start's identity, durable before its log is created; `commitIdentity` makes it
 * member.json once the log exists. A crash in between leaves either no log (the start is made
 * again) or a log with its identity staged beside it (completed by `readIdentity`).
 */
export function stageIdentity(raftDir: string, id: StoredIdentity): void {
  writeDurably(join(raftDir, STAGED_IDENTITY_FILE), identityText(id));
}

export function commitIdentity(raftDir: string): void {
  renameSync(join(raftDir, STAGED_IDENTITY_FILE), join(raftDir, IDENTITY_FILE));
  syncFolder(raftDir);
}

function issue(key: string, message: string): ConfigIssue {
  return { code: ConfigErrorCode.Conflict, key, message: `${key}: ${message}` };
}

/** etcd's upper bound on --election-timeout (embed.Config's maxElectionMs). */
const ELECTION_TIMEOUT_MS_MAX = 50_000;

function timingIssues(config: MemberConfig): ConfigIssue[] {
  const min = 5 * config.heartbeatIntervalMs;
  if (config.electionTimeoutMs > ELECTION_TIMEOUT_MS_MAX)
    return [
      issue(
        "--election-timeout",
        `${config.electionTimeoutMs} ms is too long: a leader lost would go unnoticed that long; set it to at ` +
          `most ${ELECTION_TIMEOUT_MS_MAX} (etcd's limit; about 10 heartbeats is usual)`,
      ),
    ];
  if (config.electionTimeoutMs >= min) return [];
  return [
    issue(
      "--election-timeout",
      `${config.electionTimeoutMs} ms is less than 5 × --heartbeat-interval (${config.heartbeatIntervalMs} ms); ` +
        `set --election-timeout to at least ${min} (about 10 heartbeats is usual) or lower --heartbeat-interval`,
    ),
  ];
}

/** Advertised peer URLs no peer can reach (port 0, a wildcard address); also checked by offline restores. */
export function advertiseIssues(urls: readonly DaemonUrl[]): ConfigIssue[] {
  const bad = urls.find((u) => u.port === 0 || u.host === "0.0.0.0" || u.host === "::");
  if (bad === undefined) return [];
  return [
    issue(
      "--initial-advertise-peer-urls",
      `${bad.href} cannot be reached by peers (port 0 or a wildcard address); give the address and port ` +
        "other members use, e.g. --initial-advertise-peer-urls http://10.0.0.1:2380",
    ),
  ];
}

/** A wildcard advertised client URL (usually --listen-client-urls taken as is) reaches no client. */
function clientAdvertiseIssues(config: MemberConfig, urls: readonly DaemonUrl[]): ConfigIssue[] {
  const bad = urls.find((u) => u.host === "0.0.0.0" || u.host === "::");
  if (bad === undefined) return [];
  const from = config.advertiseClientUrls === undefined ? " (taken from --listen-client-urls)" : "";
  return [
    issue(
      "--advertise-client-urls",
      `${bad.href}${from} is a wildcard address, which no client can dial from the member list; give ` +
        "the address clients use, e.g. --advertise-client-urls http://10.0.0.1:2379",
    ),
  ];
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(",") === [...b].sort().join(",");
}

/** The bootstrap members of a first start, with this member's entry checked against its own flags. */
function initialMembersOf(config: MemberConfig, advertisePeer: string[], clusterText: string): MemberInfo[] {
  const token = config.initialClusterToken;
  const members = parseInitialCluster(clusterText, token);
  const self = members.find((m) => m.name === config.name);
  const example = `${config.name}=${advertisePeer[0] ?? "http://127.0.0.1:2380"}`;
  if (self === undefined) {
    throw new ConfigError(
      issue(
        "--initial-cluster",
        `does not list this member (--name ${config.name}); add ${example}, or start with the --name it lists`,
      ),
    );
  }
  if (!sameUrls(self.peerUrls, advertisePeer)) {
    throw new ConfigError(
      issue(
        "--initial-cluster",
        `lists ${config.name} with ${self.peerUrls.join(",")} but --initial-advertise-peer-urls is ` +
          `${advertisePeer.join(",")}; make them the same`,
      ),
    );
  }
  return members;
}

/**
 * The plan for a first start (no identity file yet). A joiner's `knownMembers` (the cluster's list,
 * from a running member) replaces the --initial-cluster guess when it lists this member.
 */
function firstStartPlan(config: MemberConfig, knownMembers: readonly MemberInfo[] | undefined): MemberPlan {
  const urls = resolveMemberUrls(config);
  const advertisePeerUrls = urls.initialAdvertisePeerUrls.map((u) => u.href);
  const advertiseClientUrls = urls.advertiseClientUrls.map((u) => u.href);
  const join = config.initialClusterState === "existing";
  const problems = [
    ...timingIssues(config),
    ...advertiseIssues(urls.initialAdvertisePeerUrls),
    ...clientAdvertiseIssues(config, urls.advertiseClientUrls),
  ];
  if (!join && config.memberId !== undefined) {
    problems.push(
      issue(
        "--member-id",
        "is only accepted with --initial-cluster-state existing: in a new cluster every member derives " +
          "every ID from --initial-cluster-token and the names in --initial-cluster; remove --member-id",
      ),
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const listed = initialMembersOf(config, advertisePeerUrls, urls.initialCluster);
  const derived = deriveMemberId(config.initialClusterToken, config.name);
  const memberId = config.memberId ?? derived;
  if (memberId === 0n) throw new ConfigError(issue("--member-id", "must not be 0; give a non-zero uint64"));
  // Client URLs are left empty here (every member must bootstrap identical metadata); each member
  // publishes its own through the log once it runs.
  const guessed = listed.map((m) => (m.id === derived ? { ...m, id: memberId } : m));
  const initialMembers = join && knownMembers?.some((m) => m.id === memberId) ? [...knownMembers] : guessed;
  if (join && guessed.length < 2) {
    throw new ConfigError(
      issue(
        "--initial-cluster",
        "lists only this member, but --initial-cluster-state existing joins a running cluster: list its " +
          `members too (name=peer-url each), e.g. n1=http://127.0.0.1:2380,${config.name}=${advertisePeerUrls[0]}`,
      ),
    );
  }
  const clusterId = join
    ? 0n
    : deriveClusterId(
        config.initialClusterToken,
        initialMembers.map((m) => m.id),
      );
  return {
    name: config.name,
    memberId,
    clusterId,
    advertisePeerUrls,
    advertiseClientUrls,
    initialMembers,
    join,
    restart: false,
  };
}

/** The plan for a restart: the identity file decides; the initial-cluster flags are ignored. */
function restartPlan(config: MemberConfig, stored: StoredIdentity): MemberPlan {
  const problems = timingIssues(config);
  if (config.memberId !== undefined && config.memberId !== stored.memberId) {
    problems.push(
      issue(
        "--member-id",
        `${formatId(config.memberId)} does not match this data directory's member ${formatId(stored.memberId)}; ` +
          "remove --member-id or use another --data-dir",
      ),
    );
  }
  if (config.name !== stored.name) {
    problems.push(
      issue(
        "--name",
        `this data directory belongs to member "${stored.name}" (${formatId(stored.memberId)}); start it ` +
          `with --name ${stored.name}, or use another --data-dir for "${config.name}"`,
      ),
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  // (A wildcard advertised client URL is refused on a first start only: a member that ran with one
  // before this check keeps restarting.)
  const urls = resolveMemberUrls(config);
  return {
    name: stored.name,
    memberId: stored.memberId,
    clusterId: stored.clusterId,
    advertisePeerUrls: urls.initialAdvertisePeerUrls.map((u) => u.href),
    advertiseClientUrls: urls.advertiseClientUrls.map((u) => u.href),
    initialMembers: [],
    join: false,
    restart: true,
  };
}

/** Validates `config` and decides how to start; throws ConfigError listing every problem found. */
export function planMember(
  config: MemberConfig,
  stored: StoredIdentity | undefined,
  knownMembers?: readonly MemberInfo[],
): MemberPlan {
  return stored === undefined ? firstStartPlan(config, knownMembers) : restartPlan(config, stored);
}
