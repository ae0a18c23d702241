// Leases under faults. A client keeps a lease alive through any member, every 200 ms, while the
// leader is killed and restarted, frozen for longer than an election timeout, and moved; readers
// keep reading the key attached to it from any member. The lease's TTL (5 s) is twice the longest
// these faults leave the cluster without a leader, and a new leader continues each countdown from
// its last recorded remaining TTL (chainfire records one through the log before it answers a
// keep-alive; etcd 3.4 restarts it in full), so the lease must never be lost: every keep-alive is
// answered with its TTL and every read finds the key. A second lease, never kept alive, must
// expire and take its key from every member.
//
// Then a leader cut off from the others (each member in its own network namespace; clients still
// reach it), while a client keeps sending it keep-alives: whatever it answers, the others must not
// expire the lease before any TTL it promised has run out (counted from when the keep-alive was
// sent, as etcd's clients count). Partitions need root and iproute2 (CI has both); LEASE_NETNS=0
// leaves that case out.
//
// LEASE_KINDS=etcd,chainfire also runs both against a 3-member etcd 3.4 (etcd passes).
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChainfireClients, etcd } from "@photoncloud/chainfire-api";
import { NetnsNetwork, netnsPreflight } from "@photoncloud/test-cluster/netns";
import { afterAll, describe, expect, it } from "vitest";
import { Cluster, type Placement } from "../bench/cluster.js";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";
import { call, until } from "./support/daemon-cluster.js";
import { FaultedCluster, faultClusterOptions } from "./support/fault-cluster.js";
import { kindsFromEnv } from "./support/random-diff.js";

const KINDS = kindsFromEnv("LEASE_KINDS");
/**
 * The cut-off leader's case needs network namespaces: root and iproute2, as in CI. LEASE_NETNS=0
 * leaves it out; elsewhere it is left out with a note.
 */
const NETNS = process.env.LEASE_NETNS !== "0" && netnsAvailable();

function netnsAvailable(): boolean {
  try {
    netnsPreflight();
    return true;
  } catch (err) {
    console.log(`lease fault test without the cut-off leader's case: ${(err as Error).message}`);
    return false;
  }
}
/** The kept lease's TTL: twice the longest the faults below leave the cluster without a leader. */
const KEPT_TTL = 5n;
const LEFT_TTL = 2n;
/** The cut-off leader's lease: long enough to be recorded part-way down before the cut. */
const CUT_TTL = 10n;
const enc = (s: string) => Buffer.from(s);
/** The fault's own length (how long a member stays frozen or down): a duration, not a wait for state. */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface KeepAlive {
  sentAt: number;
  /** The TTL the answer gave (0 or less: the lease is gone). */
  ttl: bigint;
}
interface Read {
  by: string;
  invokedAt: number;
  returnedAt: number;
  present: boolean;
}

/** One keep-alive on a stream of its own: the answer's TTL, or undefined without one in time. */
function keepAliveOnce(c: ChainfireClients, id: bigint, deadlineMs: number): Promise<bigint | undefined> {
  return new Promise((resolve) => {
    const stream = c.lease.leaseKeepAlive();
    const done = (ttl: bigint | undefined) => {
      clearTimeout(timer);
      stream.cancel();
      resolve(ttl);
    };
    const timer = setTimeout(() => done(undefined), deadlineMs);
    stream.on("data", (res: etcd.LeaseKeepAliveResponse) => done(res.TTL));
    stream.on("error", () => done(undefined));
    stream.write({ ID: id });
  });
}

