// The dev cluster behind `pnpm cluster up|down|status`: 3 chainfire + 3 flaredb + 1 iam on
// loopback (or, with --netns, each in its own network namespace), data and logs under
// work/dev-cluster/, every endpoint in work/dev-cluster/cluster.json.
// `up` is the supervisor: it restarts a member that dies on its own and stops everything on Ctrl-C
// or SIGTERM (which is what `down` sends it).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type ClusterMember, type MemberDescriptor } from "./cluster.js";
import { NetnsNetwork, type NetworkDescription, cleanLeftovers } from "./netns.js";
import { repoRoot, workRoot } from "./paths.js";
import { delay, fatal, pollUntil } from "./poll.js";
import { busyPorts } from "./ports.js";
import { memberStatus, waitForLeader } from "./raft-view.js";
import { type DevSecrets, ensureDevSecrets } from "./secrets.js";
import { formatTable, toJson } from "./table.js";

export interface UpOptions {
  readonly fresh?: boolean;
  readonly ephemeralPorts?: boolean;
  readonly detach?: boolean;
  readonly chainfire?: number;
  readonly flaredb?: number;
  readonly deadlineMs?: number;
  /** Each member in its own network namespace on a private bridge (root and iproute2). */
  readonly netns?: boolean;
}

export interface ClusterFile {
  readonly state: "starting" | "running" | "stopped";
  readonly supervisorPid: number;
  readonly startedAt: string;
  readonly dir: string;
  readonly token: string;
  readonly members: (MemberDescriptor & { pid: number | null })[];
  readonly endpoints: Record<string, Record<string, string[]>>;
  readonly unavailable: { kind: string; reason: string }[];
  readonly secrets: Omit<DevSecrets, "dir"> & { dir: string; note: string };
  readonly etcdctl: string | null;
  /** With --netns: the bridge, subnet and each member's namespace and address (also network.json). */
  readonly network: NetworkDescription | null;
}

export function devClusterDir(): string {
  return join(workRoot(), "dev-cluster");
}

function clusterFilePath(): string {
  return join(devClusterDir(), "cluster.json");
}

export function readClusterFile(): ClusterFile | undefined {
  const path = clusterFilePath();
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, "utf8")) as ClusterFile;
}

