// Randomised differential test of etcd's Cluster API: seeded sequences of MemberAdd (voters and
// learners, new, duplicate and malformed peer URLs), MemberRemove, MemberUpdate and MemberPromote
// (of members added here, which never start, of running members and of unknown IDs) and
// MemberList, sent to any member of a 3-member etcd 3.4 and of a 3-member chainfire. Every answer
// or error must agree, with member IDs and the running members' ports named alike on both sides.
// This reaches etcd's rules on reconfiguration: the started members a new voter needs, the
// one-learner limit, promotion only of a learner in sync, URLs already taken.
//
// Members added here are never started, and running members are never removed or moved, so the
// cluster keeps its quorum. Each seed ends by removing what it added. MEMBER_DIFF_SEEDS and
// MEMBER_DIFF_STEPS widen the search; a failure names the seed and the step.
import type { ServiceError } from "@grpc/grpc-js";
import type { ChainfireClients, etcd } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, until } from "./support/daemon-cluster.js";
import {
  countFromEnv,
  type Side,
  type Sides,
  seedsFromEnv,
  show,
  startSides,
} from "./support/random-diff.js";

const SEEDS = seedsFromEnv("MEMBER_DIFF_SEEDS", "1-8");
const STEPS = countFromEnv("MEMBER_DIFF_STEPS", 30);

/** Peer URLs nothing listens on (ports far below the ones the clusters use). */
const unusedUrl = (n: number) => `http://127.0.0.1:${n}`;
const MALFORMED_URLS = ["127.0.0.1:7", "http://127.0.0.1:7/path", "ftp://127.0.0.1:7", "http://127.0.0.1"];

type Outcome = { ok: unknown } | { code: number; details: string };

/** One side's view for comparing: the IDs of members added here, by the order they were added. */
class Names {
  private readonly added = new Map<bigint, string>();
  private readonly ports = new Map<string, string>();

  constructor(side: Side) {
    for (const m of side.cluster.members) {
      this.ports.set(String(m.peerPort), `${m.name}-peer`);
      this.ports.set(String(m.clientPort), `${m.name}-client`);
    }
  }

  add(id: bigint, name: string): void {
    this.added.set(id, name);
  }

  /** The name given to an added member's ID, if any. */
  of(id: bigint): string | undefined {
    return this.added.get(id);
  }

  /** A member as compared: ID by name, running members' ports by the port's role. */
  member(m: etcd.Member) {
    const url = (u: string) =>
      u.replace(/:(\d+)$/, (_all, port: string) => `:${this.ports.get(port) ?? port}`);
    return {
      ID: this.added.get(m.ID) ?? (m.name === "" ? `unnamed ${m.ID}` : m.name),
      name: m.name,
      peerURLs: m.peerURLs.map(url).sort(),
      clientURLs: m.clientURLs.map(url).sort(),
      isLearner: m.isLearner,
    };
  }

  /** An answer as compared: no header, members by name and in name order. */
  answer(o: Outcome): unknown {
    if (!("ok" in o)) return o;
    const res = o.ok as { member?: etcd.Member; members: etcd.Member[] };
    const members = res.members
      .map((m) => this.member(m))
      .sort((a, b) => (a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0));
    return res.member === undefined ? { members } : { member: this.member(res.member), members };
  }
}

type Op =
  | { rpc: "memberAdd"; req: etcd.MemberAddRequest }
  | { rpc: "memberRemove"; target: Target }
  | { rpc: "memberUpdate"; target: Target; peerURLs: string[] }
  | { rpc: "memberPromote"; target: Target }
  | { rpc: "memberList" };

/** Whom a request names: a member added here (by its name), a running one, or an unknown ID. */
type Target = { added: string } | { running: number } | { unknown: bigint };

function send(clients: ChainfireClients, rpc: Op["rpc"], req: object): Promise<Outcome> {
  return call(clients.cluster, rpc, req, 20_000).then(
    (ok) => ({ ok }),
    (err: ServiceError) => ({ code: err.code, details: err.details }),
  );
}

