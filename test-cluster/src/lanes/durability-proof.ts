// durability-proof: backups are only worth what their restore gives back. chainfire: snapshot a
// loaded cluster, restore the snapshot offline into the data directories of a fresh cluster, start
// it, and compare every key with its revisions on every member. flaredb: take a logical SQL backup,
// restore it into a fresh cluster, and compare the dump of every member with the original. Both
// must refuse a damaged backup and change nothing.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BackupFormat, Consistency, SqlClient } from "../clients.js";
import type { Cluster, MemberDescriptor } from "../cluster.js";
import type { LaneContext, LaneDefinition } from "../lane.js";
import { pollUntil } from "../poll.js";
import {
  createLaneCluster,
  ctlOk,
  describeCluster,
  descs,
  initialClusterOf,
  putKeys,
  readKeys,
  runCtl,
  type KeyRecord,
  startAndSettle,
} from "./common.js";

const prefix = "durability/";

/** Damages one byte in the middle of a file's content (not the trailer), as a bad disk or copy would. */
export function corrupt(source: string, target: string): { offset: number } {
  const bytes = readFileSync(source);
  const offset = Math.floor(bytes.length / 2);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0x5a;
  writeFileSync(target, bytes);
  return { offset };
}

/** Eight writers, each with its own share of the keys (a key is written by exactly one of them). */
async function putConcurrently(members: readonly MemberDescriptor[], entries: ReadonlyMap<string, string>) {
  const shares = Array.from({ length: 8 }, () => new Map<string, string>());
  let i = 0;
  for (const [k, v] of entries) shares[i++ % shares.length]!.set(k, v);
  await Promise.all(shares.map((share) => putKeys(members, share)));
}

async function chainfireSeed(source: Cluster) {
  const members = descs(source, "chainfire");
  const entries = new Map<string, string>();
  for (let i = 0; i < 200; i++) entries.set(`${prefix}key-${String(i).padStart(4, "0")}`, `value-${i}`);
  await putConcurrently(members, entries);
  // Overwrite some keys so that versions and mod revisions differ from create revisions.
  const rewrites = new Map([...entries].filter((_, i) => i % 7 === 0).map(([k, v]) => [k, `${v}-v2`]));
  await putConcurrently(members, rewrites);
  const keys = await readKeys(members[0]!, prefix, { linearizable: true });
  return { keys, summary: { keys: keys.length, rewritten: rewrites.size, sample: keys.slice(0, 3) } };
}

/** Offline restore of the snapshot into the (empty) data directories of a planned new cluster. */
async function chainfireRestore(ctx: LaneContext, target: Cluster, snapshotFile: string) {
  const members = descs(target, "chainfire");
  for (const m of members) {
    await ctlOk(ctx, "chainfirectl", [
      ...["snapshot", "restore", snapshotFile, "--name", m.name, "--data-dir", m.dataDir],
      ...["--initial-cluster", initialClusterOf(members), "--initial-advertise-peer-urls", m.peerUrl!],
      ...["--initial-cluster-token", target.token],
    ]);
  }
  return { restored: members.map((m) => ({ member: m.id, dataDir: m.dataDir })), token: target.token };
}

/** Every key with its create/mod revision and version, on every member of the restored cluster. */
async function chainfireCompare(target: Cluster, original: readonly KeyRecord[]) {
  const perMember: Record<string, number> = {};
  for (const m of descs(target, "chainfire")) {
    const restored = await pollUntil(
      `${m.id} to hold the restored keys`,
      async () => {
        const keys = await readKeys(m, prefix);
        return keys.length === original.length ? keys : undefined;
      },
      { deadlineMs: 30_000 },
    );
    const diff = original.filter((k, i) => JSON.stringify(k) !== JSON.stringify(restored[i]));
    if (diff.length > 0) {
      throw new Error(`${m.id}: ${diff.length} keys differ after restore, first ${diff[0]!.key}`);
    }
    perMember[m.id] = restored.length;
  }
  return { comparedKeysWithRevisions: original.length, perMember };
}

