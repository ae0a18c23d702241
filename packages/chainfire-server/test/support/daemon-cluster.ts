// Multi-process test support: chainfire daemons as child processes on free loopback ports, with
// short Raft timeouts, typed clients per member, and polling helpers with deadlines.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { type ChainfireClients, createClients, type etcd, type mvccpb } from "@photoncloud/chainfire-api";
import { CHAINFIRE_NODE_ARGS, chainfireEnv } from "@photoncloud/daemon";
import { freePort } from "@photoncloud/daemon/testing";
import { rangeRequest } from "../../src/mvcc/messages.js";

const PACKAGE_DIR = join(import.meta.dirname, "..", "..");
/** The compiled daemon (the test command compiles first): starts in a fraction of tsx's time. */
const BIN = join(PACKAGE_DIR, "dist", "bin", "chainfire.js");

export { freePort };

/** Thrown by a check to stop polling at once (e.g. the process it waits for has exited). */
export class GiveUp extends Error {}

/** Polls `check` until it returns a value (not undefined/false); errors count as "not yet". */
export async function until<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  what: string | (() => string),
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Promisifies one generated unary method, with a deadline. */
export function call<Res>(
  client: object,
  method: string,
  request: object,
  deadlineMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as Record<string, (...args: unknown[]) => void>)[method]!;
    fn.call(
      client,
      request,
      new Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err: Error | null, res: Res) => (err ? reject(err) : resolve(res)),
    );
  });
}

export interface MemberPorts {
  client: number;
  peer: number;
  metrics: number;
}

export interface Member {
  readonly name: string;
  ports: MemberPorts;
  readonly dataDir: string;
  proc: ChildProcess | null;
  clients: ChainfireClients;
  output: string[];
  exitCode: number | null;
}

export interface StartOptions {
  state?: "new" | "existing";
  /** Left out, the member starts without --initial-cluster, its state and the token (a restored data dir). */
  initialCluster: string | undefined;
  extraFlags?: string[];
  /** Leaves out --listen-metrics-urls (etcd's flags alone). */
  noMetricsUrl?: boolean;
}

/** Member TLS: https:// client and peer URLs with mTLS on both, and the client identity tests use. */
export interface ClusterTls {
  caFile: string;
  member: { cert: string; key: string };
  client: { cert: string; key: string };
  /** false: the client URLs use TLS but ask for no client certificate (no --trusted-ca-file there). */
  clientCertAuth?: boolean;
}

export interface ClusterOptions {
  token?: string;
  tls?: ClusterTls;
  heartbeatMs?: number;
  electionMs?: number;
  extraFlags?: string[];
}

export class DaemonCluster {
  readonly root = mkdtempSync(join(tmpdir(), "chainfire-daemon-test-"));
  readonly members = new Map<string, Member>();
  readonly token: string;

  constructor(private readonly options: ClusterOptions = {}) {
    this.token = options.token ?? "test-cluster";
  }

  async allocate(name: string): Promise<Member> {
    const ports = { client: await freePort(), peer: await freePort(), metrics: await freePort() };
    const member: Member = {
      name,
      ports,
      dataDir: join(this.root, name),
      proc: null,
      clients: this.clientsFor(ports.client),
      output: [],
      exitCode: null,
    };
    this.members.set(name, member);
    return member;
  }

  private get scheme(): string {
    return this.options.tls === undefined ? "http" : "https";
  }

  peerUrl(m: Member): string {
    return `${this.scheme}://127.0.0.1:${m.ports.peer}`;
  }

  clientUrl(m: Member): string {
    return `${this.scheme}://127.0.0.1:${m.ports.client}`;
  }

  /** Clients for a client port, presenting the test client certificate when TLS is on. */
  clientsFor(
    port: number,
    identity: { cert: string; key: string } | null = this.options.tls?.client ?? null,
  ): ChainfireClients {
    const tls = this.options.tls;
    if (tls === undefined) return createClients(`127.0.0.1:${port}`);
    const read = (f: string | undefined) => (f === undefined ? null : readFileSync(f));
    const creds = credentials.createSsl(read(tls.caFile), read(identity?.key), read(identity?.cert));
    return createClients(`127.0.0.1:${port}`, creds);
  }

