// Proves the supervisor starts a member, waits for its health, logs to its file, stops it with SIGTERM, escalates to SIGKILL, restarts it, and reports a crash at once.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { freePorts } from "../src/ports.js";
import { ProcessExitedError, SupervisedProcess } from "../src/supervisor.js";

const fixture = fileURLToPath(new URL("./fixtures/fake-member.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "test-cluster-supervisor-"));
const started: SupervisedProcess[] = [];
afterAll(async () => {
  await Promise.all(started.map((p) => p.kill()));
  rmSync(dir, { recursive: true, force: true });
});

async function member(name: string, mode?: string) {
  const [port] = await freePorts(1);
  const proc = new SupervisedProcess({
    name,
    command: process.execPath,
    args: [fixture, String(port), ...(mode ? [mode] : [])],
    env: { PATH: process.env.PATH ?? "" },
    logFile: join(dir, "logs", `${name}.log`),
    healthUrl: `http://127.0.0.1:${port}/health`,
  });
  started.push(proc);
  return proc;
}

describe("SupervisedProcess", () => {
  it("starts, becomes healthy, logs to its own file, stops on SIGTERM and restarts", async () => {
    const proc = await member("m1");
    proc.start();
    await proc.waitHealthy(20_000);
    const firstPid = proc.pid;
    expect(await proc.stop(10_000)).toEqual({ code: 0, signal: null });
    expect(proc.running).toBe(false);
    proc.start();
    await proc.waitHealthy(20_000);
    expect(proc.pid).not.toBe(firstPid);
    expect(await proc.kill()).toEqual({ code: null, signal: "SIGKILL" });
    const log = readFileSync(join(dir, "logs", "m1.log"), "utf8");
    expect(log).toContain("fake member: SIGTERM, exiting");
    expect(log.match(/fake member listening/g)).toHaveLength(2);
  });

  it("escalates to SIGKILL when SIGTERM is ignored past the grace period", async () => {
    const proc = await member("stubborn", "--ignore-sigterm");
    proc.start();
    await proc.waitHealthy(20_000);
    expect(await proc.stop(300)).toEqual({ code: null, signal: "SIGKILL" });
  });

  it("fails the health wait at once, with the log tail, when the member exits", async () => {
    const proc = await member("crasher", "--crash");
    proc.start();
    const err = await proc.waitHealthy(20_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProcessExitedError);
    expect((err as Error).message).toContain("fake member: failing at start");
    expect((err as ProcessExitedError).exit.code).toBe(3);
  });
});