async function chainfireCorruptRefused(ctx: LaneContext, snapshotFile: string) {
  const damaged = join(ctx.runDir, "chainfire-snapshot.damaged.db");
  const { offset } = corrupt(snapshotFile, damaged);
  const dataDir = join(ctx.runDir, "chainfire-damaged-restore");
  const r = await runCtl(ctx, "chainfirectl", [
    ...["snapshot", "restore", damaged, "--name", "node01", "--data-dir", dataDir],
    ...[
      "--initial-cluster",
      "node01=http://127.0.0.1:1",
      "--initial-advertise-peer-urls",
      "http://127.0.0.1:1",
    ],
  ]);
  if (r.code === 0) throw new Error("chainfirectl snapshot restore accepted a damaged snapshot");
  if (existsSync(join(dataDir, "raft"))) throw new Error(`a refused restore still created ${dataDir}/raft`);
  return {
    damagedByteOffset: offset,
    exitCode: r.code,
    message: (r.stderr || r.stdout).trim().slice(0, 500),
  };
}

async function flaredbSeed(source: Cluster) {
  const sql = new SqlClient(descs(source, "flaredb")[0]!.clientUrl);
  try {
    await sql.execute(
      "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER, note BLOB)",
    );
    await sql.execute("CREATE INDEX accounts_owner ON accounts (owner)");
    // Eight concurrent writers with explicit ids, so the content does not depend on their interleaving.
    const insert = (i: number) =>
      sql.execute("INSERT INTO accounts (id, owner, balance, note) VALUES (?, ?, ?, ?)", [
        BigInt(i + 1),
        `owner-${i % 13}`,
        BigInt(i * 1000 - 7),
        Buffer.from([i, 255 - i]),
      ]);
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = w; i < 100; i += 8) await insert(i);
      }),
    );
    const backup = await sql.backup(BackupFormat.BACKUP_FORMAT_SQL);
    return backup;
  } finally {
    sql.close();
  }
}

const historyRow = 'INSERT INTO "_flaredb_schema_history"';

/**
 * The dump lines that carry user data and schema. The header (applied index), the trailer and the
 * schema-history ledger are left out: a restore is itself recorded in the ledger, so the restored
 * cluster's history legitimately has one more row than the original's.
 */
export function comparableDump(dump: string): { lines: string[]; historyRows: number } {
  const all = dump.split("\n").filter((l) => l.length > 0 && !l.startsWith("--"));
  const lines = all.filter((l) => !l.startsWith(historyRow));
  return { lines, historyRows: all.length - lines.length };
}

async function memberDumps(cluster: Cluster, original: string) {
  const want = comparableDump(original);
  const perMember: Record<string, { statements: number; historyRows: number }> = {};
  for (const m of descs(cluster, "flaredb")) {
    perMember[m.id] = await pollUntil(
      `${m.id} dump to match the original`,
      async () => {
        const sql = new SqlClient(m.clientUrl);
        try {
          const b = await sql.backupWith(BackupFormat.BACKUP_FORMAT_SQL, Consistency.CONSISTENCY_NONE);
          const got = comparableDump(b.data.toString("utf8"));
          const differing = got.lines.findIndex((l, i) => l !== want.lines[i]);
          if (got.lines.length !== want.lines.length || differing >= 0) {
            throw new Error(
              `${got.lines.length} vs ${want.lines.length} statements; first difference: ${got.lines[differing] ?? "(missing)"}`,
            );
          }
          return { statements: got.lines.length, historyRows: got.historyRows };
        } finally {
          sql.close();
        }
      },
      { deadlineMs: 30_000, intervalMs: 250 },
    );
  }
  return perMember;
}

