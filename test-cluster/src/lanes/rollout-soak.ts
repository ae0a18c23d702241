// rollout-soak: under continuous chainfire and flaredb writes, every control-plane member is taken
// down for maintenance in turn (leadership handed away first when it is the leader, then SIGTERM)
// and members are power-cut (SIGKILL), round after round for --duration. Afterwards: no acknowledged
// write is missing on any member, members converge, and writes resumed within a bound after each
// restart (each gap is recorded).
import { Consistency, MembershipClient, SqlClient } from "../clients.js";
import type { Cluster, ClusterMember, MemberDescriptor, RaftKind } from "../cluster.js";
import type { LaneContext, LaneDefinition } from "../lane.js";
import { pollUntil } from "../poll.js";
import { hexId, serviceOf, waitForLeader } from "../raft-view.js";
import { describeCluster, descs, expectKeysEverywhere, putKeys, startLaneCluster } from "./common.js";
import { ChainfireWriter, FlaredbWriter } from "./load.js";

export const soakDefaultMs = 60_000;
export const soakMaxMs = 3_600_000;
/**
 * The longest a daemon may go without an acknowledged write around one restart. Elections take
 * about a second with lane timing; the rest is headroom for a loaded CI machine, where starting a
 * Node process alone can take many seconds. Every gap is recorded, so the figures stay visible.
 */
export const writeGapBoundMs = Number(process.env.PHOTON_SOAK_WRITE_GAP_MS ?? 30_000);

interface RestartEvent {
  readonly member: string;
  readonly how: "maintenance (SIGTERM)" | "power loss (SIGKILL)";
  readonly wasLeader: boolean;
  readonly leaderTransferredTo?: string;
  /** From the moment the process was gone until it was healthy again (and its cluster had a leader). */
  readonly downMs: number;
  readonly backHealthyMs: number;
  /** Longest time the member's daemon went without an acknowledged write, from stop until 2 s after it was back. */
  readonly maxWriteGapMs: number | null;
  readonly withinBound: boolean;
}

async function memberIds(members: readonly MemberDescriptor[]): Promise<Map<string, bigint>> {
  const ids = new Map<string, bigint>();
  for (const m of members) {
    const c = new MembershipClient(serviceOf(m.kind as RaftKind), m.clientUrl);
    try {
      ids.set(m.id, (await c.status()).header!.memberId);
    } finally {
      c.close();
    }
  }
  return ids;
}

class Soak {
  readonly events: RestartEvent[] = [];
  private ids = new Map<string, bigint>();

  constructor(
    private readonly ctx: LaneContext,
    private readonly cluster: Cluster,
    private readonly writers: { chainfire: ChainfireWriter; flaredb: FlaredbWriter },
  ) {}

  async init(): Promise<void> {
    this.ids = await memberIds([...descs(this.cluster, "chainfire"), ...descs(this.cluster, "flaredb")]);
  }

  private async leaderOf(kind: RaftKind): Promise<MemberDescriptor | undefined> {
    const { leaderId } = await waitForLeader(descs(this.cluster, kind), 30_000);
    return descs(this.cluster, kind).find((d) => this.ids.get(d.id) === leaderId);
  }

  /** Maintenance: hand leadership away if needed, SIGTERM, start again. */
  async maintain(member: ClusterMember): Promise<void> {
    const kind = member.desc.kind;
    let wasLeader = false;
    let transferredTo: string | undefined;
    if (kind !== "iam") {
      const leader = await this.leaderOf(kind);
      wasLeader = leader?.id === member.desc.id;
      if (wasLeader) {
        const target = descs(this.cluster, kind).find((d) => d.id !== member.desc.id)!;
        const c = new MembershipClient(serviceOf(kind), member.desc.clientUrl);
        try {
          await c.leaderTransfer({ id: this.ids.get(target.id)! });
          transferredTo = target.id;
        } finally {
          c.close();
        }
      }
    }
    await this.bounce(member, "maintenance (SIGTERM)", wasLeader, transferredTo);
  }

  async powerLoss(member: ClusterMember): Promise<void> {
    const leader = member.desc.kind === "iam" ? undefined : await this.leaderOf(member.desc.kind);
    await this.bounce(member, "power loss (SIGKILL)", leader?.id === member.desc.id);
  }

