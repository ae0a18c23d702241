// The data directory (see README "Data directory"): <dir>/mvcc.db is the MVCC store, <dir>/raft/
// belongs to the Raft member (log, hard state, membership, snapshots). An offline snapshot restore
// writes only mvcc.db with applied_index 0; the daemon then bootstraps a new log from its flags.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { conflict, type DaemonUrl, parseUrlList, type ValueSource } from "@photoncloud/daemon";
import { parseInitialCluster } from "@photoncloud/raft";
import { RESTORED_FOR_FILE, type RestoredFor } from "../snapshot/restore.js";

export const dataDirLayout = {
  mvccDb: (dir: string) => join(dir, "mvcc.db"),
  restoredFor: (dir: string) => join(dir, RESTORED_FOR_FILE),
  raftDir: (dir: string) => join(dir, "raft"),
  raftDb: (dir: string) => join(dir, "raft", "raft.db"),
} as const;

/** Refuses a store that has applied entries of a log that is gone (the daemon made the dir). */
export function prepareDataDir(dir: string, storeAppliedIndex: () => bigint): void {
  if (existsSync(dataDirLayout.raftDb(dir))) return;
  const applied = storeAppliedIndex();
  if (applied > 0n) {
    throw conflict(
      "data-dir",
      `${dataDirLayout.mvccDb(dir)} has applied Raft entries up to ${applied} but ${dataDirLayout.raftDb(dir)} ` +
        "is missing, so this member cannot rejoin its cluster safely; remove the data directory and add the " +
        "member again, or restore it with `chainfirectl snapshot restore`",
    );
  }
}

/** Whether this member has a Raft log already (a restart rather than a first start). */
export function hasRaftLog(dir: string): boolean {
  return existsSync(dataDirLayout.raftDb(dir));
}

/** The bootstrap settings a restored data dir's first start takes from its restore. */
export interface BootstrapConfig {
  readonly name: string;
  readonly initialCluster: string | undefined;
  readonly initialAdvertisePeerUrls: DaemonUrl[] | undefined;
  readonly initialClusterToken: string;
  readonly initialClusterState: "new" | "existing";
}

type Sources = Readonly<Partial<Record<keyof BootstrapConfig, ValueSource>>>;

/**
 * For the first start of a data dir `chainfirectl snapshot restore` made: the restore's membership
 * (as etcd bootstraps a restored member from the membership its restore wrote). Settings left out
 * are taken from it; one given with another value is refused, naming both.
 */
export function bootstrapFromRestore<C extends BootstrapConfig>(dir: string, config: C, sources: Sources): C {
  const path = dataDirLayout.restoredFor(dir);
  if (hasRaftLog(dir) || !existsSync(path)) return config;
  let restored: RestoredFor;
  try {
    restored = JSON.parse(readFileSync(path, "utf8")) as RestoredFor;
  } catch (err) {
    throw conflict(
      "data-dir",
      `${path} is unreadable (${(err as Error).message}); restore the data dir again`,
    );
  }
  const given = (key: keyof BootstrapConfig) => (sources[key] ?? "default") !== "default";
  const refuse = (flag: string, yours: string, theirs: string) =>
    conflict(
      `--${flag}`,
      `${yours} differs from ${theirs}, which ${dir} was restored for (${path}); give the same value or leave --${flag} out`,
    );
  if (given("name") && config.name !== restored.name) throw refuse("name", config.name, restored.name);
  // Compared as the member kit reads them (names and normalised URLs), whatever the spelling.
  const clusterText = (text: string) =>
    parseInitialCluster(text, restored.initialClusterToken)
      .map((m) => `${m.name}=${[...m.peerUrls].sort().join("|")}`)
      .sort()
      .join(",");
  if (
    config.initialCluster !== undefined &&
    clusterText(config.initialCluster) !== clusterText(restored.initialCluster)
  )
    throw refuse("initial-cluster", config.initialCluster, restored.initialCluster);
  const advertised = parseUrlList(restored.initialAdvertisePeerUrls.join(","));
  const hrefs = (urls: readonly DaemonUrl[]) =>
    urls
      .map((u) => u.href)
      .sort()
      .join(",");
  if (
    config.initialAdvertisePeerUrls !== undefined &&
    hrefs(config.initialAdvertisePeerUrls) !== hrefs(advertised)
  )
    throw refuse("initial-advertise-peer-urls", hrefs(config.initialAdvertisePeerUrls), hrefs(advertised));
  if (given("initialClusterToken") && config.initialClusterToken !== restored.initialClusterToken)
    throw refuse("initial-cluster-token", config.initialClusterToken, restored.initialClusterToken);
  if (config.initialClusterState === "existing") {
    throw conflict(
      "--initial-cluster-state",
      `${dir} was restored to start a new cluster (${path}); leave --initial-cluster-state at new`,
    );
  }
  return {
    ...config,
    name: restored.name,
    initialCluster: restored.initialCluster,
    initialAdvertisePeerUrls: advertised,
    initialClusterToken: restored.initialClusterToken,
  };
}
