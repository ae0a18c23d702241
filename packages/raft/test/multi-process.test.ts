// Proves that with three members in separate processes (real gRPC and SQLite), kill -9 of the
// leader under load and its restart lose no acknowledged proposal and apply each exactly once, in
// the same order, on every member.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { freePort } from "@photoncloud/daemon/testing";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { until } from "./helpers.js";

interface Child {
  id: number;
  proc: ChildProcessWithoutNullStreams;
  info: { applied: bigint; role: string; count: number } | null;
  alive: boolean;
  /** Proposals sent and not yet answered (ack or err). */
  outstanding: number;
}

const dir = mkdtempSync(join(tmpdir(), "raft-mp-"));
const children = new Map<number, Child>();
const acked = new Set<string>();
let tagSeq = 0;
/** Proposal tag → member process it was sent to, until answered. */
const pending = new Map<number, Child>();
const answeredTwice: number[] = [];

afterAll(() => {
  for (const c of children.values()) if (c.alive) c.proc.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function spawnMember(id: number, port: number, membersJson: string): Child {
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "member-process.ts"),
      String(id),
      String(port),
      dir,
      membersJson,
    ],
    {
      cwd: join(import.meta.dirname, ".."),
      stdio: ["pipe", "pipe", "inherit"],
      // Frequent snapshots and compaction, so the restarted member may catch up by snapshot.
      env: { ...process.env, RAFT_SNAPSHOT_ENTRIES: "300" },
    },
  );
  const child: Child = { id, proc, info: null, alive: true, outstanding: 0 };
  proc.on("exit", () => {
    child.alive = false;
  });
  proc.stdin.on("error", () => {
    /* the child died; its unanswered proposals are not acknowledged */
  });
  createInterface({ input: proc.stdout }).on("line", (line) => {
    const [kind, a, b, c] = line.split(" ");
    if (kind === "ack" || kind === "err") {
      if (!pending.delete(Number(a))) answeredTwice.push(Number(a));
      child.outstanding--;
    }
    if (kind === "ack") acked.add(`cmd-${a}`);
    else if (kind === "info") child.info = { applied: BigInt(a ?? "0"), role: b ?? "", count: Number(c) };
  });
  children.set(id, child);
  return child;
}

function send(c: Child, line: string): void {
  if (c.alive && c.proc.stdin.writable) c.proc.stdin.write(`${line}\n`);
}

function propose(c: Child): void {
  if (!c.alive || c.outstanding >= 100) return;
  c.outstanding++;
  tagSeq++;
  pending.set(tagSeq, c);
  send(c, `propose ${tagSeq} cmd-${tagSeq}`);
}

async function refreshInfo(): Promise<void> {
  for (const c of children.values()) {
    c.info = null;
    send(c, "info");
  }
  await until("info replies", () => [...children.values()].every((c) => !c.alive || c.info !== null), 10_000);
}

function commandsOf(id: number): string[] {
  const db = new Database(join(dir, `member-${id}`, "app.db"), { readonly: true });
  try {
    return (db.prepare("SELECT cmd FROM log ORDER BY idx").all() as { cmd: Buffer }[]).map((r) =>
      r.cmd.toString(),
    );
  } finally {
    db.close();
  }
}

describe("multi-process cluster", () => {
  it("keeps every acknowledged proposal across kill -9 of the leader", async () => {
    const ports = await Promise.all([1, 2, 3].map(() => freePort()));
    const members = JSON.stringify(
      ports.map((p, i) => ({
        id: String(i + 1),
        name: `m${i + 1}`,
        peerUrls: [`http://127.0.0.1:${p}`],
        clientUrls: [],
        isLearner: false,
      })),
    );
    for (const i of [1, 2, 3]) spawnMember(i, ports[i - 1] as number, members);
    const load = setInterval(() => {
      for (const c of children.values()) for (let k = 0; k < 5; k++) propose(c);
    }, 20);
    try {
      await until("first acks", () => acked.size >= 300, 60_000);
      await refreshInfo();
      const leader = await until("a leader", async () => {
        await refreshInfo();
        return [...children.values()].find((c) => c.info?.role === "leader");
      });
      leader.proc.kill("SIGKILL");
      await until("leader dead", () => !leader.alive);
      const before = acked.size;
      await until("progress without the old leader", () => acked.size >= before + 300, 60_000);
      spawnMember(leader.id, ports[leader.id - 1] as number, members);
      const after = acked.size;
      await until("progress after restart", () => acked.size >= after + 300, 60_000);
    } finally {
      clearInterval(load);
    }
    // Let in-flight proposals settle, then wait for every member to apply the same entries.
    await until("answers to every proposal", () => [...pending.values()].every((c) => !c.alive), 60_000);
    expect(answeredTwice).toEqual([]);
    await until(
      "members converge",
      async () => {
        await refreshInfo();
        const infos = [...children.values()].map((c) => c.info);
        return infos.every(
          (i) => i !== null && i.applied === infos[0]?.applied && i.count === infos[0]?.count,
        );
      },
      60_000,
    );
    for (const c of children.values()) c.proc.kill("SIGTERM");
    await until("children exit", () => [...children.values()].every((c) => !c.alive), 20_000);
    const logs = [1, 2, 3].map(commandsOf);
    expect(logs[1]).toEqual(logs[0]);
    expect(logs[2]).toEqual(logs[0]);
    const all = logs[0] ?? [];
    expect(new Set(all).size).toBe(all.length);
    const applied = new Set(all);
    const missing = [...acked].filter((a) => !applied.has(a));
    expect(missing).toEqual([]);
  }, 240_000);
});
