// iam bootstrap-hardening observations for the ops proof: the daemon is started in production mode
// with items missing and must refuse, naming each; with every item present it must start. Secrets
// used here are throwaway values generated for the run and never written to an artifact.
import { spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fixedPorts } from "../cluster.js";
import { requireDaemon } from "../daemons.js";
import { repoRoot } from "../paths.js";
import type { NetnsNetwork } from "../netns.js";
import { freePorts } from "../ports.js";
import { SupervisedProcess } from "../supervisor.js";

interface Outcome {
  readonly exitCode: number | null;
  readonly stderr: string;
}

/** Runs iam until it exits by itself (a refused start), with a deadline. */
function runToExit(
  args: string[],
  env: Record<string, string>,
  logFile: string,
  where: Where,
): Promise<Outcome> {
  const daemon = command(args, where);
  return new Promise((resolve, reject) => {
    const child = spawn(daemon.command, daemon.args, {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("iam did not refuse to start within 30 s: it should have exited"));
    }, 30_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      writeFileSync(logFile, `--- stdout\n${out}\n--- stderr\n${err}\n`);
      resolve({ exitCode: code, stderr: err });
    });
  });
}

/** Where the daemon runs: on loopback, or (--netns) in its own namespace at its own address. */
interface Where {
  readonly host: string;
  readonly network?: NetnsNetwork;
  readonly namespace?: string;
}

function command(args: string[], where: Where): { command: string; args: string[] } {
  const daemon = requireDaemon("iam");
  const argv = [...daemon.args, ...args];
  if (where.network === undefined || where.namespace === undefined)
    return { command: daemon.command, args: argv };
  return where.network.wrap(where.namespace, daemon.command, argv);
}

function secretsEnv(dir: string) {
  const keyFile = join(dir, "signing-key.pem");
  const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  writeFileSync(keyFile, pem, { mode: 0o600 });
  return {
    IAM_ADMIN_TOKEN: randomBytes(24).toString("base64url"),
    IAM_SIGNING_KEY: keyFile,
    IAM_CRED_MASTER_KEY: randomBytes(32).toString("hex"),
  };
}

const requiredItems = [
  "IAM_ADMIN_TOKEN",
  "PHOTON_IAM_ADMIN_TOKEN",
  "authn.internal_token.signing_key",
  "IAM_CRED_MASTER_KEY",
];

function problemLines(stderr: string): string[] {
  return stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && /IAM_|authn\.|admin\./.test(l))
    .slice(0, 20);
}