  private async bounce(
    member: ClusterMember,
    how: RestartEvent["how"],
    wasLeader: boolean,
    transferredTo?: string,
  ) {
    this.ctx.log(`${how}: ${member.desc.id}${wasLeader ? " (leader)" : ""}`);
    const t0 = Date.now();
    if (how === "power loss (SIGKILL)") await member.proc.kill();
    else await member.proc.stop(10_000);
    const down = Date.now();
    member.proc.start();
    await member.proc.waitHealthy(60_000);
    if (member.desc.kind !== "iam") await waitForLeader(descs(this.cluster, member.desc.kind), 30_000);
    const back = Date.now();
    const writer = member.desc.kind === "iam" ? undefined : this.writers[member.desc.kind];
    let gap: number | null = null;
    if (writer !== undefined) {
      // Writes must be flowing again: wait for an acknowledgement after the member is back.
      await pollUntil(
        `writes to resume after restarting ${member.desc.id}`,
        () => writer.firstAckAfter(back),
        {
          deadlineMs: writeGapBoundMs,
        },
      );
      gap = writer.maxGapMs(t0, Math.max(Date.now(), back));
    }
    this.events.push({
      member: member.desc.id,
      how,
      wasLeader,
      ...(transferredTo ? { leaderTransferredTo: transferredTo } : {}),
      downMs: back - down,
      backHealthyMs: back - t0,
      maxWriteGapMs: gap,
      withinBound: gap === null || gap <= writeGapBoundMs,
    });
  }
}

async function runSoak(ctx: LaneContext, soak: Soak, cluster: Cluster, durationMs: number) {
  const started = Date.now();
  const chainfire = cluster.ofKind("chainfire");
  const flaredb = cluster.ofKind("flaredb");
  const iam = cluster.ofKind("iam");
  let round = 0;
  // At least one full round happens whatever the duration: every member restarted once, and one
  // member of each Raft daemon power-cut. The two Raft clusters are independent, so member i of
  // each is maintained at the same time (iam alongside the first pair): one member down per cluster.
  do {
    for (let i = 0; i < Math.max(chainfire.length, flaredb.length); i++) {
      const batch = [chainfire[i], flaredb[i], ...(i === 0 ? iam : [])].filter((m) => m !== undefined);
      await Promise.all(batch.map((m) => soak.maintain(m)));
    }
    await Promise.all([
      soak.powerLoss(chainfire[round % chainfire.length]!),
      soak.powerLoss(flaredb[round % flaredb.length]!),
    ]);
    round++;
  } while (Date.now() - started < durationMs);
  ctx.log(`soak finished after ${round} rounds`);
  return { rounds: round, elapsedMs: Date.now() - started };
}

async function convergence(cluster: Cluster, kind: RaftKind) {
  return pollUntil(
    `${kind} members to reach the same applied index`,
    async () => {
      const indexes: Record<string, string> = {};
      for (const m of descs(cluster, kind)) {
        const c = new MembershipClient(serviceOf(kind), m.clientUrl);
        try {
          indexes[m.id] = (await c.status()).raftAppliedIndex.toString();
        } finally {
          c.close();
        }
      }
      return new Set(Object.values(indexes)).size === 1 ? indexes : undefined;
    },
    { deadlineMs: 30_000, intervalMs: 200 },
  );
}

async function flaredbRowsEverywhere(cluster: Cluster, sql: string, expected: ReadonlySet<number>) {
  const perMember: Record<string, number> = {};
  for (const m of descs(cluster, "flaredb")) {
    perMember[m.id] = await pollUntil(
      `${m.id} to hold every acknowledged row`,
      async () => {
        const c = new SqlClient(m.clientUrl);
        try {
          const rows = await c.query(sql, Consistency.CONSISTENCY_NONE);
          const have = new Set(rows.map((r) => Number(r[0])));
          const missing = [...expected].filter((s) => !have.has(s));
          if (missing.length > 0)
            throw new Error(`${missing.length} acknowledged rows missing, e.g. seq ${missing[0]}`);
          return have.size;
        } finally {
          c.close();
        }
      },
      { deadlineMs: 30_000, intervalMs: 250 },
    );
  }
  return perMember;
}

