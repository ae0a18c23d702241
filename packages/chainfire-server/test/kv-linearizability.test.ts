// Linearizability under faults: client workers send puts, linearizable gets, compare-and-swap txns
// and deletes on three keys to any member of a 3-member cluster, while a nemesis kills members with
// SIGKILL and restarts them, freezes one (often the leader) with SIGSTOP for longer than an election
// timeout and lets it go on, and moves the leadership. Afterwards every member must list the same
// changes (a watch from revision 1), and the history must be linearizable against them
// (support/linearizability.ts): no acknowledged write lost or applied twice, no stale or invented
// read, no compare-and-swap decided on an old value, no answer out of real-time order.
//
// LIN_SEEDS (e.g. "1-20") and LIN_DURATION_MS (per seed) widen the search; a seed fixes the workers'
// operations and the nemesis's faults (their timing follows the machine). LIN_KINDS=etcd,chainfire
// also runs it against a 3-member etcd 3.4 (the check's own control: etcd passes it).
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChainfireClients, createClients, etcd } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { afterAll, describe, expect, it } from "vitest";
import { Cluster, type ClusterKind, type ClusterMember } from "../bench/cluster.js";
import { deleteRangeRequest, putRequest, rangeRequest, watchCreateRequest } from "../src/mvcc/messages.js";
import { call, until } from "./support/daemon-cluster.js";
import { type Answer, type Change, check, type KeyState, type Op } from "./support/linearizability.js";
import { countFromEnv, seedsFromEnv } from "./support/random-diff.js";

const SEEDS = seedsFromEnv("LIN_SEEDS", "1-2");
const DURATION_MS = countFromEnv("LIN_DURATION_MS", 12_000);
const KINDS = (process.env.LIN_KINDS ?? "chainfire").split(",").map((k) => {
  if (k !== "chainfire" && k !== "etcd") throw new Error(`LIN_KINDS: "${k}" is not chainfire or etcd`);
  return k as ClusterKind;
});
const KEYS = ["lin/a", "lin/b", "lin/c"];
const WORKERS = 6;
/** A request's deadline: one sent to a frozen member fails at it, and counts as "may have happened". */
const OP_DEADLINE_MS = 2000;
const enc = (s: string) => Buffer.from(s);

/** A cluster under test, with clients that reconnect quickly to a restarted member. */
class Subject {
  readonly clients: ChainfireClients[];
  readonly ids: bigint[] = [];
  /** Members frozen by SIGSTOP right now. */
  readonly frozen = new Set<ClusterMember>();
  readonly faults = { kill: 0, freeze: 0, moveLeader: 0, probesAnswered: 0 };
  private probeValues = 0;

  private constructor(
    readonly kind: ClusterKind,
    readonly cluster: Cluster,
    readonly dir: string,
  ) {
    this.clients = cluster.members.map((m) =>
      createClients(m.endpoint, undefined, {
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 300,
      }),
    );
  }

