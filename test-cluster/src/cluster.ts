// A cluster of supervised members on loopback: N chainfire and M flaredb Raft members (etcd-style
// flags) and optionally one iam. Used by `cluster up` (fixed, well-known ports) and by every lane
// (ephemeral ports, short Raft timeouts, its own run directory). With --netns each member runs in its
// own network namespace at its own address instead (see netns.ts).
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type DaemonCommand, type DaemonKind, locateDaemon, requireDaemon } from "./daemons.js";
import type { NetnsNetwork } from "./netns.js";
import { freePorts } from "./ports.js";
import { type DevSecrets, iamSecretEnv } from "./secrets.js";
import { SupervisedProcess } from "./supervisor.js";

export type RaftKind = "chainfire" | "flaredb";

export interface MemberDescriptor {
  /** `<kind>/<name>`, unique in the cluster. */
  readonly id: string;
  readonly kind: DaemonKind;
  readonly name: string;
  readonly clientUrl: string;
  /** Raft peer URL (chainfire, flaredb). */
  readonly peerUrl?: string;
  /** Serves /health, /metrics and /version. */
  readonly metricsUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** With --netns: the member's own namespace and address on the run's bridge. */
  readonly netns?: { readonly member: string; readonly namespace: string; readonly address: string };
}

export interface RaftTiming {
  readonly heartbeatMs: number;
  readonly electionMs: number;
  readonly snapshotCount: number;
}

/** etcd's defaults: what an operator gets from a plain start. */
export const defaultTiming: RaftTiming = { heartbeatMs: 100, electionMs: 1000, snapshotCount: 100_000 };
/** Lanes: elections and snapshots happen within their few-minute budget. */
export const laneTiming: RaftTiming = { heartbeatMs: 50, electionMs: 500, snapshotCount: 500 };

export interface ClusterOptions {
  readonly dir: string;
  readonly chainfire: number;
  readonly flaredb: number;
  readonly iam: boolean;
  /** "fixed": etcd-like well-known ports (2379, 22379, 32379, ...); "ephemeral": free ports. */
  readonly ports: "fixed" | "ephemeral";
  readonly token?: string;
  readonly timing?: RaftTiming;
  /** Required when iam is in the cluster. */
  readonly secrets?: DevSecrets;
  /** The data directories were prepared before the first start (e.g. restored from a snapshot). */
  readonly keepData?: boolean;
  /**
   * Each member in its own namespace on this network, at its own address with the well-known ports
   * of member 1 (`ports` is then ignored). `netnsLabel` tells apart clusters sharing one network.
   */
  readonly netns?: NetnsNetwork;
  readonly netnsLabel?: string;
}

/** Well-known ports: member i of chainfire uses 2379/2380/2381 + 10000·(2i), as etcd's own examples do. */
export function fixedPorts(
  kind: DaemonKind,
  index: number,
): { client: number; peer: number; metrics: number } {
  if (kind === "iam") return { client: 8543, peer: 0, metrics: 8544 };
  const base = kind === "chainfire" ? 2379 : 2479;
  const offset = index === 0 ? 0 : 10_000 * (index + 1);
  return { client: base + offset, peer: base + 1 + offset, metrics: base + 2 + offset };
}

export function nodeName(index: number): string {
  return `node${String(index + 1).padStart(2, "0")}`;
}

export class ClusterMember {
  readonly proc: SupervisedProcess;
  constructor(
    readonly desc: MemberDescriptor,
    command: string,
    args: string[],
    env: Record<string, string>,
  ) {
    this.proc = new SupervisedProcess({
      name: desc.id,
      command,
      args,
      env,
      logFile: desc.logFile,
      healthUrl: `${desc.metricsUrl}/health`,
    });
  }
}

export interface Unavailable {
  readonly kind: DaemonKind;
  readonly reason: string;
}

export class Cluster {
  readonly members = new Map<string, ClusterMember>();
  readonly unavailable: Unavailable[] = [];
  readonly token: string;
  readonly timing: RaftTiming;