/** The refusal and acceptance cases, each checked; throws listing every expectation that failed. */
export async function observeBootstrapHardening(runDir: string, network?: NetnsNetwork) {
  const dir = join(runDir, "iam-bootstrap");
  mkdirSync(join(dir, "logs"), { recursive: true });
  const base = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" };
  const secrets = secretsEnv(dir);
  const failures: string[] = [];
  const dataDir = (name: string) => join(dir, `data-${name}`);
  const ns = network?.ensureMember("iam-bootstrap");
  const where: Where =
    ns === undefined ? { host: "127.0.0.1" } : { host: ns.address, network, namespace: ns.namespace };
  const iamPorts = fixedPorts("iam", 0);
  const [client, http] = ns === undefined ? await freePorts(2) : [iamPorts.client, iamPorts.metrics];
  const listen = [
    "--listen-client-urls",
    `http://${where.host}:${client}`,
    "--listen-http-urls",
    `http://${where.host}:${http}`,
  ];

  const nothing = await runToExit(
    ["--data-dir", dataDir("nothing"), ...listen],
    base,
    join(dir, "logs", "nothing-set.log"),
    where,
  );
  const missing = requiredItems.filter((item) => !nothing.stderr.includes(item));
  if (nothing.exitCode === 0 || nothing.exitCode === null)
    failures.push("production start with nothing set was not refused");
  if (missing.length > 0) failures.push(`refusal did not name: ${missing.join(", ")}`);

  const shortKey = await runToExit(
    ["--data-dir", dataDir("short-key"), ...listen],
    { ...base, ...secrets, IAM_CRED_MASTER_KEY: "00ff" },
    join(dir, "logs", "short-master-key.log"),
    where,
  );
  if (shortKey.exitCode === 0 || !shortKey.stderr.includes("IAM_CRED_MASTER_KEY")) {
    failures.push("a master key that is not 32 bytes was not refused by name");
  }

  const unauth = await runToExit(
    ["--data-dir", dataDir("unauth"), ...listen],
    { ...base, ...secrets, IAM_ALLOW_UNAUTHENTICATED_ADMIN: "true" },
    join(dir, "logs", "unauthenticated-admin.log"),
    where,
  );
  if (unauth.exitCode === 0 || !unauth.stderr.includes("IAM_ALLOW_UNAUTHENTICATED_ADMIN")) {
    failures.push("IAM_ALLOW_UNAUTHENTICATED_ADMIN=true outside dev mode was not refused by name");
  }

  const started = await startsAndStops(
    ["--data-dir", dataDir("complete"), ...listen],
    { ...base, ...secrets },
    join(dir, "logs", "complete.log"),
    `http://${where.host}:${http}/health`,
    where,
  );
  if (!started.healthy)
    failures.push(`with every item set the daemon did not become healthy: ${started.error}`);
  const leaked = secretLeaks(dir, [secrets.IAM_ADMIN_TOKEN, secrets.IAM_CRED_MASTER_KEY]);
  if (leaked.length > 0) failures.push(`secret values appear in: ${leaked.join(", ")}`);

  const observed = {
    nothingSet: {
      exitCode: nothing.exitCode,
      namedItems: requiredItems.filter((i) => nothing.stderr.includes(i)),
      message: problemLines(nothing.stderr),
    },
    shortMasterKey: { exitCode: shortKey.exitCode, message: problemLines(shortKey.stderr) },
    unauthenticatedAdminOutsideDev: { exitCode: unauth.exitCode, message: problemLines(unauth.stderr) },
    everyItemSet: started,
    secretsInLogsOrData: leaked,
    logs: join(dir, "logs"),
  };
  if (failures.length > 0) throw Object.assign(new Error(failures.join("; ")), { details: observed });
  return observed;
}

async function startsAndStops(
  args: string[],
  env: Record<string, string>,
  logFile: string,
  healthUrl: string,
  where: Where,
) {
  const proc = new SupervisedProcess({
    name: "iam",
    ...command(args, where),
    env,
    logFile,
    healthUrl,
  });
  proc.start();
  try {
    await proc.waitHealthy(30_000);
    const exit = await proc.stop(10_000);
    return { healthy: true, exitAfterSigterm: exit ?? null };
  } catch (err) {
    await proc.kill();
    return { healthy: false, error: (err as Error).message };
  }
}

/** Files under `dir` (logs and databases) that contain any of the secret values verbatim. */
function secretLeaks(dir: string, values: readonly string[]): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (values.some((v) => readFileSync(path).includes(v))) hits.push(path);
    }
  };
  walk(dir);
  return hits;
}

/** Where iam-server's sources name each bootstrap item: file and line, for the record. */
export function bootstrapSourceMarkers() {
  const srcDir = join(repoRoot(), "packages", "iam-server", "src");
  const names = [...requiredItems, "admin.allow_unauthenticated", "IAM_ALLOW_UNAUTHENTICATED_ADMIN"];
  const found: Record<string, string[]> = {};
  for (const file of readdirSync(srcDir).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))) {
    const lines = readFileSync(join(srcDir, file), "utf8").split("\n");
    lines.forEach((line, i) => {
      for (const name of names)
        if (line.includes(name)) (found[name] ??= []).push(`packages/iam-server/src/${file}:${i + 1}`);
    });
  }
  const missing = names.filter((n) => found[n] === undefined);
  if (missing.length > 0) throw new Error(`iam-server sources do not mention: ${missing.join(", ")}`);
  return { markers: found };
}
