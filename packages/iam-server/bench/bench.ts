// IssueToken / ValidateToken over gRPC against the real daemon (a child process), next to raw jose
// sign/verify on the same key in the same run. Prints a Markdown table; not a test.
import { spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Metadata, credentials } from "@grpc/grpc-js";
import { iamv1 } from "@photoncloud/iam-api";
import { SignJWT, jwtVerify } from "jose";

const durationMs = Number(process.env.IAM_BENCH_DURATION_MS ?? 3000);
const adminToken = randomBytes(24).toString("hex");
const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const privateKey = createPrivateKey(pem);
const publicKey = createPublicKey(privateKey);

interface Result {
  name: string;
  inFlight: number;
  opsPerSecond: number;
  p99Ms: number;
}

/** Runs `op` with `inFlight` concurrent loops for the bench duration; returns rate and p99 latency. */
async function measure(name: string, inFlight: number, op: (i: number) => Promise<unknown>): Promise<Result> {
  const latencies: number[] = [];
  let counter = 0;
  const end = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await op(counter++);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const p99Ms = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? 0;
  return { name, inFlight, opsPerSecond: latencies.length / elapsedS, p99Ms };
}

async function startDaemon(dataDir: string): Promise<{ address: string; stop: () => void }> {
  const bin = fileURLToPath(new URL("../bin/iam.js", import.meta.url));
  const child = spawn(
    process.execPath,
    [
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
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.includes('"msg":"iam ready"'));
      if (line) resolve((JSON.parse(line).grpcUrls[0] as string).replace("http://", ""));
    });
    child.on("exit", (code) => reject(new Error(`iam exited ${code}`)));
  });
  return { address, stop: () => child.kill("SIGTERM") };
}

function unary<Req, Res>(client: object, method: string, md: Metadata) {
  type Call = (req: Req, md: Metadata, cb: (err: Error | null, res: Res) => void) => void;
  const fn = (client as Record<string, Call>)[method]!.bind(client);
  return (req: Req) =>
    new Promise<Res>((resolve, reject) =>
      fn(req, md, (err: Error | null, res: Res) => (err ? reject(err) : resolve(res))),
    );
}

async function rawJose(): Promise<Result[]> {
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
    await measure("raw jose sign (EdDSA)", 1, sign),
    await measure("raw jose verify (EdDSA)", 1, () =>
      jwtVerify(token, publicKey, { issuer: "photon-iam", audience: "photon" }),
    ),
  ];
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "iam-bench-"));
  const daemon = await startDaemon(dataDir);
  const md = new Metadata();
  md.set("authorization", `Bearer ${adminToken}`);
  const tokens = new iamv1.TokensClient(daemon.address, credentials.createInsecure());
  const principals = new iamv1.PrincipalsClient(daemon.address, credentials.createInsecure());
  await unary(principals, "createPrincipal", md)({ id: "bench", kind: "service", displayName: "" });
  const issue = unary<object, { token: string }>(tokens, "issueToken", md);
  const validate = unary<object, object>(tokens, "validateToken", new Metadata());
  const issueReq = { adminSubject: "bench", ttlSeconds: 0, audience: "" };
  const pool = await Promise.all(Array.from({ length: 1000 }, () => issue(issueReq).then((r) => r.token)));
  const results: Result[] = [...(await rawJose())];
  for (const inFlight of [1, 64])
    results.push(await measure("gRPC IssueToken", inFlight, () => issue(issueReq)));
  for (const inFlight of [1, 64])
    results.push(
      await measure("gRPC ValidateToken (1000 tokens, cached)", inFlight, (i) =>
        validate({ token: pool[i % pool.length] }),
      ),
    );
  const fresh = await Promise.all(Array.from({ length: 4000 }, () => issue(issueReq).then((r) => r.token)));
  results.push(
    await measure("gRPC ValidateToken (each token first seen)", 64, (i) =>
      validate({ token: fresh[i % fresh.length] }),
    ),
  );
  tokens.close();
  principals.close();
  daemon.stop();
  report(results);
  rmSync(dataDir, { recursive: true, force: true });
}

function report(results: Result[]): void {
  const rawSign = results[0]!.opsPerSecond;
  const rawVerify = results[1]!.opsPerSecond;
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, node ${process.version}`);
  console.log(`duration per row: ${durationMs} ms\n`);
  console.log("| measurement | in flight | ops/s | p99 ms | ratio |");
  console.log("|---|---:|---:|---:|---|");
  for (const r of results) {
    const ratio = r.name.includes("IssueToken")
      ? `${(r.opsPerSecond / rawSign).toFixed(2)}× raw sign (target ≥ 0.8×)`
      : r.name.includes("ValidateToken")
        ? `${(r.opsPerSecond / rawVerify).toFixed(2)}× raw verify (target ≥ 1.0×)`
        : "";
    console.log(
      `| ${r.name} | ${r.inFlight} | ${Math.round(r.opsPerSecond)} | ${r.p99Ms.toFixed(2)} | ${ratio} |`,
    );
  }
}

await main();
