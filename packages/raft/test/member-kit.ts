// Test helpers for the member kit: free loopback ports, a silent logger, members started with
// startMember from etcd-style flags, and their shutdown hooks run in reverse order.
import { mkdirSync } from "node:fs";
import { freePort } from "@photoncloud/daemon/testing";
import { join } from "node:path";
import { createLogger, type DaemonMetrics, parseConfig } from "@photoncloud/daemon";
import { type MemberConfig, memberOptions } from "../src/member/member-options.js";
import { membershipHandlers } from "../src/member/membership-handlers.js";
import { type RunningMember, startMember } from "../src/member/start-member.js";
import { QuorumAtRiskError } from "../src/service/errors.js";
import { AppendLogMachine } from "../src/service/sqlite-test-machine.js";
import { until } from "./helpers.js";

export const options = memberOptions("RAFTTEST_", { client: 2379, peer: 2380, metrics: 2381 });

/** `count` distinct free loopback ports (outside the kernel's ephemeral range). */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}

export function memberConfig(argv: string[]): MemberConfig {
  const out = parseConfig({ name: "rafttest", options }, argv, {});
  if (out.action !== "run") throw new Error("expected a runnable config");
  return out.config;
}

export interface TestMember {
  name: string;
  member: RunningMember;
  machine: AppendLogMachine;
  stop(): Promise<void>;
}

export async function startTestMember(
  name: string,
  argv: string[],
  metrics?: DaemonMetrics,
): Promise<TestMember> {
  const config = memberConfig(["--name", name, ...argv]);
  mkdirSync(config.dataDir, { recursive: true });
  const machine = new AppendLogMachine(join(config.dataDir, "app.db"));
  const hooks: { name: string; fn: () => Promise<void> | void }[] = [];
  const member = await startMember({
    daemon: "chainfire",
    config,
    stateMachine: machine,
    logger: createLogger({ name: "rafttest", level: "silent" }),
    onShutdown: (n, fn) => hooks.push({ name: n, fn }),
    version: "0.0.0-test",
    ...(metrics !== undefined ? { metrics } : {}),
    raftOverrides: { requestTimeoutMs: 20_000 },
  });
  let stopped = false;
  return {
    name,
    member,
    machine,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const h of hooks.reverse()) await h.fn();
    },
  };
}

/** etcd-style flags for member `name` of a loopback cluster with short Raft timeouts. */
export function clusterFlags(
  dir: string,
  name: string,
  peerPort: number,
  clientPort: number,
  initialCluster: string,
): string[] {
  return [
    "--data-dir",
    join(dir, name),
    "--listen-peer-urls",
    `http://127.0.0.1:${peerPort}`,
    "--listen-client-urls",
    `http://127.0.0.1:${clientPort}`,
    "--initial-cluster",
    initialCluster,
    "--initial-cluster-token",
    "test-token",
    "--heartbeat-interval",
    "20",
    "--election-timeout",
    "200",
  ];
}

export function leaderOf(ms: readonly TestMember[]): TestMember | undefined {
  return ms.find((m) => !m.member.raft.node.isStopped && m.member.raft.status().role === "leader");
}

/** On a loaded machine a leader may briefly not have heard a voter (QuorumAtRisk): retry only that. */
export async function retryQuorum<T>(op: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof QuorumAtRiskError) || Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts members `names` on free ports under `dir`; resolves once there is a leader and all have published. */
export async function startTestCluster(
  dir: string,
  names: string[],
): Promise<{ members: TestMember[]; ports: number[]; cluster: string; flags: string[][] }> {
  const ports = await freePorts(names.length * 2);
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i]}`).join(",");
  const flags = names.map((n, i) => clusterFlags(dir, n, ports[2 * i]!, ports[2 * i + 1]!, cluster));
  const members = await Promise.all(names.map((n, i) => startTestMember(n, flags[i]!)));
  await until("client URLs published", async () => {
    const leader = leaderOf(members);
    if (leader === undefined) return false;
    const list = await membershipHandlers(leader.member).memberList();
    return list.members.length === names.length && list.members.every((m) => m.clientUrls.length === 1);
  });
  return { members, ports, cluster, flags };
}
