// Compaction under faults. Three writers put to five keys through any member (with prev_kv), a
// compactor compacts close behind the newest revision (physical or not at random, and now and then
// at a revision already compacted), two readers read the keys at past revisions through any member,
// and watchers follow the keys from revision 1, while a nemesis kills members and restarts them,
// freezes one for longer than an election timeout, moves the leadership, and keeps a follower down
// while the others write and compact past the entries the leader keeps for it, so that it comes
// back through a snapshot of a compacted store. One watcher, moving from member to member, records
// every change: the compactor never compacts past it, so its events are the full list of changes.
// The checks (support/compaction-check.ts, support/watch-check.ts):
// - the changes: one put per revision, each sent by a writer and made once; every acknowledged put
//   at its revision, with the key's previous version as prev_kv;
// - a compaction is refused as compacted only after one at or above it was asked for, is not
//   acknowledged after one at or above it was, and is never refused as a future revision;
// - a read at a revision gives the key as it stood then, or is refused as compacted only below a
//   compaction asked for; it must be refused below one acknowledged before it was sent (by any
//   member for a linearizable read, by the member serving it for a serializable one);
// - every watch session carries the changes from its start on; one cancelled as compacted was
//   behind a compaction asked for before the cancellation, at that compaction's revision;
// - afterwards every member has the same HashKV up to the last revision (etcd's own check for
//   members that disagree) and compact revision, and the keys as the changes left them.
// COMPACT_SEEDS and COMPACT_DURATION_MS widen the search; COMPACT_KINDS=etcd,chainfire also runs it
// against a 3-member etcd 3.4 (the checks' control: etcd passes them). A failed run is kept in
// work/test-report/compaction/.
import type { ServiceError } from "@grpc/grpc-js";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChainfireClients, etcd } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { afterAll, describe, expect, it } from "vitest";
import { Cluster, type ClusterKind } from "../bench/cluster.js";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import {
  type CompactRecord,
  checkChanges,
  checkCompactions,
  checkReads,
  highest,
  KeyHistory,
  type Outcome,
  type PutRecord,
  type ReadRecord,
  recordedChanges,
  refusingCompaction,
  sameKv,
  showKv,
} from "./support/compaction-check.js";
import { call, until } from "./support/daemon-cluster.js";
import { countFromEnv, kindsFromEnv, seedsFromEnv } from "./support/random-diff.js";
import { checkWatches, type WatchSession } from "./support/watch-check.js";
import { FaultedCluster, faultClusterOptions } from "./support/fault-cluster.js";
import { snapshotsReceived } from "./support/member-metrics.js";
import { Watchers, watchedKv } from "./support/watchers.js";

const SEEDS = seedsFromEnv("COMPACT_SEEDS", "1");
const DURATION_MS = countFromEnv("COMPACT_DURATION_MS", 10_000);
const KINDS = kindsFromEnv("COMPACT_KINDS");
const PREFIX = "cmp/";
const KEYS = Array.from({ length: 5 }, (_, i) => `${PREFIX}${i}`);
/** One watcher on each member, one moving, and the recorder (moving too), last. */
const WATCHERS = 5;
const RECORDER = WATCHERS - 1;
const REPORT_DIR = join(import.meta.dirname, "..", "..", "..", "work", "test-report", "compaction");
const enc = (s: string) => Buffer.from(s);
/** The fault's own length (how long a member stays down or frozen): a duration, not a wait for state. */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Fault = "kill" | "freeze" | "moveLeader" | "behind";
const FAULTS: readonly Fault[] = ["kill", "freeze", "moveLeader", "behind"];

/** A request's end as the checks classify it: refusals by etcd's texts, anything else unknown. */
function outcomeOf(err: ServiceError): Exclude<Outcome, "ok"> {
  if (err.details?.includes("required revision has been compacted")) return "compacted";
  if (err.details?.includes("required revision is a future revision")) return "future";
  return "unknown";
}

/** A 3-member cluster under load and faults, and what its clients recorded. */
class Run extends FaultedCluster {
  readonly puts: PutRecord[] = [];
  readonly compactions: CompactRecord[] = [];
  readonly reads: ReadRecord[] = [];
  readonly sessions: WatchSession[] = [];
  readonly faults: string[] = [];
  /** Members that came back from being left behind through a snapshot. */
  snapshotsAfterBehind = 0;
  stopped = false;
  private loadRunning = true;
  /** The highest revision a put has been acknowledged at so far. */
  private newestAcknowledged = 1n;