  static async start(kind: ClusterKind, seed: number): Promise<Subject> {
    const dir = mkdtempSync(join(tmpdir(), `lin-${kind}-${seed}-`));
    // Raft snapshots often, so a restarted member sometimes catches up from one.
    const extraArgs = ["--snapshot-count", "100"];
    if (kind === "chainfire") extraArgs.push("--experimental-snapshot-catchup-entries", "20");
    try {
      const cluster = await Cluster.start({
        kind,
        dir,
        size: 3,
        heartbeatMs: 50,
        electionMs: 500,
        extraArgs,
      });
      const s = new Subject(kind, cluster, dir);
      for (const c of s.clients) s.ids.push((await status(c)).header!.memberId);
      return s;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  stop(): void {
    for (const m of this.frozen) m.process?.kill("SIGCONT");
    for (const c of this.clients) c.close();
    this.cluster.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The leader's index as a running member that is not frozen reports it (undefined: none yet). */
  async leader(): Promise<number | undefined> {
    for (const [i, m] of this.cluster.members.entries()) {
      if (m.process === null || this.frozen.has(m)) continue;
      const st = await status(this.clients[i]!).catch(() => undefined);
      const at = st === undefined || st.leader === 0n ? -1 : this.ids.indexOf(st.leader);
      if (at >= 0) return at;
    }
    return undefined;
  }

  /** Polls until every member answers a linearizable read: all running, with a leader they reach. */
  async settled(what: string): Promise<void> {
    for (const [i, m] of this.cluster.members.entries()) {
      await until(
        async () => m.process !== null && (await linearizableRevision(this.clients[i]!)) > 0n,
        () => `${this.kind} ${m.name} to serve a linearizable read ${what}\n${m.log.slice(-2000)}`,
        90_000,
      );
    }
  }

  /**
   * Reads that a frozen member must not answer from its own state once it goes on: a put is
   * answered by the others (their new leader, when the frozen one led), then gets of its key are
   * sent to the frozen member. They begin after the put returned, so each must see it. Resolves
   * with the gets under way (undefined for one that fails), once they are sent.
   */
  private async probe(
    frozen: number,
    rnd: SeededRandom,
    history: History,
  ): Promise<Promise<Answer | undefined>[]> {
    const others = this.cluster.members.map((_, i) => i).filter((i) => i !== frozen);
    const key = KEYS[rnd.intBelow(KEYS.length)]!;
    await until(
      async () => {
        const via = others[this.probeValues % others.length]!;
        const by = `nemesis on ${this.cluster.members[via]!.name}`;
        return (
          (await history.run(this.clients[via]!, by, "put", key, `nemesis.${this.probeValues++}`)) !==
          undefined
        );
      },
      "a put through the members that are not frozen",
      60_000,
    );
    const to = this.clients[frozen]!;
    const by = `probe on frozen ${this.cluster.members[frozen]!.name}`;
    return [0, 1, 2].map(() => history.run(to, by, "get", key, "", 0n, 20_000));
  }

  /** One fault, undone before it returns (at most one member is ever down or frozen). */
  async fault(kind: "kill" | "freeze" | "moveLeader", rnd: SeededRandom, history: History): Promise<void> {
    const members = this.cluster.members;
    const leader = await this.leader();
    const pickLeader = leader !== undefined && rnd.chance(kind === "kill" ? 0.6 : 0.7);
    const target = pickLeader ? leader : rnd.intBelow(members.length);
    const m = members[target]!;
    if (kind === "kill") {
      const child = m.process!;
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
      m.process = null;
      this.faults.kill++;
      await pause(200 + rnd.intBelow(1300));
      this.cluster.startMember(m);
    } else if (kind === "freeze") {
      // Longer than the election timeout: the others elect a leader while this one is frozen, and
      // requests queued to it meanwhile are served once it goes on.
      m.process!.kill("SIGSTOP");
      this.frozen.add(m);
      this.faults.freeze++;
      await pause(600 + rnd.intBelow(1400));
      const probes = await this.probe(target, rnd, history);
      m.process!.kill("SIGCONT");
      this.faults.probesAnswered += (await Promise.all(probes)).filter((a) => a !== undefined).length;
      this.frozen.delete(m);
    } else if (leader !== undefined) {
      const followers = members.map((_, i) => i).filter((i) => i !== leader);
      const to = followers[rnd.intBelow(followers.length)]!;
      await call(this.clients[leader]!.maintenance, "moveLeader", { targetID: this.ids[to]! }, 5000).then(
        () => this.faults.moveLeader++,
        () => {},
      );
    }
    await this.settled(`after a ${kind}`);
  }
}

/** The fault's own length (how long a member stays down or frozen): a duration, not a wait for state. */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const status = (c: ChainfireClients) => call<etcd.StatusResponse>(c.maintenance, "status", {}, 2000);

async function linearizableRevision(c: ChainfireClients): Promise<bigint> {
  const res = await call<etcd.RangeResponse>(
    c.kv,
    "range",
    rangeRequest({ key: enc("lin/"), rangeEnd: enc("lin0"), countOnly: true }),
    5000,
  );
  return res.header!.revision;
}

const keyState = (kvs: readonly { value: Buffer; modRevision: bigint }[]): KeyState | null =>
  kvs[0] === undefined ? null : { value: kvs[0].value.toString(), modRevision: kvs[0].modRevision };

/** The operations run so far, as the check wants them. */
class History {
  readonly ops: Op[] = [];

  /** Runs one operation on a member and records it (a failed get is left out: it read nothing). */
  async run(
    c: ChainfireClients,
    by: string,
    kind: Op["kind"],
    key: string,
    value: string,
    expectModRevision = 0n,
    deadlineMs = OP_DEADLINE_MS,
  ): Promise<Answer | undefined> {
    const invokedAt = performance.now();
    let answer: Answer | undefined;
    try {
      answer = await perform(c, kind, key, value, expectModRevision, deadlineMs);
    } catch {
      // Failed: a write may or may not have taken effect; a read took none.
    }
    if (kind === "get" && answer === undefined) return undefined;
    this.ops.push({
      id: this.ops.length,
      by,
      kind,
      key,
      invokedAt,
      ...(kind === "put" || kind === "cas" ? { value } : {}),
      ...(kind === "cas" ? { expectModRevision } : {}),
      ...(answer === undefined ? {} : { answer }),
    });
    return answer;
  }

  answered(kind: Op["kind"]): number {
    return this.ops.filter((o) => o.kind === kind && o.answer !== undefined).length;
  }
}

/** Sends one operation; its answer as the check reads it. */
async function perform(
  c: ChainfireClients,
  kind: Op["kind"],
  key: string,
  value: string,
  expectModRevision: bigint,
  deadlineMs: number,
): Promise<Answer> {
  if (kind === "get") {
    const res = await call<etcd.RangeResponse>(c.kv, "range", rangeRequest({ key: enc(key) }), deadlineMs);
    return { returnedAt: performance.now(), revision: res.header!.revision, read: keyState(res.kvs) };
  }
  if (kind === "put") {
    const res = await call<etcd.PutResponse>(
      c.kv,
      "put",
      putRequest({ key: enc(key), value: enc(value) }),
      deadlineMs,
    );
    return { returnedAt: performance.now(), revision: res.header!.revision };
  }
  if (kind === "cas") {
    const res = await call<etcd.TxnResponse>(
      c.kv,
      "txn",
      {
        compare: [
          {
            result: etcd.Compare_CompareResult.EQUAL,
            target: etcd.Compare_CompareTarget.MOD,
            key: enc(key),
            modRevision: expectModRevision,
            rangeEnd: Buffer.alloc(0),
          },
        ],
        success: [{ requestPut: putRequest({ key: enc(key), value: enc(value) }) }],
        failure: [{ requestRange: rangeRequest({ key: enc(key) }) }],
      },
      deadlineMs,
    );
    return {
      returnedAt: performance.now(),
      revision: res.header!.revision,
      succeeded: res.succeeded,
      ...(res.succeeded ? {} : { read: keyState(res.responses[0]!.responseRange!.kvs) }),
    };
  }
  const res = await call<etcd.DeleteRangeResponse>(
    c.kv,
    "deleteRange",
    deleteRangeRequest({ key: enc(key) }),
    deadlineMs,
  );
  return { returnedAt: performance.now(), revision: res.header!.revision, deleted: Number(res.deleted) };
}

/** One closed-loop client: draws an operation and a member, runs it, records what it saw. */
async function runWorker(s: Subject, history: History, seed: number, w: number, end: number) {
  const rnd = new SeededRandom(BigInt(seed) * 1000n + BigInt(w));
  /** The mod revision this worker last saw on each key: what its compare-and-swaps expect. */
  const seen = new Map<string, bigint>();
  let n = 0;
  while (Date.now() < end) {
    const i = rnd.intBelow(s.cluster.members.length);
    const p = rnd.intBelow(100);
    const key = KEYS[rnd.intBelow(KEYS.length)]!;
    if (s.cluster.members[i]!.process === null) continue; // killed: no connection to try
    const kind: Op["kind"] = p < 40 ? "get" : p < 70 ? "put" : p < 90 ? "cas" : "del";
    const expect = seen.get(key) ?? 0n;
    const by = `w${w} on ${s.cluster.members[i]!.name}`;
    const answer = await history.run(s.clients[i]!, by, kind, key, `${seed}.${w}.${n++}`, expect);
    if (answer === undefined) continue;
    if (kind === "get") seen.set(key, answer.read?.modRevision ?? 0n);
    if (kind === "cas") seen.set(key, answer.succeeded ? answer.revision : (answer.read?.modRevision ?? 0n));
  }
}

/** Every change to the keys, in order, as one member's watch from revision 1 lists them. */
async function changeList(c: ChainfireClients, lastRevision: bigint): Promise<Change[]> {
  const changes: Change[] = [];
  const stream = c.watch.watch();
  stream.on("error", () => {});
  stream.on("data", (res: etcd.WatchResponse) => {
    for (const ev of res.events) {
      changes.push({
        revision: ev.kv!.modRevision,
        key: ev.kv!.key.toString(),
        type: ev.type === 0 ? "put" : "delete",
        value: ev.kv!.value.toString(),
      });
    }
  });
  stream.write({
    createRequest: watchCreateRequest({ key: enc("lin/"), rangeEnd: enc("lin0"), startRevision: 1n }),
  });
  try {
    await until(
      () => (changes.at(-1)?.revision ?? 0n) >= lastRevision,
      () => `the watch from revision 1 to reach revision ${lastRevision} (at ${changes.at(-1)?.revision})`,
      30_000,
    );
  } finally {
    stream.cancel();
  }
  return changes;
}

describe.each(KINDS)("linearizability under faults: %s", (kind) => {
  let subject: Subject | undefined;
  afterAll(() => subject?.stop());

  for (const seed of SEEDS) {
    it(
      `seed ${seed}`,
      async () => {
        subject = await Subject.start(kind, seed);
        const s = subject;
        const termBefore = (await status(s.clients[0]!)).raftTerm;
        const history = new History();
        const end = Date.now() + DURATION_MS;
        const workers = Array.from({ length: WORKERS }, (_, w) => runWorker(s, history, seed, w, end));
        // The nemesis: the first three faults are one of each kind, in a seeded order.
        const rnd = new SeededRandom(BigInt(seed) ^ 0xfa17n);
        const kinds = ["kill", "freeze", "moveLeader"] as const;
        const first: (typeof kinds)[number][] = [...kinds];
        for (let i = first.length - 1; i > 0; i--) {
          const j = rnd.intBelow(i + 1);
          [first[i], first[j]] = [first[j]!, first[i]!];
        }
        for (let f = 0; Date.now() < end - 1000; f++) {
          await pause(200 + rnd.intBelow(600));
          await s.fault(first[f] ?? kinds[rnd.intBelow(3)]!, rnd, history);
        }
        await Promise.all(workers);
        await s.settled("after the run");

        const lastRevision = await linearizableRevision(s.clients[0]!);
        const lists = await Promise.all(s.clients.map((c) => changeList(c, lastRevision)));
        for (const [i, list] of lists.entries())
          expect(list, `${s.cluster.members[i]!.name}'s changes against m1's`).toEqual(lists[0]);
        const ops = history.ops;
        const problems = check(ops, lists[0]!);
        const answered = (k: Op["kind"]) => history.answered(k);
        const summary =
          `${kind} seed ${seed}: ${ops.length} operations (${answered("put")} puts, ${answered("get")} gets, ` +
          `${answered("cas")} compare-and-swaps, ${answered("del")} deletes answered; ` +
          `${ops.filter((o) => o.answer === undefined).length} writes failed), ${lists[0]!.length} changes, ` +
          `faults ${JSON.stringify(s.faults)}, term ${termBefore} → ${(await status(s.clients[0]!)).raftTerm}`;
        console.log(summary);
        expect(problems, summary).toEqual([]);
        // Not vacuous: the faults happened, leadership changed, and every kind of operation was answered.
        expect(s.faults.kill).toBeGreaterThan(0);
        expect(s.faults.freeze).toBeGreaterThan(0);
        expect(s.faults.probesAnswered).toBeGreaterThan(0);
        expect((await status(s.clients[0]!)).raftTerm).toBeGreaterThan(termBefore);
        for (const k of ["put", "get", "cas", "del"] as const) expect(answered(k), k).toBeGreaterThan(10);
        expect(ops.some((o) => o.kind === "cas" && o.answer?.succeeded)).toBe(true);
        subject = undefined;
        s.stop();
      },
      DURATION_MS + 240_000,
    );
  }
});
