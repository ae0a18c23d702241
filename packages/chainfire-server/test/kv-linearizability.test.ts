// Linearizability under faults: client workers send puts, linearizable gets, compare-and-swap txns
// and deletes on three keys to any member of a 3-member cluster, while a nemesis kills members with
// SIGKILL and restarts them, freezes one (often the leader) with SIGSTOP for longer than an election
// timeout, cuts one off from the others (each member in its own network namespace; clients still
// reach it), moves the leadership, and replaces a member (etcd's MemberRemove, then MemberAdd and a
// start on an empty data directory, as a voter or as a learner then promoted). While a member is
// frozen or cut off, puts go through the others and gets of their keys go to it: a leader that has
// not yet noticed it lost the others must not answer them from its own state. Afterwards every member must list the same changes (a
// watch from revision 1), and the history must be linearizable against them
// (support/linearizability.ts): no acknowledged write lost or applied twice, no stale or invented
// read, no compare-and-swap decided on an old value, no answer out of real-time order. Meanwhile
// watchers follow the keys with prev_kv, resuming on any member whenever a stream ends, and must
// have seen exactly those changes in order, each with the right key-value and prev_kv
// (support/watch-check.ts).
//
// LIN_SEEDS (e.g. "1-20") and LIN_DURATION_MS (how long the workers run at least) widen the search.
// A seed fixes what each worker draws and the order of the first round of faults (one of each kind);
// targets, timings and what follows depend on the machine, so a failure is kept for reading in
// work/test-report/linearizability/ (operations, changes, faults with times, member logs).
// LIN_KINDS=etcd,chainfire also runs it against a 3-member etcd 3.4 (the check's own control: etcd
// passes it). Partitions need root and iproute2 (CI has both); without them the other faults run,
// with a note, and LIN_NETNS=0 leaves them out.
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChainfireClients, type chainfirev1, etcd } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { afterAll, describe, expect, it } from "vitest";
import { NetnsNetwork, netnsPreflight } from "@photoncloud/test-cluster/netns";
import { Cluster, type ClusterKind, type ClusterMember, type Placement } from "../bench/cluster.js";
import { deleteRangeRequest, putRequest, rangeRequest, watchCreateRequest } from "../src/mvcc/messages.js";
import { call, GiveUp, until } from "./support/daemon-cluster.js";
import {
  type Answer,
  type Change,
  check,
  checkSerializableReads,
  type KeyState,
  type Op,
  type SerializableRead,
} from "./support/linearizability.js";
import { checkWatches, type WatchSession } from "./support/watch-check.js";
import { faultClusterOptions, faultTestClients } from "./support/fault-cluster.js";
import { snapshotsReceived } from "./support/member-metrics.js";
import { Watchers } from "./support/watchers.js";
import { countFromEnv, kindsFromEnv, seedsFromEnv } from "./support/random-diff.js";

const SEEDS = seedsFromEnv("LIN_SEEDS", "1-2");
const DURATION_MS = countFromEnv("LIN_DURATION_MS", 12_000);
const KINDS = kindsFromEnv("LIN_KINDS");
/**
 * Partitions need every member in a network namespace of its own: root and iproute2, as in CI.
 * LIN_NETNS=0 leaves them out; elsewhere they are left out with a note.
 */
const NETNS = process.env.LIN_NETNS !== "0" && netnsAvailable();
const KEYS = ["lin/a", "lin/b", "lin/c"];
const REPORT_DIR = join(import.meta.dirname, "..", "..", "..", "work", "test-report");
const WORKERS = 6;
/** Clients that watch the keys throughout: one on each member, and one moving from member to member. */
const WATCHERS = 4;
/** Pads the values the nemesis writes while a member is cut off (see the partition fault). */
const PADDING = "p".repeat(16 << 10);
/** A request's deadline: one sent to a frozen member fails at it, and counts as "may have happened". */
const OP_DEADLINE_MS = 2000;
const enc = (s: string) => Buffer.from(s);