function alive(pid: number | null | undefined): boolean {
  if (pid === null || pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function endpointsOf(members: readonly MemberDescriptor[]): ClusterFile["endpoints"] {
  const out: ClusterFile["endpoints"] = {};
  for (const m of members) {
    const e = (out[m.kind] ??= {});
    if (m.kind === "iam") {
      (e.grpc ??= []).push(m.clientUrl);
      (e.http ??= []).push(m.metricsUrl);
      (e.jwks ??= []).push(`${m.metricsUrl}/.well-known/jwks.json`);
      continue;
    }
    (e.client ??= []).push(m.clientUrl);
    (e.peer ??= []).push(m.peerUrl!);
    (e.metrics ??= []).push(`${m.metricsUrl}/metrics`);
    (e.health ??= []).push(`${m.metricsUrl}/health`);
  }
  return out;
}

export function etcdctlCommand(chainfireClientUrls: readonly string[]): string {
  const endpoints = chainfireClientUrls.map((u) => u.replace(/^http:\/\//, "")).join(",");
  return `ETCDCTL_API=3 etcdctl --endpoints=${endpoints} member list -w table`;
}

function writeClusterFile(
  cluster: Cluster,
  network: NetnsNetwork | undefined,
  secrets: DevSecrets,
  state: ClusterFile["state"],
  startedAt: Date,
) {
  const members = [...cluster.members.values()].map((m) => ({
    ...m.desc,
    pid: m.proc.running ? m.proc.pid! : null,
  }));
  const chainfire = members.filter((m) => m.kind === "chainfire").map((m) => m.clientUrl);
  const file: ClusterFile = {
    state,
    supervisorPid: process.pid,
    startedAt: startedAt.toISOString(),
    dir: devClusterDir(),
    token: cluster.token,
    members,
    endpoints: endpointsOf(members),
    unavailable: cluster.unavailable,
    secrets: {
      dir: secrets.dir,
      adminTokenFile: secrets.adminTokenFile,
      masterKeyFile: secrets.masterKeyFile,
      signingKeyFile: secrets.signingKeyFile,
      note: "files are mode 0600; export IAM_ADMIN_TOKEN=$(cat <adminTokenFile>) to use iamctl",
    },
    etcdctl: chainfire.length > 0 ? etcdctlCommand(chainfire) : null,
    network: network?.describe() ?? null,
  };
  writeFileSync(clusterFilePath(), `${toJson(file)}\n`);
  return file;
}

async function refuseIfRunning(): Promise<void> {
  const existing = readClusterFile();
  if (existing !== undefined && existing.state !== "stopped" && alive(existing.supervisorPid)) {
    throw new Error(
      `a dev cluster is already running (supervisor pid ${existing.supervisorPid}): ` +
        "see `pnpm cluster status`, or stop it with `pnpm cluster down`",
    );
  }
}

async function checkPorts(cluster: Cluster): Promise<void> {
  const wanted = [...cluster.members.values()].flatMap((m) =>
    [m.desc.clientUrl, m.desc.peerUrl, m.desc.metricsUrl]
      .filter(Boolean)
      .map((u) => Number(new URL(u!).port)),
  );
  const busy = await busyPorts(wanted);
  if (busy.length > 0) {
    throw new Error(
      `ports already in use on 127.0.0.1: ${busy.join(", ")}. Stop what uses them (\`pnpm cluster down\` if it is ` +
        "an earlier dev cluster), or run `pnpm cluster up --ephemeral-ports`",
    );
  }
}

/** Restarts a member that exits on its own, with a back-off, at most 5 times per minute. */
function supervise(member: ClusterMember, log: (line: string) => void, restarted: () => void): void {
  const recent: number[] = [];
  member.proc.onUnexpectedExit = (exit) => {
    const now = Date.now();
    while (recent.length > 0 && now - recent[0]! > 60_000) recent.shift();
    if (recent.length >= 5) {
      log(
        `${member.desc.id} exited (code ${exit.code}, signal ${exit.signal}) 5 times in a minute; not restarting`,
      );
      return;
    }
    recent.push(now);
    log(
      `${member.desc.id} exited (code ${exit.code}, signal ${exit.signal}); restarting, see ${member.desc.logFile}`,
    );
    void delay(500 * recent.length).then(() => {
      if (member.proc.running) return;
      member.proc.start();
      // cluster.json carries every pid, so that `down` can still stop members if this supervisor dies.
      restarted();
    });
  };
}

export function printEndpoints(file: ClusterFile, out: (line: string) => void): void {
  const rows = file.members.map((m) => [
    m.id,
    m.clientUrl,
    m.peerUrl ?? "-",
    m.metricsUrl,
    String(m.pid ?? "-"),
  ]);
  out(formatTable(["member", "client (gRPC)", "peer", "health/metrics", "pid"], rows));
  for (const u of file.unavailable) out(`${u.kind}: not started — ${u.reason}`);
  out(`\ncluster.json: ${join(file.dir, "cluster.json")}`);
  out(`logs:         ${join(file.dir, "logs")}/`);
  if (file.endpoints.iam) out(`iam secrets:  ${file.secrets.dir}/ (mode 0600)`);
  if (file.etcdctl !== null) out(`\nTry:\n  ${file.etcdctl}`);
}

/**
 * The members' data remembers their peer URLs, so a dev cluster restarted on existing data must keep
 * its addresses: loopback stays loopback, and a --netns cluster gets its previous subnet back (the
 * members are planned in the same order, so each gets its old address). Returns that subnet.
 */
function previousSubnet(dir: string, netns: boolean): string | undefined {
  const data = join(dir, "data");
  const hasData = existsSync(data) && readdirSync(data).length > 0;
  const previous = readClusterFile();
  if (!hasData || previous === undefined) return undefined;
  const previousNetns = previous.network !== null && previous.network !== undefined;
  if (previousNetns !== netns) {
    throw new Error(
      `the data in ${data} was created ${previousNetns ? "with" : "without"} --netns and its members remember ` +
        `${previousNetns ? `addresses in ${previous.network!.subnet}` : "127.0.0.1 peer URLs"}: start it ` +
        `${previousNetns ? "with" : "without"} --netns, or add --fresh to start over`,
    );
  }
  return previous.network?.subnet;
}

/** `cluster up`: start, print, then supervise in the foreground until SIGINT/SIGTERM. */
export async function up(options: UpOptions, out: (line: string) => void): Promise<number> {
  await refuseIfRunning();
  if (options.detach) return upDetached(options, out);
  const dir = devClusterDir();
  if (options.fresh) rmSync(join(dir, "data"), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const secrets = ensureDevSecrets(join(dir, "secrets"));
  const subnet = previousSubnet(dir, options.netns === true);
  const network = options.netns ? NetnsNetwork.create({ subnet }) : undefined;
  if (network !== undefined) {
    network.onChange = (d) => writeFileSync(join(dir, "network.json"), `${toJson(d)}\n`);
    out(`network namespaces on bridge ${network.bridge} (${network.subnet})`);
  }
  const cluster = await Cluster.create({
    dir,
    chainfire: options.chainfire ?? 3,
    flaredb: options.flaredb ?? 3,
    iam: true,
    ports: options.ephemeralPorts ? "ephemeral" : "fixed",
    token: "photoncloud-dev-cluster",
    secrets,
    ...(network === undefined ? {} : { netns: network }),
  });
  for (const u of cluster.unavailable) out(`${u.kind}: skipped — ${u.reason}`);
  if (cluster.members.size === 0) throw new Error("no daemon can run yet: nothing to start");
  // In namespaces every member has its own address: the host's ports do not matter.
  if (!options.ephemeralPorts && network === undefined) await checkPorts(cluster);
  const startedAt = new Date();
  let stopping = false;
  const stopAll = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    out(`\n${signal}: stopping the dev cluster ...`);
    await cluster.stop();
    writeClusterFile(cluster, network, secrets, "stopped", startedAt);
    network?.destroy();
    out("dev cluster stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void stopAll("SIGINT"));
  process.on("SIGTERM", () => void stopAll("SIGTERM"));
  writeClusterFile(cluster, network, secrets, "starting", startedAt);
  try {
    await cluster.start(options.deadlineMs ?? 60_000);
    for (const kind of ["chainfire", "flaredb"] as const) {
      const members = cluster.ofKind(kind).map((m) => m.desc);
      if (members.length > 0) await waitForLeader(members, options.deadlineMs ?? 60_000);
    }
  } catch (err) {
    await cluster.stop();
    writeClusterFile(cluster, network, secrets, "stopped", startedAt);
    network?.destroy();
    throw err;
  }
  const file = writeClusterFile(cluster, network, secrets, "running", startedAt);
  const rewrite = () =>
    void writeClusterFile(cluster, network, secrets, stopping ? "stopped" : "running", startedAt);
  for (const m of cluster.members.values()) supervise(m, (l) => out(l), rewrite);
  printEndpoints(file, out);
  out("\nThe cluster runs until Ctrl-C (or `pnpm cluster down` from another shell).");
  await new Promise<never>(() => {});
  return 0;
}

/** `up --detach`: the same supervisor, as a background process; returns once the cluster is up. */
async function upDetached(options: UpOptions, out: (line: string) => void): Promise<number> {
  const dir = devClusterDir();
  mkdirSync(join(dir, "logs"), { recursive: true });
  const logFile = join(dir, "logs", "supervisor.log");
  const args = [join(repoRoot(), "test-cluster", "bin", "cluster.js"), "up"];
  if (options.fresh) args.push("--fresh");
  if (options.ephemeralPorts) args.push("--ephemeral-ports");
  if (options.netns) args.push("--netns");
  const fd = openSync(logFile, "a");
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: process.env,
  });
  child.unref();
  let exited = false;
  child.once("exit", () => (exited = true));
  const file = await pollUntil(
    "the detached dev cluster to report running",
    () => {
      if (exited) {
        fatal(
          new Error(`the supervisor exited; see ${logFile}:\n${readFileSync(logFile, "utf8").slice(-2000)}`),
        );
      }
      const f = readClusterFile();
      return f?.state === "running" && f.supervisorPid === child.pid ? f : undefined;
    },
    { deadlineMs: options.deadlineMs ?? 90_000, intervalMs: 200 },
  );
  printEndpoints(file, out);
  out(
    `\nRunning in the background (supervisor pid ${file.supervisorPid}, log ${logFile}); stop with \`pnpm cluster down\`.`,
  );
  return 0;
}

/** `cluster down`: ask the supervisor to stop; if it is gone, stop stray members directly. */
export async function down(out: (line: string) => void): Promise<number> {
  const file = readClusterFile();
  if (file === undefined) {
    out("no dev cluster: work/dev-cluster/cluster.json does not exist");
    return 0;
  }
  if (alive(file.supervisorPid) && file.state !== "stopped") process.kill(file.supervisorPid, "SIGTERM");
  else for (const m of file.members) if (ownsPid(m.pid, m.dataDir)) process.kill(m.pid!, "SIGTERM");
  const pids = [file.supervisorPid, ...file.members.map((m) => m.pid)];
  try {
    await pollUntil(
      "every dev-cluster process to exit",
      () => (pids.some((p) => alive(p)) ? undefined : true),
      {
        deadlineMs: 30_000,
      },
    );
  } catch {
    for (const m of file.members) if (ownsPid(m.pid, m.dataDir)) process.kill(m.pid!, "SIGKILL");
  }
  // A supervisor that died could not remove its namespaces and bridge: remove them now.
  if (file.network !== null && file.network !== undefined && !alive(file.supervisorPid)) {
    try {
      for (const p of cleanLeftovers().problems) out(`could not remove ${p}`);
    } catch (err) {
      out(`the cluster's network namespaces are left: ${(err as Error).message}`);
    }
  }
  out("dev cluster stopped");
  return 0;
}

/** A pid from cluster.json may have been reused: only signal it if its command line names the member's data. */
function ownsPid(pid: number | null, dataDir: string): boolean {
  if (!alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dataDir);
  } catch {
    return false;
  }
}

/** `cluster status`: one row per member with health, leader and term, from the members themselves. */
export async function status(format: "table" | "json", out: (line: string) => void): Promise<number> {
  const file = readClusterFile();
  if (file === undefined) {
    out("no dev cluster: start one with `pnpm cluster up`");
    return 1;
  }
  const statuses = await Promise.all(file.members.map((m) => memberStatus(m)));
  if (format === "json") {
    out(toJson({ state: file.state, supervisorPid: file.supervisorPid, members: statuses }));
  } else {
    const rows = statuses.map((s) => [
      s.id,
      s.clientUrl,
      s.healthy ? "healthy" : `UNHEALTHY${s.error ? ` (${s.error.slice(0, 60)})` : ""}`,
      s.memberId ?? "-",
      s.leaderId ?? "-",
      s.term?.toString() ?? "-",
      s.appliedIndex?.toString() ?? "-",
      s.isLearner === undefined ? "-" : s.isLearner ? "learner" : "voter",
    ]);
    out(`dev cluster: ${file.state} (supervisor pid ${file.supervisorPid}, started ${file.startedAt})`);
    out(formatTable(["member", "client", "health", "id", "leader", "term", "applied", "role"], rows));
    for (const u of file.unavailable) out(`${u.kind}: not started — ${u.reason}`);
  }
  return statuses.every((s) => s.healthy) ? 0 : 1;
}
