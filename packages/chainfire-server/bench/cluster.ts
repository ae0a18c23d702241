// Starts a 3-member cluster of real processes on loopback with etcd's flags — either etcd itself or
// the chainfire daemon (whose flags mirror etcd's) — so benchmarks and differential tests start both
// the same way. Used by bench/bench.ts and test/etcdctl-*.test.ts.
import { freePort as kitFreePort } from "@photoncloud/daemon/testing";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata } from "@grpc/grpc-js";
import { createClients } from "@photoncloud/chainfire-api";
import { CHAINFIRE_NODE_ARGS, chainfireEnv } from "@photoncloud/daemon";
import { rangeRequest } from "../src/mvcc/messages.js";

export type ClusterKind = "etcd" | "chainfire";

export const PACKAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
export const CHAINFIRE_BIN = join(PACKAGE_DIR, "dist/bin/chainfire.js");

/** Where a member runs: its address, and how its command is started there (e.g. in a network namespace). */
export interface Placement {
  readonly host: string;
  wrap(command: string, args: readonly string[]): { command: string; args: string[] };
}

export interface ClusterMember {
  readonly name: string;
  /** The address its URLs name (127.0.0.1 unless placed elsewhere). */
  readonly host: string;
  readonly placement: Placement | undefined;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  readonly dataDir: string;
  /** host:port of the client URL. */
  readonly endpoint: string;
  process: ChildProcess | null;
  log: string;
}

export interface ClusterOptions {
  kind: ClusterKind;
  /** Parent directory; each member's data dir is <dir>/<name>. */
  dir: string;
  size?: number;
  token?: string;
  heartbeatMs?: number;
  electionMs?: number;
  /** Data dirs already prepared (e.g. by `snapshot restore`): keep them instead of wiping. */
  keepDataDirs?: boolean;
  extraArgs?: string[];
  /**
   * Node.js arguments for chainfire daemons (e.g. `--cpu-prof`); ignored for etcd. Unset, the ones
   * chainfire is deployed with (CHAINFIRE_NODE_ARGS), so tests run the daemon as operators do.
   */
  nodeArgs?: readonly string[];
  /** The chainfire daemon's script: this package's build unless given (an A/B against another build). */
  bin?: string;
  /** Where each member (by name) runs; on loopback unless given. */
  place?: (name: string) => Placement;
}

export function hasBinary(name: string): boolean {
  return spawnSync("which", [name]).status === 0;
}

/**
 * A free loopback port from below the kernel's ephemeral range (the daemon kit's test helper): a
 * port from port 0 may be taken by an outgoing connection before the member binds it.
 */
export const freePort = kitFreePort;

export class MemberExitedError extends Error {
  readonly code = "MEMBER_EXITED";
}