  private tlsFlags(): string[] {
    const tls = this.options.tls;
    if (tls === undefined) return [];
    const { caFile, member } = tls;
    return [
      ...["--cert-file", member.cert, "--key-file", member.key],
      ...(tls.clientCertAuth === false ? [] : ["--trusted-ca-file", caFile, "--client-cert-auth"]),
      ...["--peer-cert-file", member.cert, "--peer-key-file", member.key, "--peer-trusted-ca-file", caFile],
      "--peer-client-cert-auth",
    ];
  }

  initialCluster(names: readonly string[]): string {
    return names.map((n) => `${n}=${this.peerUrl(this.get(n))}`).join(",");
  }

  get(name: string): Member {
    const m = this.members.get(name);
    if (m === undefined) throw new Error(`no member ${name}`);
    return m;
  }

  flags(m: Member, start: StartOptions): string[] {
    return [
      "--name",
      m.name,
      "--data-dir",
      m.dataDir,
      "--listen-client-urls",
      this.clientUrl(m),
      "--listen-peer-urls",
      this.peerUrl(m),
      ...(start.noMetricsUrl ? [] : ["--listen-metrics-urls", `http://127.0.0.1:${m.ports.metrics}`]),
      ...(start.initialCluster === undefined
        ? []
        : [
            "--initial-cluster",
            start.initialCluster,
            "--initial-cluster-state",
            start.state ?? "new",
            "--initial-cluster-token",
            this.token,
          ]),
      "--heartbeat-interval",
      String(this.options.heartbeatMs ?? 50),
      "--election-timeout",
      String(this.options.electionMs ?? 500),
      "--log-level",
      "warn",
      ...this.tlsFlags(),
      ...(this.options.extraFlags ?? []),
      ...(start.extraFlags ?? []),
    ];
  }

