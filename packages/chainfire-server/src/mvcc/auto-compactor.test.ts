import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LocalReplicated } from "../testing/local-replicated.js";
import { AutoCompactor, parseAutoCompaction, REVISION_MODE_INTERVAL_MS } from "./auto-compactor.js";
import { encodeCommand, putRequest } from "./messages.js";
import { MvccStore } from "./store.js";

let dir: string;
let store: MvccStore;
let replicated: LocalReplicated;
let now: number;
let leading: boolean;
const logged: string[] = [];
const log = {
  info: (_fields: object, message: string) => logged.push(message),
  warn: (_fields: object, message: string) => logged.push(message),
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chainfire-autocompact-"));
  store = new MvccStore({ path: join(dir, "mvcc.db") });
  replicated = new LocalReplicated(store);
  now = 1_000_000;
  leading = true;
  logged.length = 0;
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function puts(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await replicated.propose(
      encodeCommand({ put: putRequest({ key: Buffer.from(`k${i % 3}`), value: Buffer.from("v") }) }),
    );
  }
}

function compactor(mode: "periodic" | "revision", retention: string): AutoCompactor {
  const policy = parseAutoCompaction(mode, retention);
  if (typeof policy === "string") throw new Error(policy);
  return new AutoCompactor(
    policy,
    replicated,
    store,
    () => leading,
    log,
    () => now,
  );
}

describe("periodic auto-compaction", () => {
  it("keeps one retention of history: nothing before it has passed, then the revision of one retention ago", async () => {
    // Proves etcd's periodic mode with --auto-compaction-retention=1 (an hour): the revision is
    // sampled every 6 minutes, the first compaction comes an hour after start, to the revision
    // the store had then, and the next one an hour later, to the revision of an hour before it.
    const c = compactor("periodic", "1");
    expect(c.intervalMs).toBe(360_000);
    c.start();
    c.stop();
    const revisionAt = new Map<number, bigint>([[0, store.currentRevision()]]);
    for (let minute = 6; minute <= 120; minute += 6) {
      await puts(5);
      now += 360_000;
      await c.tick();
      if (minute < 60) expect(store.compactRevision()).toBe(-1n);
      if (minute === 60) expect(store.compactRevision()).toBe(revisionAt.get(0));
      if (minute > 60 && minute < 120) expect(store.compactRevision()).toBe(revisionAt.get(0));
      revisionAt.set(minute, store.currentRevision());
    }
    // At 120 minutes, the oldest sample held is the one taken at 54 minutes (about an hour back).
    expect(store.compactRevision()).toBe(revisionAt.get(54));
    expect(logged.filter((m) => m === "auto-compacted the history")).toHaveLength(2);
  });

  it("compacts only on the leader, and a new leader catches up at once", async () => {
    // Proves the compactor is paused on followers (etcd's Pause) but keeps sampling, so a member
    // that becomes leader after the retention compacts at its next round.
    const c = compactor("periodic", "30m");
    expect(c.intervalMs).toBe(180_000);
    c.start();
    c.stop();
    const start = store.currentRevision();
    leading = false;
    for (let i = 0; i < 12; i++) {
      await puts(2);
      now += 180_000;
      await c.tick();
    }
    expect(store.compactRevision()).toBe(-1n);
    leading = true;
    await c.tick();
    expect(store.compactRevision()).toBeGreaterThan(start);
  });

  it("counts a compaction a client already made as done", async () => {
    // Proves that an explicit Compact past the due revision is not repeated or reported as a failure.
    const c = compactor("periodic", "10m");
    c.start();
    c.stop();
    await puts(10);
    await replicated.propose(
      encodeCommand({ compaction: { revision: store.currentRevision(), physical: false } }),
    );
    const compacted = store.compactRevision();
    for (let i = 0; i < 11; i++) {
      now += 60_000;
      await c.tick();
    }
    expect(store.compactRevision()).toBe(compacted);
    expect(logged).toEqual([]);
  });
});

describe("revision auto-compaction", () => {
  it("compacts every 5 minutes to the current revision minus the retention, once per revision", async () => {
    // Proves etcd's revision mode: --auto-compaction-retention=10 keeps the last 10 revisions.
    const c = compactor("revision", "10");
    expect(c.intervalMs).toBe(REVISION_MODE_INTERVAL_MS);
    await puts(5);
    await c.tick();
    expect(store.compactRevision()).toBe(-1n);
    await puts(20);
    await c.tick();
    expect(store.compactRevision()).toBe(store.currentRevision() - 10n);
    await c.tick();
    expect(logged).toEqual(["auto-compacted the history"]);
    leading = false;
    await puts(5);
    await c.tick();
    expect(store.compactRevision()).toBe(store.currentRevision() - 15n);
  });
});

describe("--auto-compaction-retention", () => {
  it("reads hours, durations and revisions as etcd does, and says what is wrong otherwise", () => {
    // Proves the parser: a whole number is hours (periodic) or revisions (revision); periodic also
    // takes Go durations; 0 turns it off; anything else is refused with an example.
    expect(parseAutoCompaction("periodic", "0")).toEqual({ mode: "periodic", retentionMs: 0 });
    expect(parseAutoCompaction("periodic", "2")).toEqual({ mode: "periodic", retentionMs: 7_200_000 });
    expect(parseAutoCompaction("periodic", "1h30m")).toEqual({ mode: "periodic", retentionMs: 5_400_000 });
    expect(parseAutoCompaction("periodic", "1.5h")).toEqual({ mode: "periodic", retentionMs: 5_400_000 });
    expect(parseAutoCompaction("periodic", "90s")).toEqual({ mode: "periodic", retentionMs: 90_000 });
    expect(parseAutoCompaction("revision", "1000")).toEqual({ mode: "revision", retention: 1000n });
    expect(parseAutoCompaction("periodic", "soon")).toMatch(/duration such as 30m/);
    expect(parseAutoCompaction("periodic", "-1")).toMatch(/duration such as 30m/);
    expect(parseAutoCompaction("revision", "1h")).toMatch(/number of revisions/);
    const off = parseAutoCompaction("periodic", "0");
    if (typeof off === "string") throw new Error(off);
    expect(new AutoCompactor(off, replicated, store, () => true, log).enabled).toBe(false);
  });
});
