// Multi-process flaredb clusters for the integration tests: each member is a real `flaredb` process
// (the compiled daemon) on loopback ports. Peer traffic can be routed through per-member HTTP
// CONNECT proxies run here (grpc-js honours `grpc_proxy`), so a test can cut any pair of members in
// both directions: an honest network partition, not a paused process.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { freePort } from "@photoncloud/daemon/testing";
import { ClusterClient, type StatusResponse } from "../src/gen/flaredb/v1/cluster.js";
import {
  type BackupInfo,
  BackupFormat,
  Consistency,
  type ExecuteResponse,
  FlareDBServiceClient,
  type QueryResponse,
  type RestoreResponse,
  type Statement,
  type Value,
} from "../src/gen/flaredb/v1/flaredb.js";

const packageDir = join(import.meta.dirname, "..");

/** Every member process started here: killed when this process exits, whatever the test did. */
const started = new Set<ChildProcess>();
function killStarted(): void {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
}
process.once("exit", killStarted);
// A test runner may end its worker with a signal: the members must not outlive it either.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    killStarted();
    process.exit(128 + (signal === "SIGTERM" ? 15 : 2));
  });
}
const daemonBin = join(packageDir, "bin", "flaredb.js");

export function requireBuilt(): void {
  if (!existsSync(join(packageDir, "dist", "bin", "flaredb.js"))) {
    throw new Error("flaredb-server is not built: run `pnpm build` (or `pnpm exec tsc -b`) first");
  }
}

export { freePort };

/**
 * Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. An error
 * thrown by `check` ends the wait at once (callers turn expected transient failures into undefined).
 */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    // A short pause between probes; each probe is itself a network round trip.
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
  }
}

/** The CONNECT proxy every outbound peer connection of one member goes through. */
class EgressProxy {
  private server: HttpServer | undefined;
  readonly sockets = new Set<{ target: number; a: Socket; b: Socket }>();
  port = 0;

  constructor(private readonly allowed: (targetPort: number) => boolean) {}