  /** Starts the member's process and resolves once its client port answers Status. */
  async start(name: string, start: StartOptions): Promise<Member> {
    const m = this.members.get(name) ?? (await this.allocate(name));
    const proc = spawnDaemon(this.flags(m, start));
    m.proc = proc;
    m.exitCode = null;
    m.output = [];
    proc.stdout?.on("data", (chunk: Buffer) => m.output.push(chunk.toString()));
    proc.stderr?.on("data", (chunk: Buffer) => m.output.push(chunk.toString()));
    proc.on("exit", (code, signal) => {
      m.exitCode = code ?? (signal === null ? 0 : -1);
      if (m.proc === proc) m.proc = null;
    });
    await until(
      async () => {
        if (m.exitCode !== null) throw new GiveUp(`${name} exited with ${m.exitCode}`);
        return (await this.status(m)) !== undefined;
      },
      `${name} to serve Status`,
      90_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- ${name} output ---\n${m.output.join("").slice(-4000)}`);
    });
    return m;
  }

  status(m: Member): Promise<etcd.StatusResponse> {
    return call<etcd.StatusResponse>(m.clients.maintenance, "status", {}, 2000);
  }

  /** SIGKILL (no shutdown at all) or SIGTERM (clean stop); resolves when the process has exited. */
  async stop(name: string, signal: "SIGKILL" | "SIGTERM" = "SIGTERM"): Promise<number | null> {
    const m = this.get(name);
    const proc = m.proc;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return m.exitCode;
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    proc.kill(signal);
    return exited;
  }

  /** Resolves with the exit code once the member's process has ended by itself. */
  async exited(name: string): Promise<number | null> {
    const m = this.get(name);
    return until(() => (m.proc === null ? { code: m.exitCode } : undefined), `${name} to exit`).then(
      (r) => r.code,
    );
  }

  running(): Member[] {
    return [...this.members.values()].filter((m) => m.proc !== null);
  }

  /** The leader's ID as every listed member sees it, once they agree (on one other than `not`). */
  async leaderId(members: readonly Member[] = this.running(), not = 0n): Promise<bigint> {
    return until(async () => {
      const statuses = await Promise.all(members.map((m) => this.status(m)));
      const leader = statuses[0]!.leader;
      const agreed = leader !== 0n && leader !== not && statuses.every((s) => s.leader === leader);
      return agreed ? leader : undefined;
    }, "the members to agree on a leader");
  }

  /** Every listed member appears with its client URLs in `via`'s member list (each has published itself). */
  async published(members: readonly Member[] = this.running(), via: Member = members[0]!): Promise<void> {
    let seen = "no member list yet";
    await until(async () => {
      const res = await call<etcd.MemberListResponse>(via.clients.cluster, "memberList", {});
      seen = res.members.map((x) => `${x.name || x.ID.toString(16)}=[${x.clientURLs.join(",")}]`).join(" ");
      return res.members.length >= members.length && res.members.every((x) => x.clientURLs.length > 0)
        ? true
        : undefined;
    }, "every member to publish its client URLs").catch((err: Error) => {
      const outputs = members.map((m) => `--- ${m.name} output ---\n${m.output.join("").slice(-4000)}`);
      throw new Error(`${err.message}; ${via.name}'s list: ${seen}\n${outputs.join("\n")}`);
    });
  }

  async memberNamed(id: bigint): Promise<Member> {
    for (const m of this.running()) {
      const st = await this.status(m).catch(() => undefined);
      if (st?.header?.memberId === id) return m;
    }
    throw new Error(`no running member has ID ${id.toString(16)}`);
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.members.values()].map(async (m) => {
        m.clients.close();
        const proc = m.proc;
        if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
        // A clean stop, as an operator's: the daemon removes what it made outside its data
        // directory (its gRPC front's private socket folder). SIGKILL only if it hangs.
        const exited = new Promise((resolve) => proc.once("exit", resolve));
        const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        proc.kill("SIGTERM");
        await exited;
        clearTimeout(timer);
      }),
    );
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Starts the chainfire daemon as it is deployed (CHAINFIRE_NODE_ARGS, chainfireEnv), with `args`. */
export function spawnDaemon(args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: compile first (pnpm exec tsc -b tsconfig.json)`);
  return spawn(process.execPath, [...CHAINFIRE_NODE_ARGS, BIN, ...args], {
    cwd: PACKAGE_DIR,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...chainfireEnv(), ...env },
  });
}

/** Runs the daemon to completion (for flag errors); resolves with its exit code and stderr. */
export function runDaemonToExit(
  args: readonly string[],
  timeoutMs = 60_000,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawnDaemon(args, env);
    let stderr = "";
    let stdout = "";
    proc.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
    proc.stdout?.on("data", (c: Buffer) => (stdout += c.toString()));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`daemon did not exit within ${timeoutMs} ms: ${stderr}${stdout}`));
    }, timeoutMs);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

const enc = (s: string) => Buffer.from(s);

/** The PutRequest `put` sends. */
export function putRequest(key: string, value: string): etcd.PutRequest {
  return {
    key: enc(key),
    value: enc(value),
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  };
}

export function put(m: Member, key: string, value: string, deadlineMs?: number): Promise<etcd.PutResponse> {
  return call<etcd.PutResponse>(m.clients.kv, "put", putRequest(key, value), deadlineMs);
}

/** Every key under `prefix` on one member, as key → value (values empty with `keysOnly`). */
export async function readPrefix(
  m: Member,
  prefix: string,
  serializable: boolean,
  keysOnly = false,
): Promise<Map<string, string>> {
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  const res = await call<etcd.RangeResponse>(
    m.clients.kv,
    "range",
    rangeRequest({ key: enc(prefix), rangeEnd: end, serializable, keysOnly }),
  );
  return new Map(res.kvs.map((kv: mvccpb.KeyValue) => [kv.key.toString(), kv.value.toString()]));
}