  constructor(
    readonly kind: ClusterKind,
    cluster: Cluster,
  ) {
    super(cluster);
  }

  stop(): void {
    this.stopped = true;
    this.loadRunning = false;
    for (const m of this.cluster.members) m.process?.kill("SIGCONT");
    this.close();
  }

  private pick(rnd: SeededRandom): number | undefined {
    const members = this.usable();
    return members.length === 0 ? undefined : members[rnd.intBelow(members.length)];
  }

  async writer(seed: number, w: number): Promise<void> {
    const rnd = new SeededRandom(BigInt(seed) * 1000n + BigInt(w));
    for (let n = 0; this.loadRunning; n++) {
      const i = this.pick(rnd);
      if (i === undefined) {
        await pause(20);
        continue;
      }
      const key = KEYS[rnd.intBelow(KEYS.length)]!;
      const value = `${seed}.${w}.${n}`;
      const invokedAt = performance.now();
      const res = await call<etcd.PutResponse>(
        this.clients[i]!.kv,
        "put",
        putRequest({ key: enc(key), value: enc(value), prevKv: true }),
        2000,
      ).catch(() => undefined);
      if (res === undefined) {
        this.puts.push({ key, value, by: this.cluster.members[i]!.name, invokedAt });
        continue;
      }
      const revision = res.header!.revision;
      if (revision > this.newestAcknowledged) this.newestAcknowledged = revision;
      this.puts.push({
        key,
        value,
        by: this.cluster.members[i]!.name,
        invokedAt,
        answer: { returnedAt: performance.now(), revision, prev: res.prevKv ? watchedKv(res.prevKv) : null },
      });
    }
  }

  /**
   * Compacts every 150–400 ms, up to 40 revisions behind the newest the recorder has had (never
   * past it: its events are the list of changes), physical or not at random. One time in ten, and
   * every eighth time, it asks again for a revision at or below the highest compaction already
   * acknowledged, which must be refused.
   */
  async compactor(seed: number, recorderNext: () => bigint): Promise<void> {
    const rnd = new SeededRandom(BigInt(seed) * 1000n + 900n);
    let asked = 1n;
    let acknowledged = 0n;
    for (let round = 0; this.loadRunning; round++) {
      await pause(150 + rnd.intBelow(250));
      const i = this.pick(rnd);
      // Not after the load: the last revision must stay above the compactions for HashKV.
      if (i === undefined || !this.loadRunning) continue;
      const again = acknowledged > 0n && (round % 8 === 7 || rnd.chance(0.1));
      const revision = again
        ? 1n + BigInt(rnd.intBelow(Number(acknowledged)))
        : recorderNext() - 1n - BigInt(rnd.intBelow(40));
      if (!again && revision <= asked) continue;
      if (!again) asked = revision;
      const physical = rnd.chance(0.5);
      const invokedAt = performance.now();
      const outcome = await call(this.clients[i]!.kv, "compact", { revision, physical }, 3000).then(
        () => "ok" as const,
        (err: ServiceError) => outcomeOf(err),
      );
      const by = this.cluster.members[i]!.name;
      this.compactions.push({ revision, physical, by, invokedAt, returnedAt: performance.now(), outcome });
      if (outcome === "ok" && revision > acknowledged) acknowledged = revision;
    }
  }

