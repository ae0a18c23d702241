import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AppendLogMachine } from "./sqlite-test-machine.js";
import type { ApplyEntry } from "./state-machine.js";

const dirs: string[] = [];
const machines: AppendLogMachine[] = [];
afterEach(() => {
  for (const m of machines.splice(0)) m.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function until(ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

function machine(): AppendLogMachine {
  const dir = mkdtempSync(join(tmpdir(), "append-machine-"));
  dirs.push(dir);
  const m = new AppendLogMachine(join(dir, "app.db"));
  machines.push(m);
  return m;
}

function entries(from: number, to: number): ApplyEntry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => ({
    index: BigInt(from + i),
    term: 1n,
    timestampMs: 0,
    seed: 0n,
    command: new TextEncoder().encode(`cmd-${from + i}`),
  }));
}

describe("AppendLogMachine.beginSnapshot", () => {
  it("takes the first snapshot synchronously while its worker starts", async () => {
    // Proves the event loop never waits for a thread start-up, and that image is exact too.
    const m = machine();
    m.applyBatch(entries(1, 10));
    const job = m.beginSnapshot();
    m.applyBatch(entries(11, 20));
    expect(JSON.parse(Buffer.from(await job.image).toString())).toHaveLength(10);
    await until(() => m.snapshotWorkerReady);
  });

  it("produces exactly the synchronous image at its index while later entries are applied", async () => {
    // Proves the off-loop image is pinned at the index of the call, not at the index when it completes.
    const m = machine();
    m.applyBatch(entries(1, 100));
    await m.startSnapshotWorker();
    expect(m.snapshotWorkerReady).toBe(true);
    const job = m.beginSnapshot();
    expect(job.index).toBe(100n);
    for (let i = 101; i <= 1000; i += 100) m.applyBatch(entries(i, i + 99));
    const reference = machine();
    reference.applyBatch(entries(1, 100));
    expect(Buffer.from(await job.image).equals(Buffer.from(reference.snapshot()))).toBe(true);
    const restored = machine();
    restored.restore(await job.image, job.index);
    expect(restored.commands().map((c) => c.index)).toEqual(entries(1, 100).map((e) => e.index));
    expect(m.appliedIndex()).toBe(1000n);
  });

  it("keeps its view through a restore, and a second job sees the restored state", async () => {
    // Proves a snapshot install during a job does not leak into the image being produced.
    const m = machine();
    m.applyBatch(entries(1, 50));
    await m.startSnapshotWorker();
    const job = m.beginSnapshot();
    const other = machine();
    other.applyBatch(entries(1, 500));
    m.restore(other.snapshot(), 500n);
    const first = JSON.parse(Buffer.from(await job.image).toString()) as [string, string][];
    expect(first).toHaveLength(50);
    const second = m.beginSnapshot();
    expect(second.index).toBe(500n);
    expect(Buffer.from(await second.image).equals(Buffer.from(other.snapshot()))).toBe(true);
  });

  it("rejects a job still running when the machine is closed", async () => {
    // Proves close() ends the worker and the pending job fails instead of hanging.
    const m = machine();
    m.applyBatch(entries(1, 20_000));
    await m.startSnapshotWorker();
    const job = m.beginSnapshot();
    m.close();
    await expect(job.image).rejects.toThrow(/closed|exited/);
  });
});