function netnsAvailable(): boolean {
  try {
    netnsPreflight();
    return true;
  } catch (err) {
    console.log(`linearizability test without partitions: ${(err as Error).message}`);
    return false;
  }
}

type Fault =
  | "kill"
  | "freeze"
  | "partition"
  | "frozenPartition"
  | "moveLeader"
  | "replace"
  | "replaceAsLearner";

/**
 * A cluster under test, with clients that reconnect quickly to a restarted member. With a network
 * (root and iproute2), each member runs in its own network namespace, so that one can be cut off
 * from the others while clients still reach it.
 */
class Subject {
  readonly clients: ChainfireClients[];
  readonly ids: bigint[] = [];
  /** Members frozen by SIGSTOP right now. */
  readonly frozen = new Set<ClusterMember>();
  readonly faults = {
    kill: 0,
    freeze: 0,
    partition: 0,
    frozenPartition: 0,
    moveLeader: 0,
    replace: 0,
    /** Replacements through chainfire.v1.Cluster (the operator contract). */
    operatorReplace: 0,
    /** Learners promoted by re-adding their ID with is_learner false (chainfire.v1.Cluster). */
    operatorPromote: 0,
    promote: 0,
    probesSent: 0,
    staleLeaderSeen: 0,
    probesAnswered: 0,
    /** Partitions the cut member came back from through a snapshot (under its pinned watcher). */
    snapshotsAfterCut: 0,
  };
  private probeValues = 0;
  /** What the nemesis did, on the clock the operations' times use. */
  readonly events: { at: number; what: string }[] = [];
  /** Set by stop(): a test past its timeout still running stops faulting and restarting. */
  stopped = false;

  private constructor(
    readonly kind: ClusterKind,
    readonly cluster: Cluster,
    readonly dir: string,
    readonly network: NetnsNetwork | undefined,
    readonly seed: number,
  ) {
    this.clients = faultTestClients(cluster.members);
  }