  /** Reads a key at a past revision: around the compactions asked for, above them, or just ahead. */
  async reader(seed: number, r: number): Promise<void> {
    const rnd = new SeededRandom(BigInt(seed) * 1000n + 700n + BigInt(r));
    while (this.loadRunning) {
      const i = this.pick(rnd);
      if (i === undefined) {
        await pause(20);
        continue;
      }
      const compacted = highest(
        this.compactions.map((c) => c.revision),
        1n,
      );
      const newest = this.newestAcknowledged;
      const p = rnd.intBelow(10);
      const revision =
        p < 4
          ? compacted - 20n + BigInt(rnd.intBelow(26))
          : p < 9
            ? compacted + BigInt(rnd.intBelow(Math.max(1, Number(newest - compacted) + 1)))
            : newest + 1n + BigInt(rnd.intBelow(3));
      if (revision < 1n) continue;
      const key = KEYS[rnd.intBelow(KEYS.length)]!;
      const serializable = rnd.chance(0.3);
      const invokedAt = performance.now();
      const outcome = await call<etcd.RangeResponse>(
        this.clients[i]!.kv,
        "range",
        rangeRequest({ key: enc(key), revision, serializable }),
        2000,
      ).then(
        (res) => ({ kv: res.kvs[0] ? watchedKv(res.kvs[0]) : null, headerRevision: res.header!.revision }),
        (err: ServiceError) => outcomeOf(err),
      );
      if (outcome === "unknown") continue;
      const by = this.cluster.members[i]!.name;
      this.reads.push({ by, key, revision, serializable, invokedAt, returnedAt: performance.now(), outcome });
    }
  }

  /** One fault, on the leader half the time, undone before it returns. */
  async fault(kind: Fault, rnd: SeededRandom, recorderNext: () => bigint): Promise<void> {
    const leader = await this.leader();
    const target =
      kind === "behind" ? (leader + 1 + rnd.intBelow(2)) % 3 : rnd.chance(0.5) ? leader : rnd.intBelow(3);
    const m = this.cluster.members[target]!;
    this.faults.push(
      `${kind} ${m.name}${target === leader ? " (leader)" : ""} at ${Math.round(performance.now())} ms`,
    );
    if (kind === "kill" || kind === "behind") {
      const exited = once(m.process!, "exit");
      this.cluster.stopMember(m);
      await exited;
      if (kind === "kill") await pause(300 + rnd.intBelow(500));
      else await this.leaveBehind(recorderNext);
      if (this.stopped) return;
      this.cluster.startMember(m);
    } else if (kind === "freeze") {
      m.process!.kill("SIGSTOP");
      this.frozen.add(target);
      await pause(1000 + rnd.intBelow(800));
      m.process!.kill("SIGCONT");
      this.frozen.delete(target);
    } else {
      const to = this.ids[(leader + 1 + rnd.intBelow(2)) % 3]!;
      await call(this.clients[leader]!.maintenance, "moveLeader", { targetID: to }, 5000).catch(() => {});
    }
    await this.cluster.waitReady();
    if (kind === "behind" && this.kind === "chainfire" && ((await snapshotsReceived(m)) ?? 0) > 0)
      this.snapshotsAfterBehind++;
  }

  /**
   * While a member is down: the others write 400 revisions, and a compaction past where the member
   * stopped is acknowledged, so that the member comes back to a compacted store (through a snapshot
   * where the leader no longer keeps the entries it lacks: chainfire keeps 20 after a snapshot).
   */
  private async leaveBehind(recorderNext: () => bigint): Promise<void> {
    const from = recorderNext();
    await until(
      () =>
        this.stopped ||
        (recorderNext() > from + 400n &&
          this.compactions.some((c) => c.outcome === "ok" && c.revision > from)),
      "400 revisions and a compaction past a member left behind",
      60_000,
    );
  }

  /** Ends the load: the writers, compactor and readers stop after their request under way. */
  endLoad(): void {
    this.loadRunning = false;
  }
}

/** The revision the cluster has reached, through a linearizable read on member `i`. */
async function linearizableRevision(c: ChainfireClients): Promise<bigint> {
  const req = rangeRequest({ key: enc(PREFIX), rangeEnd: enc("cmp0"), countOnly: true });
  return (await call<etcd.RangeResponse>(c.kv, "range", req, 5000)).header!.revision;
}

/**
 * What the members hold at the end: the same HashKV up to the last revision, with the same compact
 * revision (polled: etcd finishes a compaction in the background), and the keys as the changes left
 * them. HashKV is asked for the current revision (0), which every member must report as the last:
 * asked for the last revision itself, it is refused when a compaction landed there.
 */