describe.each(KINDS)("leases under faults: %s", (kind) => {
  /** Undone after the tests, last first: clusters stopped, networks and directories removed. */
  const cleanups: (() => void)[] = [];
  afterAll(() => {
    for (const undo of cleanups.reverse()) undo();
  });
  const tempDir = (name: string) => {
    const dir = mkdtempSync(join(tmpdir(), `${name}-${kind}-`));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };
  const started = (cluster: Cluster) => {
    cleanups.push(() => {
      for (const m of cluster.members) m.process?.kill("SIGCONT");
      cluster.stop();
    });
    return cluster;
  };

  it("keeps a kept-alive lease's key through leader kills, freezes and moves, and expires one left alone", async () => {
    const c = started(await Cluster.start(faultClusterOptions(kind, tempDir("lease"), false)));
    const f = new FaultedCluster(c);
    await f.readIds();
    const { clients, frozen, ids } = f;
    const usable = () => f.usable();

    /** A lease granted through member `i`, with key `key` attached to it. */
    const leasedKey = async (i: number, ttl: bigint, key: string) => {
      const lease = await call<etcd.LeaseGrantResponse>(clients[i]!.lease, "leaseGrant", {
        TTL: ttl,
        ID: 0n,
      });
      await call(clients[i]!.kv, "put", putRequest({ key: enc(key), value: enc("v"), lease: lease.ID }));
      return lease;
    };
    const kept = await leasedKey(0, KEPT_TTL, "lease/kept");
    const left = await leasedKey(1, LEFT_TTL, "lease/left");

    let running = true;
    const keepAlives: KeepAlive[] = [];
    const reads: Read[] = [];
    const keeper = (async () => {
      for (let n = 0; running; n++) {
        const members = usable();
        const i = members[n % members.length]!;
        const sentAt = performance.now();
        const ttl = await keepAliveOnce(clients[i]!, kept.ID, 1000);
        if (ttl !== undefined) keepAlives.push({ sentAt, ttl });
        await pause(200); // etcd's clients send one every TTL/3; this one, more often
      }
    })();
    const readers = [0, 1].map(async (r) => {
      for (let n = r; running; n++) {
        const members = usable();
        const i = members[n % members.length]!;
        const invokedAt = performance.now();
        const res = await call<etcd.RangeResponse>(
          clients[i]!.kv,
          "range",
          rangeRequest({ key: enc("lease/kept") }),
          2000,
        ).catch(() => undefined);
        if (res !== undefined)
          reads.push({
            by: c.members[i]!.name,
            invokedAt,
            returnedAt: performance.now(),
            present: res.kvs.length > 0,
          });
      }
    });

    // The nemesis: each fault on the leader of the moment, undone before the next.
    const faults: string[] = [];
    try {
      for (const fault of ["kill", "freeze", "move", "kill", "freeze", "move"] as const) {
        await pause(700);
        const l = await f.leader();
        const m = c.members[l]!;
        faults.push(`${fault} ${m.name} at ${Math.round(performance.now())}`);
        if (fault === "kill") {
          const exited = once(m.process!, "exit");
          c.stopMember(m);
          await exited;
          await pause(800);
          c.startMember(m);
        } else if (fault === "freeze") {
          m.process!.kill("SIGSTOP");
          frozen.add(l);
          await pause(1500);
          m.process!.kill("SIGCONT");
          frozen.delete(l);
        } else {
          const to = ids[(l + 1) % ids.length]!;
          await call(clients[l]!.maintenance, "moveLeader", { targetID: to }, 5000).catch(() => {});
        }
        await c.waitReady();
      }
    } finally {
      running = false;
      await keeper;
      await Promise.all(readers);
    }

    const promised = keepAlives.filter((k) => k.ttl > 0n);
    const longestGap = promised.reduce(
      (g, k, i) => (i === 0 ? 0 : Math.max(g, k.sentAt - promised[i - 1]!.sentAt)),
      0,
    );
    const summary =
      `${kind}: ${keepAlives.length} keep-alives answered (${promised.length} with a TTL, ` +
      `at most ${Math.round(longestGap)} ms apart), ` +
      `${reads.length} reads (${reads.filter((r) => !r.present).length} without the key), faults ${faults.join(", ")}`;
    console.log(summary);
    // Kept alive through every fault: never lost, and the key is on every member now.
    expect(
      keepAlives.every((k) => k.ttl > 0n),
      summary,
    ).toBe(true);
    expect(
      reads.filter((r) => !r.present),
      summary,
    ).toEqual([]);
    for (const cl of clients) {
      const res = await call<etcd.RangeResponse>(cl.kv, "range", rangeRequest({ key: enc("lease/kept") }));
      expect(res.kvs.map((kv) => kv.lease)).toEqual([kept.ID]);
    }
    // Not vacuous: keep-alives were answered and reads made between the faults.
    expect(promised.length).toBeGreaterThan(15);
    expect(reads.length).toBeGreaterThan(50);

    // The lease left alone expired (on the leader's clock, through the log) and took its key
    // from every member.
    for (const cl of clients) {
      await until(async () => {
        const res = await call<etcd.RangeResponse>(cl.kv, "range", rangeRequest({ key: enc("lease/left") }));
        return res.kvs.length === 0 ? true : undefined;
      }, "the lease left alone to expire and take its key");
      const ttl = await call<etcd.LeaseTimeToLiveResponse>(cl.lease, "leaseTimeToLive", {
        ID: left.ID,
        keys: false,
      });
      expect(ttl.TTL).toBe(-1n);
    }
    f.close();
  }, 240_000);
  if (NETNS)
    it("does not expire a lease on the majority side before a keep-alive its cut-off leader answered has run out", async () => {
      const network = NetnsNetwork.create();
      cleanups.push(() => network.destroy());
      const place = (name: string): Placement => {
        const at = network.ensureMember(name);
        return { host: at.address, wrap: (command, args) => network.wrap(at.namespace, command, args) };
      };
      const c = started(
        await Cluster.start({ ...faultClusterOptions(kind, tempDir("lease-cut"), false), place }),
      );
      const f = new FaultedCluster(c);
      await f.readIds();
      const { clients } = f;
      const leader = await f.leader();
      const others = [0, 1, 2].filter((i) => i !== leader);

      // A lease with a key, kept alive once, then left to age past a recording of its remaining TTL
      // (chainfire's default interval is 5 s), so what the others know of it is well under its TTL.
      const lease = await call<etcd.LeaseGrantResponse>(clients[leader]!.lease, "leaseGrant", {
        TTL: CUT_TTL,
        ID: 0n,
      });
      await call(
        clients[leader]!.kv,
        "put",
        putRequest({ key: enc("lease/cut"), value: enc("v"), lease: lease.ID }),
      );
      const promised: KeepAlive[] = [];
      const keepAlive = async (i: number, deadlineMs: number) => {
        const sentAt = performance.now();
        const ttl = await keepAliveOnce(clients[i]!, lease.ID, deadlineMs);
        if (ttl !== undefined && ttl > 0n) promised.push({ sentAt, ttl });
        return ttl;
      };
      expect(await keepAlive(leader, 5000)).toBe(CUT_TTL);
      await pause(6000);

      // The leader is cut off from the others; the client's keep-alives still reach it (an etcd
      // client keeps its stream on one member until the stream fails), for three election timeouts.
      const names = c.members.map((m) => m.name);
      network.isolate(names[leader]!, names);
      const cutAt = performance.now();
      // Not vacuous: the member cut off is the leader (it believes so for an election timeout yet).
      const cutStatus = await call<etcd.StatusResponse>(clients[leader]!.maintenance, "status", {}, 2000);
      expect(cutStatus.leader).toBe(f.ids[leader]);
      const answeredAfterCut: bigint[] = [];
      while (performance.now() < cutAt + 1500) {
        const ttl = await keepAlive(leader, 500);
        if (ttl !== undefined) answeredAfterCut.push(ttl);
        await pause(50);
      }

      // The others elect a leader and, nobody keeping the lease alive on their side, expire it. Each
      // reads the key until it is gone. A read started at a time that still finds the key shows it
      // was there then: the last such read must have started no sooner than the promise ran out.
      const promisedUntil = Math.max(...promised.map((k) => k.sentAt + Number(k.ttl) * 1000));
      const lastSeen = await Promise.all(
        others.map(async (i) => {
          let seenAt = Number.NEGATIVE_INFINITY;
          await until(async () => {
            const startedAt = performance.now();
            const res = await call<etcd.RangeResponse>(
              clients[i]!.kv,
              "range",
              rangeRequest({ key: enc("lease/cut"), serializable: true }),
              2000,
            ).catch(() => undefined);
            if (res === undefined) return undefined;
            if (res.kvs.length === 0) return true;
            seenAt = startedAt;
            return undefined;
          }, "the lease to expire on the majority side");
          return seenAt;
        }),
      );
      const summary =
        `${kind}: cut at ${Math.round(cutAt)}, keep-alives answered after the cut: ${answeredAfterCut.join(", ") || "none"}; ` +
        `TTL promised until ${Math.round(promisedUntil)}; key last seen on the others by reads started at ${lastSeen.map(Math.round).join(", ")}`;
      console.log(summary);
      for (const at of lastSeen) expect(at, summary).toBeGreaterThanOrEqual(promisedUntil);

      // Healed, the old leader follows the others: the lease is gone there too.
      network.healAll();
      await until(async () => {
        const res = await call<etcd.RangeResponse>(
          clients[leader]!.kv,
          "range",
          rangeRequest({ key: enc("lease/cut") }),
          2000,
        ).catch(() => undefined);
        return res !== undefined && res.kvs.length === 0 ? true : undefined;
      }, "the healed member to drop the expired lease's key");
      f.close();
    }, 120_000);
});