  private constructor(readonly options: ClusterOptions) {
    this.token = options.token ?? `photon-${randomBytes(4).toString("hex")}`;
    this.timing = options.timing ?? defaultTiming;
    mkdirSync(join(options.dir, "logs"), { recursive: true });
    mkdirSync(join(options.dir, "data"), { recursive: true });
  }

  /** Plans every member (ports, flags, directories); nothing starts until start(). */
  static async create(options: ClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(options);
    for (const kind of ["chainfire", "flaredb", "iam"] as const) {
      const count = kind === "iam" ? (options.iam ? 1 : 0) : options[kind];
      if (count === 0) continue;
      const location = locateDaemon(kind);
      if (location.available) await cluster.plan(kind, count, location);
      else cluster.unavailable.push({ kind, reason: location.reason });
    }
    return cluster;
  }

  /** (Re)plans the `count` initial members of one kind: ports, flags and directories. */
  private async plan(kind: DaemonKind, count: number, location: DaemonCommand) {
    if (kind === "iam") {
      const d = await this.describe("iam", 0);
      this.addMember(d, location, iamArgs(d), this.options.secrets ? iamSecretEnv(this.options.secrets) : {});
      return;
    }
    const descs = [];
    for (let i = 0; i < count; i++) descs.push(await this.describe(kind, i));
    const initialCluster = descs.map((d) => `${d.name}=${d.peerUrl}`).join(",");
    for (const d of descs) this.addMember(d, location, raftArgs(d, this, initialCluster, "new"));
  }

  /** A descriptor for member `index` of `kind`, with its ports and directories. */
  async describe(kind: DaemonKind, index: number, name = kind === "iam" ? "iam" : nodeName(index)) {
    const { netns, netnsLabel } = this.options;
    const slug = kind === "iam" ? "iam" : `${kind}-${name}`;
    const ns = netns?.ensureMember(netnsLabel ? `${netnsLabel}-${slug}` : slug);
    const ports =
      ns !== undefined
        ? fixedPorts(kind, 0)
        : this.options.ports === "fixed"
          ? fixedPorts(kind, index)
          : await freePorts(3).then(([client, peer, metrics]) => ({
              client: client!,
              peer: peer!,
              metrics: metrics!,
            }));
    const host = ns?.address ?? "127.0.0.1";
    const url = (port: number) => `http://${host}:${port}`;
    const id = kind === "iam" ? "iam" : `${kind}/${name}`;
    const desc: MemberDescriptor = {
      id,
      kind,
      name,
      clientUrl: url(ports.client),
      ...(kind === "iam" ? {} : { peerUrl: url(ports.peer) }),
      metricsUrl: url(ports.metrics),
      dataDir: join(this.options.dir, "data", kind === "iam" ? "iam" : `${kind}-${name}`),
      logFile: join(this.options.dir, "logs", `${kind === "iam" ? "iam" : `${kind}-${name}`}.log`),
      ...(ns === undefined
        ? {}
        : { netns: { member: ns.member, namespace: ns.namespace, address: ns.address } }),
    };
    return desc;
  }