async function checkMembers(
  run: Run,
  changes: ReturnType<typeof recordedChanges>,
  last: bigint,
): Promise<string[]> {
  const problems: string[] = [];
  const hashes = async () =>
    Promise.all(
      run.clients.map((c) => call<etcd.HashKVResponse>(c.maintenance, "hashKv", { revision: 0n }, 10_000)),
    );
  const agreed = await until(
    async () => {
      const hs = await hashes();
      const same = (h: etcd.HashKVResponse) =>
        h.header!.revision === last && h.hash === hs[0]!.hash && h.compactRevision === hs[0]!.compactRevision;
      return hs.every(same) ? hs : undefined;
    },
    `the members' HashKV up to the last revision (${last}) to agree`,
    30_000,
  ).catch(async (err: Error) => {
    const hs = await hashes().catch(() => []);
    const shown = hs.map(
      (h, i) =>
        `${run.cluster.members[i]!.name}: ${h.hash} from ${h.compactRevision} to ${h.header!.revision}`,
    );
    problems.push(`${err.message}: ${shown.join(", ")}`);
    return undefined;
  });
  if (agreed !== undefined) {
    const compactRevision = agreed[0]!.compactRevision;
    const asked = run.compactions.filter((c) => c.outcome === "ok" || c.outcome === "unknown");
    const top = highest(
      run.compactions.filter((c) => c.outcome === "ok").map((c) => c.revision),
      0n,
    );
    if (!asked.some((c) => c.revision === compactRevision) || compactRevision < top)
      problems.push(
        `the members are compacted at ${compactRevision}; the highest compaction acknowledged is at ${top}`,
      );
  }
  const history = new KeyHistory(changes);
  for (const [i, c] of run.clients.entries()) {
    const res = await call<etcd.RangeResponse>(
      c.kv,
      "range",
      rangeRequest({ key: enc(PREFIX), rangeEnd: enc("cmp0"), serializable: true }),
    );
    const held = new Map(res.kvs.map((kv) => [kv.key.toString(), watchedKv(kv)]));
    for (const key of KEYS) {
      const want = history.at(key, last);
      if (!sameKv(held.get(key) ?? null, want))
        problems.push(
          `${run.cluster.members[i]!.name} holds ${showKv(held.get(key) ?? null)}; the changes left ${showKv(want)}`,
        );
    }
  }
  return problems;
}

const bigints = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

async function runSeed(run: Run, seed: number): Promise<void> {
  const watchers = new Watchers(
    {
      cluster: run.cluster,
      clients: run.clients,
      get stopped() {
        return run.stopped;
      },
    },
    { count: WATCHERS, pinned: run.cluster.members.length, prefix: PREFIX, seed, sessions: run.sessions },
  );
  const recorderNext = () => watchers.nextRevision(RECORDER);
  const load = [
    ...[0, 1, 2].map((w) => run.writer(seed, w)),
    run.compactor(seed, recorderNext),
    ...[0, 1].map((r) => run.reader(seed, r)),
  ];
  const termBefore = (await call<etcd.StatusResponse>(run.clients[0]!.maintenance, "status", {})).raftTerm;
  try {
    // The nemesis: the first faults one of each kind in a seeded order, then drawn, until the time is up.
    const rnd = new SeededRandom(BigInt(seed) ^ 0xc0ffeen);
    const first = [...FAULTS];
    for (let i = first.length - 1; i > 0; i--) {
      const j = rnd.intBelow(i + 1);
      [first[i], first[j]] = [first[j]!, first[i]!];
    }
    const end = Date.now() + DURATION_MS;
    try {
      for (let f = 0; (f < first.length || Date.now() < end) && !run.stopped; f++) {
        await pause(300 + rnd.intBelow(500));
        await run.fault(first[f] ?? FAULTS[rnd.intBelow(FAULTS.length)]!, rnd, recorderNext);
      }
    } finally {
      run.endLoad();
      await Promise.all(load);
    }
    await run.cluster.waitReady();
    const last = await linearizableRevision(run.clients[0]!);
    await until(() => watchers.reached(last), "the watchers to catch up", 30_000).catch(() => {});
    await watchers.stop();
    await checkSeed(run, seed, last, termBefore);
  } finally {
    await watchers.stop();
  }
}

