// Helpers shared by the lanes: a throw-away cluster inside the run directory, the ctl CLIs run as an
// operator would run them, and read-back checks against every member.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, type MemberDescriptor, type RaftKind, laneTiming } from "../cluster.js";
import { KvClient } from "../clients.js";
import type { LaneContext } from "../lane.js";
import { workspaceBin } from "../daemons.js";
import { pollUntil } from "../poll.js";
import { waitForLeader } from "../raft-view.js";

export interface LaneClusterOptions {
  readonly chainfire?: number;
  readonly flaredb?: number;
  readonly iam?: boolean;
  readonly keepData?: boolean;
}

/** A planned (not yet started) cluster in `<runDir>/<name>/` with lane timing, stopped when the lane ends. */
export async function createLaneCluster(
  ctx: LaneContext,
  name: string,
  o: LaneClusterOptions,
): Promise<Cluster> {
  const cluster = await Cluster.create({
    dir: join(ctx.runDir, name),
    chainfire: o.chainfire ?? 0,
    flaredb: o.flaredb ?? 0,
    iam: o.iam ?? false,
    ports: "ephemeral",
    timing: laneTiming,
    token: `${ctx.lane}-${name}`,
    keepData: o.keepData ?? false,
    // A lane's only cluster is called "cluster": its namespaces are then just pc-<id>-<kind>-<name>.
    ...(ctx.network === undefined ? {} : { netns: ctx.network, netnsLabel: name === "cluster" ? "" : name }),
  });
  if (cluster.unavailable.length > 0) {
    throw new Error(cluster.unavailable.map((u) => `${u.kind} is not available: ${u.reason}`).join("; "));
  }
  ctx.onCleanup(`cluster ${name}`, () => cluster.stop(5000));
  return cluster;
}

/** Starts every member and waits for health and for one agreed leader per Raft kind. */
export async function startAndSettle(cluster: Cluster): Promise<void> {
  await cluster.start(60_000);
  for (const kind of ["chainfire", "flaredb"] as const) {
    const members = cluster.ofKind(kind).map((m) => m.desc);
    if (members.length > 0) await waitForLeader(members, 30_000);
  }
}

export async function startLaneCluster(
  ctx: LaneContext,
  name: string,
  o: LaneClusterOptions,
): Promise<Cluster> {
  const cluster = await createLaneCluster(ctx, name, o);
  await startAndSettle(cluster);
  return cluster;
}

/** What a step artifact records about a cluster it started. */
export function describeCluster(cluster: Cluster) {
  return {
    token: cluster.token,
    timing: cluster.timing,
    members: [...cluster.members.values()].map((m) => ({ ...m.desc, pid: m.proc.pid ?? null })),
  };
}

/** `node01=http://…,node02=…` for the members of one kind. */
export function initialClusterOf(members: readonly MemberDescriptor[]): string {
  return members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
}

export function descs(cluster: Cluster, kind: RaftKind): MemberDescriptor[] {
  return cluster.ofKind(kind).map((m) => m.desc);
}

export interface CtlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly argv: string[];
}

/** Runs `chainfirectl` or `flaredbctl` with a deadline; output also goes to `<runDir>/logs/ctl.log`. */
export function runCtl(
  ctx: LaneContext,
  ctl: "chainfirectl" | "flaredbctl",
  args: string[],
  deadlineMs = 60_000,
) {
  const override = process.env[`PHOTON_${ctl.toUpperCase()}_BIN`];
  const found = override
    ? undefined
    : workspaceBin(ctl === "chainfirectl" ? "chainfire-server" : "flaredb-server", ctl);
  if (found !== undefined && !found.ok) return Promise.reject(new Error(found.reason));
  const command = override ?? process.execPath;
  const argv = override ? args : [(found as { path: string }).path, ...args];
  return new Promise<CtlResult>((resolve, reject) => {
    const child = spawn(command, argv, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      const line = `$ ${ctl} ${args.join(" ")}\n(exit ${code})\n${stdout}${stderr}\n`;
      writeFileSync(join(ctx.runDir, "ctl-commands.log"), line, { flag: "a" });
      resolve({ code, stdout, stderr, argv: [ctl, ...args] });
    });
  });
}

/** Like runCtl, but a non-zero exit is an error carrying the command's output. */
export async function ctlOk(
  ctx: LaneContext,
  ctl: "chainfirectl" | "flaredbctl",
  args: string[],
  deadlineMs?: number,
) {
  const r = await runCtl(ctx, ctl, args, deadlineMs);
  if (r.code !== 0)
    throw new Error(`${r.argv.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).slice(-800)}`);
  return r;
}

export interface KeyRecord {
  readonly key: string;
  readonly value: string;
  readonly createRevision: string;
  readonly modRevision: string;
  readonly version: string;
}

/** Every key under `prefix` as one member sees it (serializable: its own state, no leader round trip). */
export async function readKeys(
  member: MemberDescriptor,
  prefix: string,
  options: { linearizable?: boolean } = {},
): Promise<KeyRecord[]> {
  const kv = new KvClient(member.clientUrl);
  try {
    const res = await kv.range(prefix, { serializable: !options.linearizable });
    return res.kvs.map((k) => ({
      key: Buffer.from(k.key).toString(),
      value: Buffer.from(k.value).toString(),
      createRevision: k.createRevision.toString(),
      modRevision: k.modRevision.toString(),
      version: k.version.toString(),
    }));
  } finally {
    kv.close();
  }
}

/**
 * Waits until every member holds exactly `expected` (key → value) under `prefix`; returns per member
 * the number of keys. Missing or different keys are named in the error when the deadline passes.
 */
export async function expectKeysEverywhere(
  members: readonly MemberDescriptor[],
  prefix: string,
  expected: ReadonlyMap<string, string>,
  deadlineMs = 30_000,
) {
  return pollUntil(
    `${expected.size} keys under ${prefix} on ${members.map((m) => m.id).join(", ")}`,
    async () => {
      const counts: Record<string, number> = {};
      for (const m of members) {
        const got = new Map((await readKeys(m, prefix)).map((k) => [k.key, k.value]));
        const missing = [...expected].filter(([k, v]) => got.get(k) !== v).map(([k]) => k);
        if (missing.length > 0)
          throw new Error(
            `${m.id} lacks or differs on ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` (+${missing.length - 5})` : ""}`,
          );
        counts[m.id] = got.size;
      }
      return counts;
    },
    { deadlineMs, intervalMs: 200 },
  );
}

/** Puts through any member that accepts them (followers forward), retrying while a leader is elected. */
export async function putKeys(
  members: readonly MemberDescriptor[],
  entries: ReadonlyMap<string, string>,
  deadlineMs = 30_000,
) {
  const clients = members.map((m) => new KvClient(m.clientUrl));
  try {
    for (const [key, value] of entries) {
      await pollUntil(
        `put ${key}`,
        async () => {
          for (const kv of clients) {
            try {
              return await kv.put(key, value, 3000);
            } catch {
              // Try the next member; the poll retries the whole list until the deadline.
            }
          }
          throw new Error(`no member accepted put ${key}`);
        },
        { deadlineMs, intervalMs: 100 },
      );
    }
  } finally {
    for (const kv of clients) kv.close();
  }
}