  async start(): Promise<void> {
    const server = createHttpServer((_req, res) => res.writeHead(405).end());
    server.on("connect", (req, client: Socket, head: Buffer) => {
      const target = Number((req.url ?? "").split(":").pop());
      if (!this.allowed(target)) {
        client.end("HTTP/1.1 503 Partitioned\r\n\r\n");
        return;
      }
      const upstream = connect(target, "127.0.0.1", () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      const entry = { target, a: client, b: upstream };
      this.sockets.add(entry);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(entry);
      };
      upstream.on("error", drop).on("close", drop);
      client.on("error", drop).on("close", drop);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Destroys open connections to targets that are no longer allowed. */
  enforce(): void {
    for (const s of [...this.sockets]) {
      if (!this.allowed(s.target)) {
        s.a.destroy();
        s.b.destroy();
        this.sockets.delete(s);
      }
    }
  }

  close(): void {
    for (const s of this.sockets) {
      s.a.destroy();
      s.b.destroy();
    }
    this.server?.close();
  }
}

export interface Member {
  index: number;
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  proc: ChildProcess | undefined;
  stderr: string;
  /** Set while the test has killed it on purpose. */
  killed?: boolean;
  proxy?: EgressProxy;
  db: FlareDBServiceClient;
  cluster: ClusterClient;
}

export interface ClusterOptions {
  size?: number;
  token?: string;
  /** Route peer traffic through cuttable proxies. */
  partitionable?: boolean;
  heartbeatMs?: number;
  electionMs?: number;
  snapshotCount?: number;
  /** Extra arguments for node itself (e.g. --cpu-prof for profiling). */
  nodeArgs?: string[];
}

export class TestCluster {
  readonly members: Member[] = [];
  private readonly root: string;
  private stopped = false;
  /** Pairs "a-b" (member indexes, a < b) whose traffic is cut. */
  private readonly cut = new Set<string>();

  private constructor(private readonly o: Required<ClusterOptions>) {
    this.root = mkdtempSync(join(tmpdir(), "flaredb-cluster-"));
  }

  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    requireBuilt();
    const c = new TestCluster({
      size: 3,
      token: `t-${process.pid}-${Date.now()}`,
      partitionable: false,
      // Short, but with room for a machine loaded far beyond its cores (no spurious elections).
      heartbeatMs: 50,
      electionMs: 1000,
      snapshotCount: 10_000,
      nodeArgs: [],
      ...options,
    });
    for (let i = 0; i < c.o.size; i++) {
      const [clientPort, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
      const m: Member = {
        index: i,
        name: `n${i + 1}`,
        dataDir: join(c.root, `n${i + 1}`),
        clientPort,
        peerPort,
        metricsPort,
        proc: undefined,
        stderr: "",
        db: new FlareDBServiceClient(`127.0.0.1:${clientPort}`, credentials.createInsecure()),
        cluster: new ClusterClient(`127.0.0.1:${clientPort}`, credentials.createInsecure()),
      };
      if (c.o.partitionable) {
        m.proxy = new EgressProxy((target) => c.allowed(i, target));
        await m.proxy.start();
      }
      c.members.push(m);
    }
    for (const m of c.members) c.spawn(m);
    await c.waitReady();
    return c;
  }

  private allowed(from: number, targetPort: number): boolean {
    const to = this.members.findIndex((m) => m.peerPort === targetPort);
    if (to < 0) return false;
    return !this.cut.has(`${Math.min(from, to)}-${Math.max(from, to)}`);
  }

  private args(m: Member): string[] {
    const url = (port: number) => `http://127.0.0.1:${port}`;
    return [
      ...this.o.nodeArgs,
      daemonBin,
      ...["--name", m.name, "--data-dir", m.dataDir],
      ...["--listen-client-urls", url(m.clientPort), "--listen-peer-urls", url(m.peerPort)],
      ...["--listen-metrics-urls", url(m.metricsPort)],
      ...["--initial-cluster", this.members.map((x) => `${x.name}=${url(x.peerPort)}`).join(",")],
      ...["--initial-cluster-token", this.o.token],
      ...[
        "--heartbeat-interval",
        String(this.o.heartbeatMs),
        "--election-timeout",
        String(this.o.electionMs),
      ],
      ...["--snapshot-count", String(this.o.snapshotCount), "--log-level", "warn"],
    ];
  }

  private spawn(m: Member): void {
    const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" };
    if (m.proxy) env.grpc_proxy = `http://127.0.0.1:${m.proxy.port}`;
    const proc = spawn(process.execPath, this.args(m), { env, stdio: ["ignore", "pipe", "pipe"] });
    m.stderr = "";
    // Logs (stdout, warnings and errors only) and stderr, kept for the report of a crash.
    const keep = (d: Buffer) => {
      m.stderr = (m.stderr + d.toString()).slice(-20_000);
    };
    proc.stdout!.on("data", keep);
    proc.stderr!.on("data", keep);
    m.proc = proc;
    started.add(proc);
    proc.once("exit", () => started.delete(proc));
  }

  alive(m: Member): boolean {
    return m.proc !== undefined && m.proc.exitCode === null && m.proc.signalCode === null;
  }

  async waitReady(): Promise<number> {
    for (const m of this.members) {
      if (!this.alive(m)) continue;
      await until(`${m.name} to answer Status`, () => this.status(m).catch(() => undefined), 60_000).catch(
        (err: Error) => {
          throw new Error(`${err.message}\n${m.name} stderr:\n${m.stderr}`);
        },
      );
    }
    return this.waitForLeader();
  }

  /** The index of the member every live, connected member agrees is leader. */
  async waitForLeader(among: readonly Member[] = this.members.filter((m) => this.alive(m))): Promise<number> {
    return until(
      "an agreed leader",
      async () => {
        const statuses = await Promise.all(among.map((m) => this.status(m).catch(() => undefined)));
        const leaders = statuses.map((s) => s?.header?.leaderId);
        const first = leaders[0];
        if (first === undefined || first === 0n || leaders.some((l) => l !== first)) return undefined;
        const idx = statuses.findIndex((s) => s?.header?.memberId === first);
        return idx < 0 ? undefined : among[idx]!.index;
      },
      60_000,
    );
  }

  /** Waits until every live member has applied the same index, at least `atLeast`. */
  async waitConverged(atLeast = 0n, among = this.members.filter((m) => this.alive(m))): Promise<bigint> {
    return until(
      "members to converge on one applied index",
      async () => {
        const s = await Promise.all(among.map((m) => this.status(m).catch(() => undefined)));
        if (s.some((x) => x === undefined)) return undefined;
        const applied = s.map((x) => x!.raftAppliedIndex);
        const last = s.map((x) => x!.raftIndex);
        const a0 = applied[0]!;
        if (a0 < atLeast || applied.some((a) => a !== a0) || last.some((l) => l > a0)) return undefined;
        return a0;
      },
      90_000,
    );
  }

  partition(m: Member): void {
    for (const o of this.members)
      if (o !== m) this.cut.add(`${Math.min(m.index, o.index)}-${Math.max(m.index, o.index)}`);
    for (const x of this.members) x.proxy?.enforce();
  }

  heal(): void {
    this.cut.clear();
  }

  kill9(m: Member): Promise<void> {
    const proc = m.proc!;
    return new Promise((resolve) => {
      if (!this.alive(m)) return resolve();
      proc.once("exit", () => resolve());
      m.killed = true;
      proc.kill("SIGKILL");
    });
  }

  restart(m: Member): void {
    // A test that timed out may still be running after the cluster was stopped: start nothing then.
    if (this.stopped) throw new Error("the cluster is stopped");
    m.killed = false;
    this.spawn(m);
  }

  /** The stderr of members that exited without being asked to: a crash is a failure to report. */
  crashes(): string[] {
    return this.members
      .filter((m) => m.proc !== undefined && !this.alive(m) && !m.killed)
      .map((m) => `${m.name} exited (${m.proc!.exitCode ?? m.proc!.signalCode}):\n${m.stderr}`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(
      this.members.map(async (m) => {
        m.db.close();
        m.cluster.close();
        m.proxy?.close();
        if (!this.alive(m)) return;
        const exited = new Promise<void>((resolve) => m.proc!.once("exit", () => resolve()));
        m.killed = true;
        m.proc!.kill("SIGTERM");
        const timer = setTimeout(() => m.proc!.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    rmSync(this.root, { recursive: true, force: true });
  }

  // ---- calls ------------------------------------------------------------------------------

  status(m: Member, deadlineMs = 5000): Promise<StatusResponse> {
    return unaryCall<StatusResponse>((md, o, cb) => m.cluster.status({}, md, o, cb), deadlineMs);
  }

  execute(m: Member, statements: Statement[], transaction = false, deadlineMs = 20_000) {
    return unaryCall<ExecuteResponse>(
      (md, o, cb) => m.db.execute({ statements, transaction }, md, o, cb),
      deadlineMs,
    );
  }

  query(
    m: Member,
    statement: Statement,
    consistency: Consistency,
    opts: { freshnessMs?: number; deadlineMs?: number } = {},
  ) {
    return new Promise<{ rows: Value[][]; appliedIndex: bigint }>((resolve, reject) => {
      const rows: Value[][] = [];
      let appliedIndex = 0n;
      const call = m.db.query(
        { statement, consistency, freshnessMs: BigInt(opts.freshnessMs ?? 0), pageRows: 0 },
        { deadline: Date.now() + (opts.deadlineMs ?? 20_000) },
      );
      call.on("data", (p: QueryResponse) => {
        for (const r of p.rows) rows.push(r.values);
        appliedIndex = p.appliedIndex;
      });
      call.on("error", reject);
      call.on("end", () => resolve({ rows, appliedIndex }));
    });
  }

  backup(
    m: Member,
    format: BackupFormat = BackupFormat.BACKUP_FORMAT_SQL,
    consistency = Consistency.CONSISTENCY_NONE,
  ) {
    return new Promise<{ bytes: Buffer; info: BackupInfo }>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let info: BackupInfo | undefined;
      const call = m.db.backup({ format, consistency }, { deadline: Date.now() + 30_000 });
      call.on("data", (r: { data: Uint8Array; info?: BackupInfo }) => {
        chunks.push(Buffer.from(r.data));
        if (r.info) info = r.info;
      });
      call.on("error", reject);
      call.on("end", () => resolve({ bytes: Buffer.concat(chunks), info: info! }));
    });
  }

  restore(m: Member, bytes: Buffer) {
    return new Promise<RestoreResponse>((resolve, reject) => {
      const call = m.db.restore({ deadline: Date.now() + 60_000 }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
      for (let i = 0; i < bytes.length; i += 256 * 1024)
        call.write({ data: bytes.subarray(i, i + 256 * 1024) });
      call.end();
    });
  }
}

type Cb<T> = (err: ServiceError | null, res: T) => void;

export function unaryCall<T>(
  invoke: (md: Metadata, opts: { deadline: number }, cb: Cb<T>) => unknown,
  deadlineMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    invoke(new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

export function st(sql: string, ...values: (null | bigint | number | string | Buffer)[]): Statement {
  return {
    sql,
    positional: values.map((x): Value => {
      if (x === null) return { nullValue: true };
      if (typeof x === "bigint") return { intValue: x };
      if (typeof x === "number") return { realValue: x };
      if (typeof x === "string") return { textValue: x };
      return { blobValue: x };
    }),
    named: [],
  };
}

/** The error a call failed with (or a failure of the test when it succeeded). */
export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  const r = await p.then(
    () => undefined,
    (e: ServiceError) => e,
  );
  if (r === undefined) throw new Error("expected the call to fail, but it succeeded");
  return r;
}

export { BackupFormat, Consistency };
