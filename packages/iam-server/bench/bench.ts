// IssueToken / ValidateToken over gRPC against the real daemon (a child process), next to raw jose
// sign/verify on the same key in the same run. Prints a Markdown table; not a test.
//
// Rows are measured in interleaved slices (round after round, every row gets one slice per round), so
// that a change in machine load during the run affects the raw rows and the gRPC rows alike and the
// ratios compare like with like.
import { spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata, credentials } from "@grpc/grpc-js";
import {
  grpcHandledTotals,
  H2GrpcClient,
  h2loadAvailable,
  methodOf,
  processCpuMicros,
  runH2Load,
  selfCpuMicros,
} from "@photoncloud/daemon/bench";
import { iamv1 } from "@photoncloud/iam-api";
import { SignJWT, jwtVerify } from "jose";

/** Measured time per row, split over the rounds. */
const durationMs = Number(process.env.IAM_BENCH_DURATION_MS ?? 3000);
const rounds = Number(process.env.IAM_BENCH_ROUNDS ?? 6);
/** Rows to run (comma-separated: issue1, issue64, validate1, validate64, fresh64); all by default. */
const only = process.env.IAM_BENCH_ONLY?.split(",").map((s) => s.trim());
const wanted = (row: string) => only === undefined || only.includes(row);
/**
 * Clients to drive the daemon with: h2 (lean HTTP/2 gRPC client), grpc-js, h2load (nghttp2's load
 * generator in C; by default only when it is installed).
 */
const clientNames = (process.env.IAM_BENCH_CLIENTS ?? `h2,grpc-js${h2loadAvailable() ? ",h2load" : ""}`)
  .split(",")
  .map((c) => c.trim());
for (const c of clientNames)
  if (!["h2", "grpc-js", "h2load"].includes(c))
    throw new Error(`IAM_BENCH_CLIENTS: unknown client ${JSON.stringify(c)} (h2, grpc-js, h2load)`);
if (clientNames.includes("h2load") && !h2loadAvailable())
  throw new Error("IAM_BENCH_CLIENTS names h2load, which is not on PATH (apt-get install nghttp2-client)");
const adminToken = randomBytes(24).toString("hex");
const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const privateKey = createPrivateKey(pem);
const publicKey = createPublicKey(privateKey);
const issueRequest = { adminSubject: "bench", ttlSeconds: 0, audience: "" };

/** A slice run by another process (h2load): what it did and the CPU it used. */
interface ExternalSlice {
  ops: number;
  seconds: number;
  latenciesMs: readonly number[];
  clientCpuMs: number;
}

/**
 * One measured row: `op` is called with a running counter; `prepare` runs (unmeasured) before a
 * slice. A row with `external` has its slices run by another process instead of `op`.
 */
interface Row {
  name: string;
  inFlight: number;
  op: (i: number) => Promise<unknown>;
  external?: (sliceMs: number) => Promise<ExternalSlice>;
  prepare?: (sliceMs: number) => Promise<void>;
  /** True when the row ran out of input (e.g. fresh tokens); the slice then ends early. */
  exhausted?: () => boolean;
  ops: number;
  elapsedMs: number;
  latenciesMs: number[];
  /** CPU time (all threads) spent during the row's slices by this process and by the daemon. */
  benchCpuMs: number;
  daemonCpuMs: number;
}

interface Result {
  name: string;
  inFlight: number;
  opsPerSecond: number;
  p99Ms: number;
  benchCpuUsPerOp: number;
  daemonCpuUsPerOp: number;
}

function row(name: string, inFlight: number, op: Row["op"], extra: Partial<Row> = {}): Row {
  return {
    name,
    inFlight,
    op,
    ops: 0,
    elapsedMs: 0,
    latenciesMs: [],
    benchCpuMs: 0,
    daemonCpuMs: 0,
    ...extra,
  };
}

const processCpuMs = (pid: number) => processCpuMicros(pid) / 1000;
const benchCpuMs = () => selfCpuMicros() / 1000;