export const durabilityProof: LaneDefinition = {
  name: "durability-proof",
  description:
    "chainfire snapshot/restore and flaredb logical backup/restore into fresh clusters, compared; damaged backups refused",
  async run(ctx) {
    const sources = await startPair(ctx, "source");
    const backupFile = join(ctx.runDir, "flaredb-backup.sql");
    await ctx.step("flaredb-logical-backup", async () => {
      const b = await flaredbSeed(sources.flaredb);
      writeFileSync(backupFile, b.data);
      return { file: backupFile, bytes: b.data.length, info: b.info };
    });
    const seeded = await ctx.step("chainfire-seed", () => chainfireSeed(sources.chainfire));
    const snapshotFile = join(ctx.runDir, "chainfire-snapshot.db");
    await ctx.step("chainfire-snapshot-save", async () => {
      const ep = descs(sources.chainfire, "chainfire")[0]!.clientUrl.replace(/^http:\/\//, "");
      const r = await ctlOk(ctx, "chainfirectl", ["--endpoints", ep, "snapshot", "save", snapshotFile]);
      return {
        file: snapshotFile,
        bytes: readFileSync(snapshotFile).length,
        output: r.stdout.trim().slice(0, 500),
      };
    });
    // The originals are no longer needed: everything below runs against fresh clusters.
    await Promise.all([sources.flaredb.stop(), sources.chainfire.stop()]);
    await ctx.step("chainfire-damaged-snapshot-refused", () => chainfireCorruptRefused(ctx, snapshotFile));
    const fresh = await planPair(ctx, "restored");
    await ctx.step("chainfire-snapshot-restore", () => chainfireRestore(ctx, fresh.chainfire, snapshotFile));
    await ctx.step("start-fresh-clusters", async () => {
      await Promise.all([startAndSettle(fresh.flaredb), startAndSettle(fresh.chainfire)]);
      return { flaredb: describeCluster(fresh.flaredb), chainfire: describeCluster(fresh.chainfire) };
    });
    await ctx.step("chainfire-restore-compare", () => chainfireCompare(fresh.chainfire, seeded.keys));
    await ctx.step("flaredb-damaged-backup-refused", () =>
      flaredbDamagedRefused(ctx, fresh.flaredb, backupFile),
    );
    await ctx.step("flaredb-restore-compare", async () => {
      const sql = new SqlClient(descs(fresh.flaredb, "flaredb")[0]!.clientUrl);
      try {
        const restored = await sql.restore(readFileSync(backupFile));
        const perMember = await memberDumps(fresh.flaredb, readFileSync(backupFile, "utf8"));
        const original = comparableDump(readFileSync(backupFile, "utf8"));
        return {
          restoredAtIndex: restored.raftIndex,
          compared:
            "every CREATE and INSERT of the dump, in order, on every member (schema-history rows counted apart)",
          original: { statements: original.lines.length, historyRows: original.historyRows },
          perMember,
        };
      } finally {
        sql.close();
      }
    });
  },
};

/** One flaredb and one chainfire cluster, planned but not started. */
async function planPair(ctx: LaneContext, name: string) {
  return {
    flaredb: await createLaneCluster(ctx, `flaredb-${name}`, { flaredb: 3 }),
    // Restored data directories are written before the first start: never re-planned.
    chainfire: await createLaneCluster(ctx, `chainfire-${name}`, {
      chainfire: 3,
      keepData: name === "restored",
    }),
  };
}

/** Both source clusters, started side by side. */
async function startPair(ctx: LaneContext, name: string) {
  const pair = await planPair(ctx, name);
  await ctx.step(`start-${name}-clusters`, async () => {
    await Promise.all([startAndSettle(pair.flaredb), startAndSettle(pair.chainfire)]);
    return { flaredb: describeCluster(pair.flaredb), chainfire: describeCluster(pair.chainfire) };
  });
  return pair;
}

async function flaredbDamagedRefused(ctx: LaneContext, target: Cluster, backupFile: string) {
  const damaged = join(ctx.runDir, "flaredb-backup.damaged.sql");
  const { offset } = corrupt(backupFile, damaged);
  const sql = new SqlClient(descs(target, "flaredb")[0]!.clientUrl);
  try {
    const before = await sql.backup(BackupFormat.BACKUP_FORMAT_SQL);
    const err = await sql.restore(readFileSync(damaged)).then(
      () => undefined,
      (e: Error) => e,
    );
    if (err === undefined) throw new Error("flaredb accepted a damaged backup");
    const after = await sql.backup(BackupFormat.BACKUP_FORMAT_SQL);
    if (after.info?.contentSha256 !== before.info?.contentSha256) {
      throw new Error("the refused restore changed the database (its dump differs from before)");
    }
    return {
      damagedByteOffset: offset,
      refusedWith: err.message,
      contentSha256Unchanged: after.info?.contentSha256,
    };
  } finally {
    sql.close();
  }
}