describe("randomised Cluster API requests: chainfire answers as etcd 3.4", () => {
  let sides: Sides | undefined;

  beforeAll(async () => {
    sides = await startSides("member-random-diff", [], 3);
    // etcd refuses reconfiguration until its members have been connected for 5 s (its
    // HealthInterval): wait until it accepts, then both sides start from the same place.
    const { etcd: e } = sides;
    await until(
      async () => {
        const res = await send(e.clients[0]!, "memberAdd", { peerURLs: [unusedUrl(1)], isLearner: true });
        if (!("ok" in res)) return false;
        const id = (res.ok as etcd.MemberAddResponse).member!.ID;
        return "ok" in (await send(e.clients[0]!, "memberRemove", { ID: id }));
      },
      "etcd to accept reconfiguration",
      60_000,
    );
  }, 180_000);

  afterAll(() => sides?.stop());

  it(
    `${SEEDS.length} seed(s) of ${STEPS} steps each`,
    async () => {
      const { etcd: etcdSide, chainfire: chainfireSide } = sides!;
      const names = [new Names(etcdSide), new Names(chainfireSide)];
      let nextPort = 10;
      /**
       * etcd 3.4 derives a new member's ID from its peer URLs and the second it is added, so a URL
       * added again within the same second meets the earlier member's ID (even a removed one's, which
       * it refuses as not found). chainfire's ID comes from the URLs alone, and answers as etcd does
       * a second later: a URL is added again only in a later second than the last time.
       */
      const addedAt = new Map<string, number>();
      const nextSecondFor = async (urls: readonly string[]) => {
        const last = Math.max(0, ...urls.map((u) => addedAt.get(u) ?? 0));
        const next = (Math.floor(last / 1000) + 1) * 1000;
        await until(() => Date.now() >= next, "the next second", 5_000);
      };
      let nextName = 0;
      for (const seed of SEEDS) {
        const rnd = new SeededRandom(BigInt(seed));
        const pick = <T>(items: readonly T[]): T => items[rnd.intBelow(items.length)]!;
        /** Members this seed added (by name), and the peer URLs in use. */
        const added: string[] = [];
        const learners = new Set<string>();
        const urls: string[] = [];
        const someUrls = (): string[] => {
          const p = rnd.intBelow(100);
          if (p < 70 || urls.length === 0) return [unusedUrl(nextPort++)];
          if (p < 85) return [pick(urls)];
          if (p < 92) return [unusedUrl(nextPort++), unusedUrl(nextPort++)];
          return [pick(MALFORMED_URLS)];
        };
        const target = (): Target => {
          const p = rnd.intBelow(100);
          if (p < 70 && added.length > 0) return { added: pick(added) };
          if (p < 85) return { running: rnd.intBelow(3) };
          return { unknown: pick([0x1234n, 0n]) };
        };
        const notRunning = (): Target => {
          let t = target();
          while ("running" in t) t = target();
          return t;
        };
        const draw = (): Op => {
          const p = rnd.intBelow(100);
          if (p < 35) return { rpc: "memberAdd", req: { peerURLs: someUrls(), isLearner: rnd.chance(0.5) } };
          // Never a running member's removal or new URLs: the cluster would lose it.
          if (p < 50) return { rpc: "memberRemove", target: notRunning() };
          if (p < 65) {
            let t = notRunning();
            // etcd 3.4 lists a learner as a voter once its URLs are updated (README): not drawn.
            while ("added" in t && learners.has(t.added)) t = notRunning();
            let peerURLs = someUrls();
            // etcd 3.4 takes any text as an existing member's new URL; chainfire refuses a malformed
            // one as MemberAdd does (README): drawn only for unknown members, refused by both.
            while (!("unknown" in t) && MALFORMED_URLS.includes(peerURLs[0]!)) peerURLs = someUrls();
            return { rpc: "memberUpdate", target: t, peerURLs };
          }
          if (p < 80) return { rpc: "memberPromote", target: target() };
          return { rpc: "memberList" };
        };

        const run = async (what: string, op: Op) => {
          if (op.rpc === "memberAdd") await nextSecondFor(op.req.peerURLs);
          const outcomes: Outcome[] = [];
          for (const [i, side] of [etcdSide, chainfireSide].entries()) {
            // The IDs a request names are looked up on its side, only for requests that name one.
            const idOf = async (t: Target): Promise<bigint> => {
              if ("unknown" in t) return t.unknown;
              const ids = await memberIds(side);
              if ("running" in t) return ids.running[t.running]!;
              return ids.all.find((id) => names[i]!.of(id) === t.added) ?? 0xdeadn;
            };
            const req =
              op.rpc === "memberAdd"
                ? op.req
                : op.rpc === "memberList"
                  ? {}
                  : op.rpc === "memberUpdate"
                    ? { ID: await idOf(op.target), peerURLs: op.peerURLs }
                    : { ID: await idOf(op.target) };
            const outcome = await send(side.clients[rnd.intBelow(side.clients.length)]!, op.rpc, req);
            if (op.rpc === "memberAdd" && "ok" in outcome)
              names[i]!.add((outcome.ok as etcd.MemberAddResponse).member!.ID, `added-${nextName}`);
            outcomes.push(outcome);
          }
          if (op.rpc === "memberAdd") for (const u of op.req.peerURLs) addedAt.set(u, Date.now());
          const [fromEtcd, fromChainfire] = outcomes.map((o, i) => names[i]!.answer(o));
          expect(fromChainfire, `${what}: ${show(op)}`).toStrictEqual(fromEtcd);
          return outcomes[0]!;
        };

        for (let step = 0; step < STEPS; step++) {
          const op = draw();
          const outcome = await run(`seed ${seed}, step ${step}`, op);
          if (!("ok" in outcome)) continue;
          if (op.rpc === "memberAdd") {
            if (op.req.isLearner) learners.add(`added-${nextName}`);
            added.push(`added-${nextName++}`);
            urls.push(...op.req.peerURLs);
          } else if (op.rpc === "memberPromote" && "added" in op.target) {
            learners.delete(op.target.added);
          } else if (op.rpc === "memberRemove" && "added" in op.target) {
            added.splice(added.indexOf(op.target.added), 1);
          } else if (op.rpc === "memberUpdate") {
            urls.push(...op.peerURLs);
          }
        }
        // Back to the three running members for the next seed.
        for (const name of [...added]) {
          await run(`seed ${seed}, removing ${name}`, { rpc: "memberRemove", target: { added: name } });
          added.splice(added.indexOf(name), 1);
        }
        await run(`seed ${seed}, end`, { rpc: "memberList" });
      }
    },
    600_000 + SEEDS.length * 60_000,
  );
});

/** The cluster's member IDs: all of them, and the running ones in the order of their names. */
async function memberIds(side: Side): Promise<{ all: bigint[]; running: bigint[] }> {
  const res = await call<etcd.MemberListResponse>(side.clients[0]!.cluster, "memberList", {}, 20_000);
  const running = side.cluster.members.map((m) => res.members.find((x) => x.name === m.name)!.ID);
  return { all: res.members.map((m) => m.ID), running };
}