  static async start(kind: ClusterKind, seed: number): Promise<Subject> {
    const dir = mkdtempSync(join(tmpdir(), `lin-${kind}-${seed}-`));
    // Raft snapshots often, so a restarted member sometimes catches up from one.
    const network = NETNS ? NetnsNetwork.create() : undefined;
    const place = (name: string): Placement => {
      const at = network!.ensureMember(name);
      return { host: at.address, wrap: (command, args) => network!.wrap(at.namespace, command, args) };
    };
    try {
      const cluster = await Cluster.start({
        ...faultClusterOptions(kind, dir, true),
        ...(network === undefined ? {} : { place }),
      });
      const s = new Subject(kind, cluster, dir, network, seed);
      try {
        for (const c of s.clients) s.ids.push((await status(c)).header!.memberId);
      } catch (err) {
        s.stop();
        throw err;
      }
      return s;
    } catch (err) {
      network?.destroy();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  get faultKinds(): Fault[] {
    const cuts: Fault[] = ["partition", "frozenPartition"];
    const always: Fault[] = ["kill", "freeze", "moveLeader", "replace", "replaceAsLearner"];
    return [...always, ...(this.network === undefined ? [] : cuts)];
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const m of this.frozen) m.process?.kill("SIGCONT");
    for (const c of this.clients) c.close();
    this.cluster.stop();
    this.network?.destroy();
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
    const deadline = Date.now() + 60_000;
    for (const [i, m] of this.cluster.members.entries()) {
      await until(
        async () => m.process !== null && (await linearizableRevision(this.clients[i]!)) > 0n,
        () => `${this.kind} ${m.name} to serve a linearizable read ${what}\n${m.log.slice(-2000)}`,
        Math.max(1000, deadline - Date.now()),
      );
    }
  }

  note(what: string): void {
    this.events.push({ at: performance.now(), what });
  }

  /**
   * Reads that a member cut off from the others (frozen, or behind a partition) must not answer from
   * its own state: until `endsAt`, puts go through the other members (their new leader, when the cut
   * one led), and after each answered one, gets of its key go to the cut member. They begin after
   * the put returned, so each must see it. A partitioned leader that has not yet noticed it lost
   * the others is the case a leader's read confirmation exists for. The cut lasts until at least
   * one put was answered. Returns the gets under way (undefined for one that fails).
   */
  private async probe(
    cut: number,
    endsAt: number,
    rnd: SeededRandom,
    history: History,
  ): Promise<Promise<Answer | undefined>[]> {
    const others = this.cluster.members.map((_, i) => i).filter((i) => i !== cut);
    const gets: Promise<Answer | undefined>[] = [];
    const by = `probe on cut-off ${this.cluster.members[cut]!.name}`;
    // At least one put, however long the others take to elect a leader; up to ten until `endsAt`.
    const giveUpAt = Date.now() + 60_000;
    for (let puts = 0; puts === 0 || (Date.now() < endsAt && puts < 10); ) {
      if (Date.now() > giveUpAt) throw new Error("no put through the members not cut off in 60 s");
      const key = KEYS[rnd.intBelow(KEYS.length)]!;
      const via = others[this.probeValues % others.length]!;
      const value = `nemesis.${this.probeValues++}`;
      const put = await history.run(
        this.clients[via]!,
        `nemesis on ${this.cluster.members[via]!.name}`,
        "put",
        key,
        value,
      );
      if (put === undefined) continue;
      puts++;
      for (let g = 0; g < 2; g++) gets.push(history.run(this.clients[cut]!, by, "get", key, "", 0n, 20_000));
    }
    return gets;
  }

  /**
   * Removes a member (the leader, often) and adds it back on an empty data directory, as an
   * operator replaces a machine: as a voter at once, or as a learner promoted once it has caught up.
   * The removed member must stop by itself. On chainfire, the learner replacements of odd seeds and
   * the voter replacements of even ones go through chainfire.v1.Cluster, the operator contract (see
   * `membershipApi`), so that the two seeds of the test command draw both; the others, through
   * etcd's Cluster API. etcd refuses a removal until the other members have been connected for 5 s
   * (after a restart), and a leader change can lose an answer: the requests are repeated until the
   * member list shows them done.
   */
  private async replace(target: number, rnd: SeededRandom, asLearner: boolean): Promise<void> {
    const m = this.cluster.members[target]!;
    const others = this.cluster.members.map((_, i) => i).filter((i) => i !== target);
    const operator = this.kind === "chainfire" && asLearner === (this.seed % 2 === 1);
    const api = membershipApi(this.clients[others[rnd.intBelow(others.length)]!]!, m, operator);
    const id = this.ids[target]!;
    await until(
      async () => {
        await api.remove(id).catch(() => {});
        return !(await api.list()).some((x) => x.id === id);
      },
      `${m.name}'s removal`,
      60_000,
    );
    this.faults.replace++;
    if (operator) this.faults.operatorReplace++;
    const child = m.process!;
    await until(
      () => child.exitCode !== null || child.signalCode !== null,
      () => `${m.name} to stop once removed\n${m.log.slice(-2000)}`,
      30_000,
    );
    m.process = null;
    rmSync(m.dataDir, { recursive: true, force: true });
    const added = await until(
      async () => {
        await api.add(id, asLearner).catch(() => {});
        return (await api.list()).find((x) => x.peerUrls.includes(api.peerUrl));
      },
      `${m.name}'s addition`,
      60_000,
    );
    // The operator contract: a removed ID can be added again.
    if (operator && added.id !== id)
      throw new Error(
        `${m.name} re-added as ${added.id.toString(16)}, not as its removed ID ${id.toString(16)}`,
      );
    this.ids[target] = added.id;
    if (this.stopped) return;
    this.cluster.startMember(m, { initialCluster: this.cluster.initialCluster });
    if (!asLearner) return;
    // Promotion is refused until the learner has caught up (etcd's "not in sync with leader"): the
    // request is repeated until the member list shows a voter.
    await until(
      async () => {
        await api.promote(added.id).catch(() => {});
        return (await api.list()).some((x) => x.id === added.id && !x.isLearner);
      },
      () => `${m.name}'s promotion\n${m.log.slice(-2000)}`,
      60_000,
    );
    this.faults.promote++;
    if (operator) this.faults.operatorPromote++;
  }

  /** One fault, undone before it returns (at most one member is ever down, frozen or cut off). */
  async fault(kind: Fault, rnd: SeededRandom, history: History): Promise<void> {
    const members = this.cluster.members;
    const leader = await this.leader();
    const pickLeader =
      leader !== undefined && (kind === "frozenPartition" || rnd.chance(kind === "kill" ? 0.6 : 0.7));
    const target = pickLeader ? leader : rnd.intBelow(members.length);
    const m = members[target]!;
    this.note(`${kind} ${m.name}${pickLeader ? " (the leader)" : ""}`);
    let snapshotsBefore: number | undefined;
    if (kind === "kill") {
      const child = m.process!;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }
      m.process = null;
      this.faults.kill++;
      await pause(200 + rnd.intBelow(1300));
      if (this.stopped) return;
      this.note(`restart ${m.name}`);
      this.cluster.startMember(m);
    } else if (kind === "freeze" || kind === "partition" || kind === "frozenPartition") {
      // Longer than the election timeout: the others elect a leader meanwhile. A frozen member
      // serves the requests queued to it when it goes on; a partitioned one is reachable all along.
      // A frozen partition cuts a frozen leader off before the others elect a new one, so nothing
      // of the new term reaches it: it goes on believing it leads, cut off, with the gets queued.
      // A partition also lasts until the others have made 600 changes, each at least 16 KB: more
      // than a chainfire leader keeps in flight to a follower (4 MB, which TCP delivers after the
      // cut), and more entries than it keeps in its log (a snapshot every 100–150 entries, up to
      // twice that while an image for a follower is unsent, 20 kept behind it). The member comes
      // back through a snapshot, under its watcher.
      const endsAt = Date.now() + 600 + rnd.intBelow(1400);
      const otherAt = (target + 1) % members.length;
      const other = this.clients[otherAt]!;
      const revisionAtCut = kind === "partition" ? await linearizableRevision(other) : 0n;
      if (kind === "partition") snapshotsBefore = await snapshotsReceived(m);
      const freeze = kind !== "partition";
      if (freeze) {
        m.process!.kill("SIGSTOP");
        this.frozen.add(m);
      }
      if (kind !== "freeze")
        this.network!.isolate(
          m.name,
          members.map((x) => x.name),
        );
      this.faults[kind]++;
      const probes = await this.probe(target, endsAt, rnd, history);
      if (Date.now() < endsAt) await pause(endsAt - Date.now());
      if (kind === "partition") {
        // The workers mostly wait on the cut member meanwhile: the nemesis writes 16-KB values.
        const via = `nemesis on ${members[otherAt]!.name}`;
        const giveUpAt = Date.now() + 60_000;
        while (!this.stopped && (await linearizableRevision(other).catch(() => 0n)) < revisionAtCut + 600n) {
          for (let n = 0; n < 50 && !this.stopped; n++) {
            if (Date.now() > giveUpAt) throw new Error("no 600 changes in 60 s while a member was cut off");
            const key = KEYS[rnd.intBelow(KEYS.length)]!;
            await history.run(other, via, "put", key, `nemesis.${this.probeValues++}.${PADDING}`);
          }
        }
      }
      if (freeze) {
        const rest = members.map((_, i) => i).filter((i) => i !== target);
        const term = kind === "frozenPartition" ? await this.termOf(rest) : 0n;
        m.process!.kill("SIGCONT");
        this.frozen.delete(m);
        this.note(`continue ${m.name}`);
        // The case this fault is for: the old leader goes on still believing it leads.
        if (kind === "frozenPartition") {
          const st = await status(this.clients[target]!).catch(() => undefined);
          if (st !== undefined && st.leader === this.ids[target] && st.raftTerm < term)
            this.faults.staleLeaderSeen++;
        }
      }
      if (kind === "frozenPartition") await pause(300 + rnd.intBelow(700));
      if (kind !== "freeze") {
        this.network!.healAll();
        this.note(`heal ${m.name}`);
      }
      this.faults.probesSent += probes.length;
      this.faults.probesAnswered += (await Promise.all(probes)).filter((a) => a !== undefined).length;
    } else if (kind === "replace" || kind === "replaceAsLearner") {
      await this.replace(target, rnd, kind === "replaceAsLearner");
    } else if (leader !== undefined) {
      const followers = members.map((_, i) => i).filter((i) => i !== leader);
      const to = followers[rnd.intBelow(followers.length)]!;
      await call(this.clients[leader]!.maintenance, "moveLeader", { targetID: this.ids[to]! }, 5000).then(
        () => this.faults.moveLeader++,
        () => {},
      );
    }
    if (this.stopped) return;
    await this.settled(`after a ${kind}`);
    this.note(`settled after ${kind} ${m.name}`);
    if (snapshotsBefore !== undefined && ((await snapshotsReceived(m)) ?? 0) > snapshotsBefore)
      this.faults.snapshotsAfterCut++;
  }