/** Runs one slice of `r` with `inFlight` concurrent loops; adds to its totals. */
async function slice(r: Row, sliceMs: number, daemonPid: number): Promise<void> {
  await r.prepare?.(sliceMs);
  if (r.external !== undefined) {
    const daemon0 = processCpuMs(daemonPid);
    const s = await r.external(sliceMs);
    r.daemonCpuMs += processCpuMs(daemonPid) - daemon0;
    r.benchCpuMs += s.clientCpuMs;
    r.ops += s.ops;
    r.elapsedMs += s.seconds * 1000;
    for (const ms of s.latenciesMs) r.latenciesMs.push(ms);
    return;
  }
  const bench0 = benchCpuMs();
  const daemon0 = processCpuMs(daemonPid);
  let counter = r.ops;
  const started = performance.now();
  const end = started + sliceMs;
  await Promise.all(
    Array.from({ length: r.inFlight }, async () => {
      while (performance.now() < end && !r.exhausted?.()) {
        const t = performance.now();
        await r.op(counter++);
        r.latenciesMs.push(performance.now() - t);
        r.ops += 1;
      }
    }),
  );
  r.elapsedMs += performance.now() - started;
  r.benchCpuMs += benchCpuMs() - bench0;
  r.daemonCpuMs += processCpuMs(daemonPid) - daemon0;
}

function result(r: Row): Result {
  const sorted = r.latenciesMs.sort((a, b) => a - b);
  const p99Ms = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
  return {
    name: r.name,
    inFlight: r.inFlight,
    opsPerSecond: (r.ops * 1000) / r.elapsedMs,
    p99Ms,
    benchCpuUsPerOp: (r.benchCpuMs * 1000) / r.ops,
    daemonCpuUsPerOp: (r.daemonCpuMs * 1000) / r.ops,
  };
}

