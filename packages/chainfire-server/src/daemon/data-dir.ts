// The data directory (see README "Data directory"): <dir>/mvcc.db is the MVCC store, <dir>/raft/
// belongs to the Raft member (log, hard state, membership, snapshots). An offline snapshot restore
// writes only mvcc.db with applied_index 0; the daemon then bootstraps a new log from its flags.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { conflict } from "@photoncloud/daemon";

export const dataDirLayout = {
  mvccDb: (dir: string) => join(dir, "mvcc.db"),
  raftDir: (dir: string) => join(dir, "raft"),
  raftDb: (dir: string) => join(dir, "raft", "raft.db"),
} as const;

/** Creates the directory; refuses a store that has applied entries of a log that is gone. */
export function prepareDataDir(dir: string, storeAppliedIndex: () => bigint): void {
  mkdirSync(dir, { recursive: true });
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