  addMember(
    desc: MemberDescriptor,
    location: DaemonCommand,
    args: string[],
    extraEnv: Record<string, string> = {},
  ): ClusterMember {
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...location.env,
      ...extraEnv,
    };
    let command = location.command;
    let argv = [...location.args, ...args];
    if (desc.netns !== undefined) {
      if (this.options.netns === undefined)
        throw new Error(`${desc.id} has a namespace but the cluster has no network`);
      ({ command, args: argv } = this.options.netns.wrap(desc.netns.namespace, command, argv));
    }
    const member = new ClusterMember(desc, command, argv, env);
    this.members.set(desc.id, member);
    return member;
  }

  /**
   * Plans a Raft member that joins the running cluster (`--initial-cluster-state existing`), or
   * re-plans a removed one under the same descriptor; the previous process must be stopped.
   */
  joinMember(desc: MemberDescriptor, initialCluster: string): ClusterMember {
    const previous = this.members.get(desc.id);
    if (previous?.proc.running) throw new Error(`${desc.id} is still running (pid ${previous.proc.pid})`);
    return this.addMember(desc, requireDaemon(desc.kind), raftArgs(desc, this, initialCluster, "existing"));
  }

  member(id: string): ClusterMember {
    const m = this.members.get(id);
    if (m === undefined) throw new Error(`no member ${id} (members: ${[...this.members.keys()].join(", ")})`);
    return m;
  }

  /** Members of one kind, in the order they were added. */
  ofKind(kind: DaemonKind): ClusterMember[] {
    return [...this.members.values()].filter((m) => m.desc.kind === kind);
  }

  /** Starts every member not yet running and waits until each answers its health check. */
  async start(deadlineMs = 60_000, options: { detached?: boolean } = {}): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const pending = [...this.members.values()].filter((m) => !m.proc.running);
      for (const m of pending) m.proc.start(options);
      try {
        await Promise.all(pending.map((m) => m.proc.waitHealthy(deadlineMs)));
        this.everStarted = true;
        return;
      } catch (err) {
        if (!(await this.replanAfterPortClash(attempt))) throw err;
      }
    }
  }

  private everStarted = false;

  /**
   * A free port picked for a member can be taken by another program before the member binds it. On
   * the very first start of an ephemeral-port cluster whose data directories are still empty, the
   * kinds that hit EADDRINUSE are stopped, wiped and planned again on new ports (at most 3 attempts).
   */
  private async replanAfterPortClash(attempt: number): Promise<boolean> {
    const { ports, keepData, netns } = this.options;
    if (ports !== "ephemeral" || netns !== undefined || this.everStarted || attempt >= 3 || keepData)
      return false;
    const clashed = [...this.members.values()].filter(
      (m) => !m.proc.running && /EADDRINUSE/.test(m.proc.logTail(40)),
    );
    if (clashed.length === 0) return false;
    await this.stop(5000);
    for (const kind of new Set(clashed.map((m) => m.desc.kind))) {
      const members = this.ofKind(kind);
      for (const m of members) {
        rmSync(m.desc.dataDir, { recursive: true, force: true });
        this.members.delete(m.desc.id);
      }
      await this.plan(kind, members.length, requireDaemon(kind));
    }
    return true;
  }

  /** SIGTERM to every member at once (SIGKILL after the grace period). */
  async stop(graceMs = 10_000): Promise<void> {
    await Promise.all([...this.members.values()].map((m) => m.proc.stop(graceMs)));
  }
}

/** The etcd-style flags of one Raft member. */
export function raftArgs(
  d: MemberDescriptor,
  cluster: { token: string; timing: RaftTiming },
  initialCluster: string,
  state: "new" | "existing",
): string[] {
  return [
    ...["--name", d.name, "--data-dir", d.dataDir],
    ...["--listen-client-urls", d.clientUrl, "--advertise-client-urls", d.clientUrl],
    ...["--listen-peer-urls", d.peerUrl!, "--initial-advertise-peer-urls", d.peerUrl!],
    ...["--listen-metrics-urls", d.metricsUrl],
    ...["--initial-cluster", initialCluster, "--initial-cluster-state", state],
    ...["--initial-cluster-token", cluster.token],
    ...["--heartbeat-interval", String(cluster.timing.heartbeatMs)],
    ...["--election-timeout", String(cluster.timing.electionMs)],
    ...["--snapshot-count", String(cluster.timing.snapshotCount)],
  ];
}

/** iam in dev mode: secrets come from the environment (see secrets.ts), never from flags. */
function iamArgs(d: MemberDescriptor): string[] {
  return [
    "--dev",
    ...["--data-dir", d.dataDir],
    ...["--listen-client-urls", d.clientUrl, "--listen-http-urls", d.metricsUrl],
  ];
}