async function startDaemon(
  dataDir: string,
): Promise<{ address: string; metricsUrl: string; pid: number; stop: () => Promise<void> }> {
  const bin = fileURLToPath(new URL("../bin/iam.js", import.meta.url));
  const child = spawn(
    process.execPath,
    [
      // e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the daemon under the bench load.
      ...(process.env.IAM_BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean),
      bin,
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      "http://127.0.0.1:0",
      "--listen-http-urls",
      "http://127.0.0.1:0",
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        IAM_ADMIN_TOKEN: adminToken,
        IAM_SIGNING_KEY: pem,
        IAM_CRED_MASTER_KEY: randomBytes(32).toString("hex"),
        // PHOTON_GRPC_LEAN_UNARY=0 compares with grpc-js serving every call.
        ...(process.env.PHOTON_GRPC_LEAN_UNARY === undefined
          ? {}
          : { PHOTON_GRPC_LEAN_UNARY: process.env.PHOTON_GRPC_LEAN_UNARY }),
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  const ready = await new Promise<{ grpcUrls: string[]; httpUrls: string[] }>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.includes('"msg":"iam ready"'));
      if (line) resolve(JSON.parse(line));
    });
    child.on("exit", (code) => reject(new Error(`iam exited ${code}`)));
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    address: ready.grpcUrls[0]!.replace("http://", ""),
    metricsUrl: new URL("/metrics", ready.httpUrls[0]).href,
    pid: child.pid!,
    stop: () => {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

function unary<Req, Res>(client: object, method: string, md: Metadata) {
  type Call = (req: Req, md: Metadata, cb: (err: Error | null, res: Res) => void) => void;
  const fn = (client as Record<string, Call>)[method]!.bind(client);
  return (req: Req) =>
    new Promise<Res>((resolve, reject) =>
      fn(req, md, (err: Error | null, res: Res) => (err ? reject(err) : resolve(res))),
    );
}

async function rawJoseRows(): Promise<Row[]> {
  const sign = () =>
    new SignJWT({})
      .setProtectedHeader({ alg: "EdDSA", kid: "bench", typ: "at+jwt" })
      .setIssuer("photon-iam")
      .setAudience("photon")
      .setSubject("bench")
      .setIssuedAt()
      .setExpirationTime("15m")
      .setJti(randomBytes(16).toString("base64url"))
      .sign(privateKey);
  const token = await sign();
  return [
    row("raw jose sign (EdDSA)", 1, sign),
    row("raw jose verify (EdDSA)", 1, () =>
      jwtVerify(token, publicKey, { issuer: "photon-iam", audience: "photon" }),
    ),
  ];
}

interface BenchClient {
  name: string;
  issue: (req: typeof issueRequest) => Promise<{ token: string }>;
  validate: (req: { token: string }) => Promise<{ principalId: string }>;
  close: () => void;
}

function grpcJsClient(address: string, admin: Metadata): BenchClient {
  const tokens = new iamv1.TokensClient(address, credentials.createInsecure());
  return {
    name: "grpc-js client",
    issue: unary(tokens, "issueToken", admin),
    validate: unary(tokens, "validateToken", new Metadata()),
    close: () => tokens.close(),
  };
}

function h2Client(address: string): BenchClient {
  const h2 = new H2GrpcClient(address);
  const { IssueTokenRequest, IssueTokenResponse, ValidateTokenRequest, ValidateTokenResponse } = iamv1;
  const validate = h2.unary(
    methodOf("/iam.v1.Tokens/ValidateToken", ValidateTokenRequest, ValidateTokenResponse),
  );
  const admin = { metadata: { authorization: `Bearer ${adminToken}` } };
  return {
    name: "HTTP/2 client",
    issue: h2.unary(methodOf("/iam.v1.Tokens/IssueToken", IssueTokenRequest, IssueTokenResponse), admin),
    validate: (req) => validate({ token: req.token }),
    close: () => h2.close(),
  };
}

/** A successful validation must name the bench principal; anything else would be measuring failures. */
async function validated(client: BenchClient, token: string): Promise<void> {
  const v = await client.validate({ token });
  if (v.principalId !== "bench") throw new Error(`unexpected validation answer ${JSON.stringify(v)}`);
}

/** The gRPC rows for one client: IssueToken and ValidateToken at 1 and 64 in flight. */
async function clientRows(client: BenchClient): Promise<Row[]> {
  const rows: Row[] = [];
  const label = (what: string) => `gRPC ${what} [${client.name}]`;
  const mint = (n: number) =>
    Promise.all(Array.from({ length: n }, () => client.issue(issueRequest).then((r) => r.token)));
  const pool = await mint(1000);
  // The cached rows measure the steady state: every pool token has been seen once before.
  await Promise.all(pool.map((t) => validated(client, t)));
  for (const inFlight of [1, 64])
    if (wanted(`issue${inFlight}`))
      rows.push(row(label("IssueToken"), inFlight, () => client.issue(issueRequest)));
  for (const inFlight of [1, 64])
    if (wanted(`validate${inFlight}`))
      rows.push(
        row(label("ValidateToken (1000 tokens, cached)"), inFlight, (i) =>
          validated(client, pool[i % pool.length]!),
        ),
      );
  if (wanted("fresh64")) {
    // Every call validates a token the daemon has never seen (minted, unmeasured, before each slice).
    let fresh: string[] = [];
    let next = 0;
    let lastRate = 2000;
    const r: Row = row(
      label("ValidateToken (each token first seen)"),
      64,
      () => validated(client, fresh[next++]!),
      {
        prepare: async (sliceMs) => {
          lastRate = r.elapsedMs > 0 ? (r.ops * 1000) / r.elapsedMs : lastRate;
          fresh = await mint(Math.ceil((lastRate * sliceMs * 1.5) / 1000) + 64);
          next = 0;
        },
        exhausted: () => next >= fresh.length,
      },
    );
    rows.push(r);
  }
  return rows;
}

/**
 * h2load's rows: the same calls with one fixed request each (IssueToken as admin; ValidateToken of
 * one token the daemon has seen). h2load does not read gRPC statuses, so each slice is checked on the
 * daemon's /metrics: every call it counted must be answered OK there, and no call may have failed.
 */
async function h2loadRows(daemon: { address: string; metricsUrl: string }, token: string): Promise<Row[]> {
  const target = `http://${daemon.address}`;
  const checked =
    (path: string, request: Uint8Array, metadata: Record<string, string>, inFlight: number) =>
    async (sliceMs: number): Promise<ExternalSlice> => {
      const before = await grpcHandledTotals([daemon.metricsUrl], path);
      const r = await runH2Load({ target, path, request, metadata, inFlight, durationMs: sliceMs });
      const after = await grpcHandledTotals([daemon.metricsUrl], path);
      const [ok, calls] = [after.ok - before.ok, after.all - before.all];
      if (r.failed > 0 || ok !== calls || ok < r.succeeded)
        throw new Error(
          `h2load ${path}: ${r.succeeded} succeeded and ${r.failed} failed by HTTP; the daemon ` +
            `answered ${ok} of ${calls} calls OK`,
        );
      return {
        ops: r.succeeded,
        seconds: r.seconds,
        latenciesMs: r.latenciesMs,
        clientCpuMs: r.cpuMicros / 1000,
      };
    };
  const issue = iamv1.IssueTokenRequest.encode(issueRequest).finish();
  const validate = iamv1.ValidateTokenRequest.encode({ token }).finish();
  const admin = { authorization: `Bearer ${adminToken}` };
  const rows: Row[] = [];
  const unused = () => Promise.reject(new Error("this row is run by h2load"));
  for (const inFlight of [1, 64])
    if (wanted(`issue${inFlight}`))
      rows.push(
        row("gRPC IssueToken [h2load]", inFlight, unused, {
          external: checked("/iam.v1.Tokens/IssueToken", issue, admin, inFlight),
        }),
      );
  for (const inFlight of [1, 64])
    if (wanted(`validate${inFlight}`))
      rows.push(
        row("gRPC ValidateToken (1 token, cached) [h2load]", inFlight, unused, {
          external: checked("/iam.v1.Tokens/ValidateToken", validate, {}, inFlight),
        }),
      );
  return rows;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "iam-bench-"));
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  try {
    daemon = await startDaemon(dataDir);
    const { results, loadBefore, loadAfter } = await run(daemon);
    await daemon.stop();
    report(results, loadBefore, loadAfter);
  } finally {
    // A failed run must not leave the daemon or its data directory behind.
    await daemon?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function run(daemon: { address: string; metricsUrl: string; pid: number }) {
  const md = new Metadata();
  md.set("authorization", `Bearer ${adminToken}`);
  const principals = new iamv1.PrincipalsClient(daemon.address, credentials.createInsecure());
  await unary(principals, "createPrincipal", md)({ id: "bench", kind: "service", displayName: "" });
  principals.close();
  const clients = clientNames
    .filter((c) => c !== "h2load")
    .map((c) => (c === "h2" ? h2Client(daemon.address) : grpcJsClient(daemon.address, md)));
  try {
    const rows: Row[] = [...(await rawJoseRows())];
    for (const client of clients) rows.push(...(await clientRows(client)));
    if (clientNames.includes("h2load")) {
      // The token h2load validates: issued and checked once (it names the bench principal).
      const checker = h2Client(daemon.address);
      try {
        const { token } = await checker.issue(issueRequest);
        await validated(checker, token);
        rows.push(...(await h2loadRows(daemon, token)));
      } finally {
        checker.close();
      }
    }
    const loadBefore = loadavg()[0]!;
    for (let round = 0; round < rounds; round++)
      for (const r of rows) await slice(r, durationMs / rounds, daemon.pid);
    return { results: rows.map(result), loadBefore, loadAfter: loadavg()[0]! };
  } finally {
    for (const client of clients) client.close();
  }
}

/**
 * Two ratios per gRPC row. "ops/s ratio" is the issue's target: calls per second over gRPC divided by
 * raw jose operations per second, both measured in this run. "per-core ratio" divides the raw
 * operation's CPU time by the daemon's CPU time per call: how many calls one core of the daemon serves
 * for each raw operation one core performs. It does not depend on how much CPU other processes leave
 * to the bench and the daemon, which the ops/s ratio does (two processes taking turns suffer from a
 * crowded run queue far more than one busy process).
 */
function report(results: Result[], loadBefore: number, loadAfter: number): void {
  const [rawSign, rawVerify] = [results[0]!, results[1]!];
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, node ${process.version}`);
  console.log(`load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${loadAfter.toFixed(2)}`);
  console.log(`measured time per row: ${durationMs} ms in ${rounds} interleaved slices\n`);
  console.log(
    "| measurement | in flight | ops/s | p99 ms | bench CPU µs/op | daemon CPU µs/op | ops/s ratio (target) | per-core ratio |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---|---:|");
  for (const r of results) {
    const raw = r.name.includes("IssueToken") ? rawSign : r.name.includes("ValidateToken") ? rawVerify : null;
    const what = raw === rawSign ? "raw sign (≥ 0.8×)" : "raw verify (≥ 1.0×)";
    const ratio = raw ? `${(r.opsPerSecond / raw.opsPerSecond).toFixed(2)}× ${what}` : "";
    const perCore = raw ? `${(raw.benchCpuUsPerOp / r.daemonCpuUsPerOp).toFixed(2)}×` : "";
    const daemonCpu = raw ? r.daemonCpuUsPerOp.toFixed(0) : "";
    console.log(
      `| ${r.name} | ${r.inFlight} | ${Math.round(r.opsPerSecond)} | ${r.p99Ms.toFixed(2)} | ${r.benchCpuUsPerOp.toFixed(0)} | ${daemonCpu} | ${ratio} | ${perCore} |`,
    );
  }
}

await main();