/** A member's ports, address and data dir, picked without starting it. */
async function planMember(options: ClusterOptions, name: string): Promise<ClusterMember> {
  const [clientPort, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const placement = options.place?.(name);
  const host = placement?.host ?? "127.0.0.1";
  return {
    name,
    host,
    placement,
    clientPort,
    peerPort,
    metricsPort,
    dataDir: join(options.dir, name),
    endpoint: `${host}:${clientPort}`,
    process: null,
    log: "",
  };
}

export class Cluster {
  private constructor(
    readonly options: ClusterOptions,
    readonly members: ClusterMember[],
  ) {}

  /** Picks ports and names (m1, m2, ...) without starting anything. */
  static async plan(options: ClusterOptions): Promise<Cluster> {
    const members: ClusterMember[] = [];
    for (let i = 1; i <= (options.size ?? 3); i++) members.push(await planMember(options, `m${i}`));
    return new Cluster(options, members);
  }

  /**
   * Plans, starts and waits. A port picked free can be taken by another process before the member
   * binds it (parallel test files): when a member of a fresh cluster exits while starting, the whole
   * cluster is planned again on new ports, a bounded number of times.
   */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const attemptsMax = options.keepDataDirs ? 1 : 3;
    for (let attempt = 1; ; attempt++) {
      const cluster = await Cluster.plan(options);
      cluster.startAll();
      try {
        await cluster.waitReady();
        return cluster;
      } catch (err) {
        cluster.stop();
        if (!(err instanceof MemberExitedError) || attempt >= attemptsMax) throw err;
      }
    }
  }

  get endpoints(): string {
    return this.members.map((m) => m.endpoint).join(",");
  }

  get initialCluster(): string {
    return this.members.map((m) => `${m.name}=http://${m.host}:${m.peerPort}`).join(",");
  }

  /** Plans one more member (ports, data dir) outside the initial cluster, for membership tests. */
  async planExtra(name: string): Promise<ClusterMember> {
    const member = await planMember(this.options, name);
    rmSync(member.dataDir, { recursive: true, force: true });
    return member;
  }

  /** The etcd flags of one member; identical for both kinds. */
  args(m: ClusterMember, joining?: { initialCluster: string }): string[] {
    const o = this.options;
    return [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=http://${m.host}:${m.clientPort}`,
      `--advertise-client-urls=http://${m.host}:${m.clientPort}`,
      `--listen-peer-urls=http://${m.host}:${m.peerPort}`,
      `--listen-metrics-urls=http://${m.host}:${m.metricsPort}`,
      `--initial-advertise-peer-urls=http://${m.host}:${m.peerPort}`,
      `--initial-cluster=${joining?.initialCluster ?? this.initialCluster}`,
      `--initial-cluster-state=${joining ? "existing" : "new"}`,
      `--initial-cluster-token=${o.token ?? `bench-${o.kind}`}`,
      `--heartbeat-interval=${o.heartbeatMs ?? 100}`,
      `--election-timeout=${o.electionMs ?? 1000}`,
      ...(o.extraArgs ?? []),
    ];
  }

  startAll(): void {
    for (const m of this.members) {
      if (!this.options.keepDataDirs) rmSync(m.dataDir, { recursive: true, force: true });
      mkdirSync(this.options.dir, { recursive: true });
      this.startMember(m);
    }
  }

  startMember(m: ClusterMember, joining?: { initialCluster: string }): void {
    const bin = this.options.bin ?? CHAINFIRE_BIN;
    if (this.options.kind === "chainfire" && !existsSync(bin)) {
      throw new Error(`${bin} is missing: build first (pnpm exec tsc -b)`);
    }
    const [command, prefix] =
      this.options.kind === "etcd"
        ? ["etcd", ["--log-level=error"]]
        : [process.execPath, [...(this.options.nodeArgs ?? CHAINFIRE_NODE_ARGS), bin]];
    const started = { command, args: [...prefix, ...this.args(m, joining)] };
    const { command: run, args } = m.placement?.wrap(started.command, started.args) ?? started;
    const child = spawn(run, args, {
      stdio: ["ignore", "pipe", "pipe"],
      // chainfire runs with the environment it is deployed with (see chainfireEnv).
      env: this.options.kind === "chainfire" ? { ...process.env, ...chainfireEnv() } : process.env,
    });
    // Keep the tail of the output (logs go to stdout or stderr) so a failed start can say why.
    const keep = (d: Buffer) => {
      m.log = (m.log + d.toString()).slice(-8000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    m.process = child;
  }

  /** Every member answers a linearizable read (so a leader exists and each member reaches it). */
  async waitReady(deadlineMs = 90_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (const m of this.members) {
      const clients = createClients(m.endpoint);
      try {
        // First a leader (Status, served locally), then a linearizable read through it: readiness
        // as an operator checks it, without sending reads into an election.
        await this.poll(m, deadline, (done) =>
          clients.maintenance.status({}, new Metadata(), { deadline: Date.now() + 3000 }, (err, res) =>
            done(err === null && res.leader !== 0n),
          ),
        );
        await this.poll(m, deadline, (done) =>
          clients.kv.range(
            rangeRequest({ key: Buffer.from("ready") }),
            new Metadata(),
            { deadline: Date.now() + 3000 },
            (err) => done(err === null),
          ),
        );
      } finally {
        clients.close();
      }
    }
    await this.waitPublished(deadline);
  }

  /**
   * Every member lists every member with its client URLs: each has published itself, as etcd
   * members do before serving, so tools that dial members' client URLs (etcdctl's health check
   * before a member add, lease relays) find them.
   */
  private async waitPublished(deadline: number): Promise<void> {
    const m = this.members[0]!;
    const clients = createClients(m.endpoint);
    try {
      await this.poll(m, deadline, (done) =>
        clients.cluster.memberList({}, new Metadata(), { deadline: Date.now() + 3000 }, (err, res) =>
          done(
            err === null &&
              res.members.length === this.members.length &&
              res.members.every((x) => x.clientURLs.length > 0),
          ),
        ),
      );
    } finally {
      clients.close();
    }
  }

  private async poll(
    m: ClusterMember,
    deadline: number,
    attempt: (done: (ok: boolean) => void) => void,
  ): Promise<void> {
    for (;;) {
      if (await new Promise<boolean>((resolve) => attempt(resolve))) return;
      if (m.process?.exitCode !== null && m.process?.exitCode !== undefined) {
        throw new MemberExitedError(
          `${this.options.kind} ${m.name} exited (${m.process.exitCode}): ${m.log}`,
        );
      }
      if (Date.now() > deadline) throw new Error(`${this.options.kind} ${m.name} not ready: ${m.log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  stopMember(m: ClusterMember): void {
    m.process?.kill("SIGKILL");
    m.process = null;
  }

  stop(): void {
    for (const m of this.members) this.stopMember(m);
  }

  /**
   * SIGTERM to every member, then waits (up to `deadlineMs`) for them to exit, so exit-time output
   * such as `--cpu-prof` profiles is written; members still running then are killed.
   */
  async stopGracefully(deadlineMs = 20_000): Promise<void> {
    const exits = this.members.map((m) => {
      const child = m.process;
      if (child === null || child.exitCode !== null) return Promise.resolve();
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      return exited;
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([Promise.all(exits), deadline]);
    clearTimeout(timer);
    this.stop();
  }
}