  /** The highest term the listed members report (0 when none answers). */
  private async termOf(members: readonly number[]): Promise<bigint> {
    let term = 0n;
    for (const i of members) {
      const st = await status(this.clients[i]!).catch(() => undefined);
      if (st !== undefined && st.raftTerm > term) term = st.raftTerm;
    }
    return term;
  }
}

/** A member as the membership APIs list it. */
interface Listed {
  readonly id: bigint;
  readonly peerUrls: readonly string[];
  readonly isLearner: boolean;
}

/**
 * Membership requests for replacing member `m`, sent to `via`: etcd's Cluster API (MemberAdd makes
 * a new ID, MemberPromote promotes), or chainfire.v1.Cluster, the operator contract (MemberAdd of
 * the removed ID adds it again; MemberAdd of an existing learner's ID with is_learner false
 * promotes it).
 */
function membershipApi(via: ChainfireClients, m: ClusterMember, operator: boolean) {
  const peerUrl = `http://${m.host}:${m.peerPort}`;
  if (!operator) {
    return {
      peerUrl,
      list: async (): Promise<Listed[]> =>
        (await call<etcd.MemberListResponse>(via.cluster, "memberList", {}, 5000)).members.map((x) => ({
          id: x.ID,
          peerUrls: x.peerURLs,
          isLearner: x.isLearner,
        })),
      remove: (id: bigint) => call(via.cluster, "memberRemove", { ID: id }, 10_000),
      add: (_id: bigint, isLearner: boolean) =>
        call(via.cluster, "memberAdd", { peerURLs: [peerUrl], isLearner }, 10_000),
      promote: (id: bigint) => call(via.cluster, "memberPromote", { ID: id }, 10_000),
    };
  }
  const add = (id: bigint, isLearner: boolean) =>
    call(
      via.operator,
      "memberAdd",
      { id, name: m.name, peerUrls: [peerUrl], clientUrls: [`http://${m.host}:${m.clientPort}`], isLearner },
      10_000,
    );
  return {
    peerUrl,
    list: async (): Promise<Listed[]> =>
      (await call<chainfirev1.MemberListResponse>(via.operator, "memberList", {}, 5000)).members,
    remove: (id: bigint) => call(via.operator, "memberRemove", { id }, 10_000),
    add,
    promote: (id: bigint) => add(id, false),
  };
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

/** The operations run so far, and the watchers' streams, as the checks want them. */
class History {
  readonly ops: Op[] = [];
  readonly serializableReads: SerializableRead[] = [];
  readonly sessions: WatchSession[] = [];

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

  /** A serializable get on a member, recorded when answered (support/linearizability.ts checks them). */
  async serializableGet(c: ChainfireClients, by: string, m: ClusterMember, key: string): Promise<void> {
    const pid = m.process?.pid;
    const invokedAt = performance.now();
    const req = rangeRequest({ key: enc(key), serializable: true });
    const res = await call<etcd.RangeResponse>(c.kv, "range", req, OP_DEADLINE_MS).catch(() => undefined);
    // Kept only when the process asked is the one still running (not one restarted meanwhile).
    if (res === undefined || pid === undefined || m.process?.pid !== pid) return;
    const returnedAt = performance.now();
    const read = keyState(res.kvs);
    this.serializableReads.push({
      by,
      member: m.name,
      pid,
      key,
      invokedAt,
      returnedAt,
      revision: res.header!.revision,
      read,
    });
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
async function runWorker(s: Subject, history: History, seed: number, w: number, running: () => boolean) {
  const rnd = new SeededRandom(BigInt(seed) * 1000n + BigInt(w));
  /** The mod revision this worker last saw on each key: what its compare-and-swaps expect. */
  const seen = new Map<string, bigint>();
  let n = 0;
  while (running() && !s.stopped) {
    const i = rnd.intBelow(s.cluster.members.length);
    const p = rnd.intBelow(100);
    const key = KEYS[rnd.intBelow(KEYS.length)]!;
    if (s.cluster.members[i]!.process === null) continue; // killed: no connection to try
    const by = `w${w} on ${s.cluster.members[i]!.name}`;
    if (p < 10) {
      await history.serializableGet(s.clients[i]!, by, s.cluster.members[i]!, key);
      continue;
    }
    const kind: Op["kind"] = p < 45 ? "get" : p < 72 ? "put" : p < 90 ? "cas" : "del";
    const expect = seen.get(key) ?? 0n;
    const answer = await history.run(s.clients[i]!, by, kind, key, `${seed}.${w}.${n++}`, expect);
    if (answer === undefined) continue;
    if (kind === "get") seen.set(key, answer.read?.modRevision ?? 0n);
    if (kind === "cas") seen.set(key, answer.succeeded ? answer.revision : (answer.read?.modRevision ?? 0n));
  }
}

const bigints = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

/** Writes a failed run where it can be read afterwards; returns the file. */
function keepFailure(s: Subject, seed: number, run: object): string {
  const dir = join(REPORT_DIR, "linearizability");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${s.kind}-seed-${seed}.json`);
  const logs = Object.fromEntries(s.cluster.members.map((m) => [m.name, m.log.slice(-8000)]));
  writeFileSync(file, JSON.stringify({ ...run, logs }, bigints, 1));
  return file;
}

/** Every change to the keys, in order, as one member's watch from revision 1 lists them. */
async function changeList(c: ChainfireClients, lastRevision: bigint): Promise<Change[]> {
  const changes: Change[] = [];
  let refused: string | undefined;
  const stream = c.watch.watch();
  stream.on("error", (err: Error) => {
    refused ??= err.message;
  });
  stream.on("data", (res: etcd.WatchResponse) => {
    if (res.canceled) refused ??= `cancelled: ${res.cancelReason} (compact revision ${res.compactRevision})`;
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
      () => {
        if (refused !== undefined) throw new GiveUp(`the watch from revision 1 failed: ${refused}`);
        return (changes.at(-1)?.revision ?? 0n) >= lastRevision;
      },
      () => `the watch from revision 1 to reach revision ${lastRevision} (at ${changes.at(-1)?.revision})`,
      30_000,
    );
  } finally {
    stream.cancel();
  }
  return changes;
}

/** One seed's run on a started cluster: load, watches and faults, then the checks. */
async function run(s: Subject, seed: number, history: History, termBefore: bigint): Promise<void> {
  // The workers run until the nemesis is done: at least DURATION_MS, and through the first
  // round of faults however long it takes. The watchers run until they have seen every change.
  const end = Date.now() + DURATION_MS;
  let nemesisDone = false;
  const workers = Array.from({ length: WORKERS }, (_, w) =>
    runWorker(s, history, seed, w, () => !nemesisDone),
  );
  const watchers = new Watchers(s, {
    count: WATCHERS,
    pinned: s.cluster.members.length,
    prefix: "lin/",
    seed,
    sessions: history.sessions,
  });
  try {
    // The nemesis: the first faults are one of each kind, in a seeded order.
    const rnd = new SeededRandom(BigInt(seed) ^ 0xfa17n);
    const kinds = s.faultKinds;
    const first = [...kinds];
    for (let i = first.length - 1; i > 0; i--) {
      const j = rnd.intBelow(i + 1);
      [first[i], first[j]] = [first[j]!, first[i]!];
    }
    try {
      for (let f = 0; (f < first.length || Date.now() < end - 1000) && !s.stopped; f++) {
        await pause(200 + rnd.intBelow(600));
        await s.fault(first[f] ?? kinds[rnd.intBelow(kinds.length)]!, rnd, history);
      }
    } finally {
      nemesisDone = true;
      await Promise.all(workers);
    }
    await s.settled("after the run");
    await checkRun(s, seed, history, termBefore, watchers);
  } finally {
    await watchers.stop();
  }
}

/** The checks of one seed's run, once the load has stopped and every member serves. */
async function checkRun(s: Subject, seed: number, history: History, termBefore: bigint, watchers: Watchers) {
  const lastRevision = await linearizableRevision(s.clients[0]!);
  const lists = await Promise.all(s.clients.map((c) => changeList(c, lastRevision)));
  const ops = history.ops;
  const problems: string[] = [];
  for (const [i, list] of lists.entries()) {
    const at = list.findIndex((c, j) => JSON.stringify(c, bigints) !== JSON.stringify(lists[0]![j], bigints));
    const differs =
      at >= 0 ? at : list.length !== lists[0]!.length ? Math.min(list.length, lists[0]!.length) : -1;
    if (differs >= 0)
      problems.push(
        `${s.cluster.members[i]!.name}'s change ${differs} is ${JSON.stringify(list[differs], bigints)}, ` +
          `m1's ${JSON.stringify(lists[0]![differs], bigints)}`,
      );
  }
  // Only the test writes, one key per operation, from the first revision after the empty store's.
  problems.push(...check(ops, lists[0]!, { everyRevisionFrom: 2n }));
  problems.push(...checkSerializableReads(history.serializableReads, lists[0]!));
  // Every watcher catches up with the last change (a stalled watch is named by the check).
  const lastChange = lists[0]!.at(-1)?.revision ?? 1n;
  await until(() => watchers.reached(lastChange), "the watchers to catch up", 30_000).catch(() => {});
  await watchers.stop();
  const sessions = history.sessions;
  problems.push(...checkWatches(sessions, lists[0]!, { catchUpTo: lastChange, watchers: WATCHERS }));
  // Nothing is compacted here: a member never has a reason to cancel a watch, or to hold it back.
  for (const x of sessions.filter((x) => x.end.startsWith("cancelled") || x.end.startsWith("stalled")))
    problems.push(`watcher ${x.watcher}'s session on ${x.member} from revision ${x.startRevision}: ${x.end}`);
  const ended = (what: string) => sessions.filter((x) => x.end.startsWith(what)).length;
  const events = sessions.reduce((n, x) => n + x.responses.reduce((e, r) => e + r.events.length, 0), 0);
  const answered = (k: Op["kind"]) => history.answered(k);
  const placedFailures = ops.filter(
    (o) => o.answer === undefined && o.value !== undefined && lists[0]!.some((c) => c.value === o.value),
  ).length;
  const summary =
    `${s.kind} seed ${seed}: ${ops.length} operations (${answered("put")} puts, ${answered("get")} gets, ` +
    `${history.serializableReads.length} serializable gets, ` +
    `${answered("cas")} compare-and-swaps, ${answered("del")} deletes answered; ` +
    `${ops.filter((o) => o.answer === undefined).length} writes failed, ${placedFailures} of them made), ` +
    `${lists[0]!.length} changes, faults ${JSON.stringify(s.faults)}, ` +
    `${sessions.length} watch sessions (${ended("error")} ended by an error, ${ended("moved on")} moved on) ` +
    `with ${events} events, ` +
    `term ${termBefore} → ${(await status(s.clients[0]!)).raftTerm}`;
  console.log(summary);
  if (problems.length > 0) {
    const file = keepFailure(s, seed, {
      summary,
      problems,
      events: s.events,
      ops,
      serializableReads: history.serializableReads,
      changes: lists[0],
      sessions,
    });
    throw new KeptFailure(`${summary}\n(the run is kept in ${file})\n${problems.join("\n")}`);
  }
  // Not vacuous: the faults happened, leadership changed, and every kind of operation was answered.
  expect(s.faults.kill).toBeGreaterThan(0);
  expect(s.faults.freeze).toBeGreaterThan(0);
  expect(s.faults.replace).toBeGreaterThan(1);
  expect(s.faults.promote).toBeGreaterThan(0);
  // The operator contract's removal and re-addition of the removed ID, and (odd seeds) promotion by
  // re-adding a learner's ID as a voter.
  if (s.kind === "chainfire") expect(s.faults.operatorReplace).toBeGreaterThan(0);
  if (s.kind === "chainfire" && seed % 2 === 1) expect(s.faults.operatorPromote).toBeGreaterThan(0);
  if (s.network !== undefined) {
    expect(s.faults.partition).toBeGreaterThan(0);
    // The old leader went on believing it led, cut off, with gets waiting for it.
    expect(s.faults.staleLeaderSeen).toBeGreaterThan(0);
  }
  // Members cut off got gets after a put they had not seen, and answered some of them (once
  // back in touch; failing such a read is also allowed).
  expect(s.faults.probesAnswered).toBeGreaterThan(0);
  // A member came back from a partition through a snapshot, with a watcher on it (etcd keeps
  // 5,000 entries for a follower and sends them instead).
  if (s.network !== undefined && s.kind === "chainfire")
    expect(s.faults.snapshotsAfterCut).toBeGreaterThan(0);
  expect((await status(s.clients[0]!)).raftTerm).toBeGreaterThan(termBefore);
  for (const k of ["put", "get", "cas", "del"] as const) expect(answered(k), k).toBeGreaterThan(10);
  expect(history.serializableReads.length).toBeGreaterThan(10);
  expect(ops.some((o) => o.kind === "cas" && o.answer?.succeeded)).toBe(true);
  // Watchers lost their members to the faults (killed, removed) and resumed with events.
  const lost = (x: WatchSession) => x.end.startsWith("error") || x.end.startsWith("the member ended");
  const resumed = sessions.filter(
    (x, i) => lost(x) && sessions.slice(i + 1).some((y) => y.watcher === x.watcher && y.responses.length > 0),
  );
  expect(resumed.length).toBeGreaterThan(0);
  expect(sessions.filter((x) => x.startRevision > 1n && x.responses.length > 0).length).toBeGreaterThan(
    WATCHERS,
  );
}

/** A failed check whose run was already kept. */
class KeptFailure extends Error {}

describe.each(KINDS)("linearizability under faults: %s", (kind) => {
  let subject: Subject | undefined;
  afterAll(() => subject?.stop());

  for (const seed of SEEDS) {
    it(
      `seed ${seed}`,
      async () => {
        subject?.stop(); // a failed seed's cluster
        subject = await Subject.start(kind, seed);
        const s = subject;
        const termBefore = (await status(s.clients[0]!)).raftTerm;
        const history = new History();
        try {
          await run(s, seed, history, termBefore);
        } catch (err) {
          // A wait that timed out or a check that failed: the run is kept for reading.
          if (!(err instanceof KeptFailure)) {
            const file = keepFailure(s, seed, {
              error: String(err),
              events: s.events,
              ops: history.ops,
              sessions: history.sessions,
            });
            (err as Error).message += `\n(the run is kept in ${file})`;
          }
          throw err;
        }
        subject = undefined;
        s.stop();
      },
      DURATION_MS + 420_000,
    );
  }
});