/** The checks of one seed's run, once the load has stopped, every member serves and the watchers stopped. */
async function checkSeed(run: Run, seed: number, last: bigint, termBefore: bigint): Promise<void> {
  const recorded = run.sessions.filter((s) => s.watcher === RECORDER);
  const changes = recordedChanges(recorded);
  const asked = run.compactions.filter((c) => c.outcome === "ok" || c.outcome === "unknown");
  const problems = [
    ...checkChanges(changes, run.puts),
    ...checkCompactions(run.compactions),
    ...checkReads(run.reads, changes, run.compactions, run.puts),
    ...checkWatches(run.sessions, changes, { catchUpTo: last, watchers: WATCHERS, compactions: asked }),
    ...run.sessions
      .filter(
        (s) =>
          s.end.startsWith("stalled") || (s.end.startsWith("cancelled") && s.compactRevision === undefined),
      )
      .map((s) => `watcher ${s.watcher}'s session on ${s.member} from revision ${s.startRevision}: ${s.end}`),
    ...(await checkMembers(run, changes, last)),
  ];
  const count = <T>(list: readonly T[], f: (x: T) => boolean) => list.filter(f).length;
  const cancelled = count(run.sessions, (s) => s.compactRevision !== undefined);
  const summary =
    `${run.kind} seed ${seed}: ${run.puts.length} puts (${count(run.puts, (p) => p.answer !== undefined)} acknowledged), ` +
    `${changes.length} changes, compactions ${JSON.stringify(tally(run.compactions.map((c) => c.outcome)))}, ` +
    `reads ${JSON.stringify(tally(run.reads.map((r) => (typeof r.outcome === "string" ? r.outcome : "answered"))))}, ` +
    `${run.sessions.length} watch sessions (${cancelled} cancelled as compacted), ` +
    `${run.snapshotsAfterBehind} snapshots after being left behind, faults: ${run.faults.join(", ")}`;
  console.log(summary);
  if (problems.length > 0) {
    mkdirSync(REPORT_DIR, { recursive: true });
    const file = join(REPORT_DIR, `${run.kind}-seed-${seed}.json`);
    const logs = Object.fromEntries(run.cluster.members.map((m) => [m.name, m.log.slice(-8000)]));
    const kept = {
      summary,
      problems,
      puts: run.puts,
      compactions: run.compactions,
      reads: run.reads,
      sessions: run.sessions,
      logs,
    };
    writeFileSync(file, JSON.stringify(kept, bigints, 1));
    throw new Error(`${summary}\n(the run is kept in ${file})\n${problems.join("\n")}`);
  }
  // Not vacuous: compactions were made and refused, reads answered and refused, watches
  // cancelled as compacted and resumed, leadership changed.
  expect(count(run.compactions, (c) => c.outcome === "ok")).toBeGreaterThan(5);
  expect(count(run.compactions, (c) => c.outcome === "compacted")).toBeGreaterThan(0);
  expect(count(run.reads, (r) => typeof r.outcome !== "string")).toBeGreaterThan(20);
  expect(count(run.reads, (r) => r.outcome === "compacted")).toBeGreaterThan(5);
  // Some reads had to be refused: a compaction above them acknowledged before they were sent.
  expect(count(run.reads, (r) => refusingCompaction(r, run.compactions) !== undefined)).toBeGreaterThan(0);
  expect(cancelled).toBeGreaterThan(0);
  if (run.kind === "chainfire") expect(run.snapshotsAfterBehind).toBeGreaterThan(0);
  expect(
    (await call<etcd.StatusResponse>(run.clients[0]!.maintenance, "status", {})).raftTerm,
  ).toBeGreaterThan(termBefore);
}

function tally(items: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of items) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describe.each(KINDS)("compaction under faults: %s", (kind) => {
  let run: Run | undefined;
  let dir: string | undefined;
  const cleanUp = () => {
    run?.stop();
    run?.cluster.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    run = undefined;
    dir = undefined;
  };
  afterAll(cleanUp);

  for (const seed of SEEDS) {
    it(
      `seed ${seed}`,
      async () => {
        cleanUp(); // a failed seed's cluster
        dir = mkdtempSync(join(tmpdir(), `compact-${kind}-${seed}-`));
        // Raft snapshots often, and few entries kept after one, so a member left behind needs one.
        run = new Run(kind, await Cluster.start(faultClusterOptions(kind, dir, true)));
        await run.readIds();
        await runSeed(run, seed);
        cleanUp();
      },
      DURATION_MS + 300_000,
    );
  }
});