export const rolloutSoak: LaneDefinition = {
  name: "rollout-soak",
  description:
    "rolling SIGTERM restarts and SIGKILL power loss of every member under chainfire and flaredb write load",
  async run(ctx) {
    const durationMs = Math.min(ctx.options.durationMs ?? soakDefaultMs, soakMaxMs);
    let cluster!: Cluster;
    await ctx.step("start-cluster", async () => {
      cluster = await startLaneCluster(ctx, "cluster", { chainfire: 3, flaredb: 3, iam: true });
      const sql = new SqlClient(descs(cluster, "flaredb")[0]!.clientUrl);
      try {
        await sql.execute("CREATE TABLE soak_events (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL)");
      } finally {
        sql.close();
      }
      return describeCluster(cluster);
    });
    const writers = {
      chainfire: new ChainfireWriter(descs(cluster, "chainfire"), "soak/"),
      flaredb: new FlaredbWriter(descs(cluster, "flaredb"), "soak_events"),
    };
    ctx.onCleanup("writers", () =>
      Promise.all([writers.chainfire.stop(), writers.flaredb.stop()]).then(() => {}),
    );
    const soak = new Soak(ctx, cluster, writers);
    await soak.init();
    await ctx.step("soak", async () => {
      writers.chainfire.start();
      writers.flaredb.start();
      const run = await runSoak(ctx, soak, cluster, durationMs);
      await writers.chainfire.stop();
      await writers.flaredb.stop();
      return {
        requestedDurationMs: durationMs,
        ...run,
        restarts: soak.events.length,
        chainfire: {
          acknowledged: writers.chainfire.acked.size,
          failedAttempts: writers.chainfire.failedAttempts,
        },
        flaredb: { acknowledged: writers.flaredb.acked.size, failedAttempts: writers.flaredb.failedAttempts },
      };
    });
    await ctx.step("post-control-plane-restarts", async () => {
      const slow = soak.events.filter((e) => !e.withinBound);
      const converged = {
        chainfire: await convergence(cluster, "chainfire"),
        flaredb: await convergence(cluster, "flaredb"),
      };
      const leaders = {
        chainfire: hexId((await waitForLeader(descs(cluster, "chainfire"), 30_000)).leaderId),
        flaredb: hexId((await waitForLeader(descs(cluster, "flaredb"), 30_000)).leaderId),
      };
      const result = { writeGapBoundMs, events: soak.events, converged, leaders };
      if (slow.length > 0) {
        throw Object.assign(
          new Error(
            `writes stalled beyond ${writeGapBoundMs} ms after: ${slow.map((e) => e.member).join(", ")}`,
          ),
          { details: result },
        );
      }
      return result;
    });
    const marker = new Map(
      descs(cluster, "chainfire").map((m) => [`post-restart/${m.name}`, `written-via-${m.name}`]),
    );
    await ctx.step("chainfire-post-restart-put", async () => {
      for (const m of descs(cluster, "chainfire"))
        await putKeys([m], new Map([[`post-restart/${m.name}`, marker.get(`post-restart/${m.name}`)!]]));
      return {
        keys: [...marker.keys()],
        readBack: await expectKeysEverywhere(descs(cluster, "chainfire"), "post-restart/", marker),
      };
    });
    await ctx.step("chainfire-post-restart", async () => {
      const perMember = await expectKeysEverywhere(
        descs(cluster, "chainfire"),
        "soak/",
        writers.chainfire.acked,
      );
      return { acknowledgedWrites: writers.chainfire.acked.size, lost: 0, keysPerMember: perMember };
    });
    await ctx.step("flaredb-post-restart-create", async () => {
      const sql = new SqlClient(descs(cluster, "flaredb")[1]!.clientUrl);
      try {
        const r = await sql.execute("CREATE TABLE soak_after (id INTEGER PRIMARY KEY, note TEXT)");
        const alter = await sql.execute("ALTER TABLE soak_events ADD COLUMN tag TEXT");
        return {
          statements: ["CREATE TABLE soak_after …", "ALTER TABLE soak_events ADD COLUMN tag TEXT"],
          raftIndex: [r.raftIndex, alter.raftIndex],
        };
      } finally {
        sql.close();
      }
    });
    await ctx.step("flaredb-post-restart-insert", async () => {
      const indexes = [];
      for (const [i, m] of descs(cluster, "flaredb").entries()) {
        const sql = new SqlClient(m.clientUrl);
        try {
          indexes.push(
            (
              await sql.execute("INSERT INTO soak_after (id, note) VALUES (?, ?)", [
                BigInt(i + 1),
                `via ${m.name}`,
              ])
            ).raftIndex,
          );
        } finally {
          sql.close();
        }
      }
      return { rows: indexes.length, raftIndex: indexes };
    });
    await ctx.step("flaredb-post-restart", async () => {
      const perMember = await flaredbRowsEverywhere(
        cluster,
        "SELECT seq FROM soak_events",
        writers.flaredb.acked,
      );
      const after = await flaredbRowsEverywhere(cluster, "SELECT id FROM soak_after", new Set([1, 2, 3]));
      return {
        acknowledgedWrites: writers.flaredb.acked.size,
        lost: 0,
        rowsPerMember: perMember,
        soakAfterRowsPerMember: after,
      };
    });
  },
};
