// `snapshot restore`: the offline restore, then the exact flags the member must start with.
import { RestoreError, type RestoreOptions, restoreSnapshot } from "../../snapshot/restore.js";
import { badArgument, CtlError } from "../errors.js";
import type { CtlIo } from "../format.js";
import { progressBar } from "./snapshot.js";

export type RestoreFlags = Omit<RestoreOptions, "onProgress">;

export function snapshotRestoreCommand(io: CtlIo, file: string, flags: RestoreFlags): void {
  let result: ReturnType<typeof restoreSnapshot>;
  const progress = progressBar(io, "restore");
  try {
    result = restoreSnapshot(file, { ...flags, onProgress: progress.update });
  } catch (err) {
    if (err instanceof RestoreError) {
      throw err.code === "DATA_DIR_EXISTS"
        ? new CtlError("DATA_DIR_EXISTS", err.message)
        : badArgument(err.message);
    }
    throw err;
  } finally {
    progress.stop();
  }
  io.out(
    `Restored ${file} (revision ${result.status.revision}, ${result.status.totalKeys} keys) into ${result.dataDir}`,
  );
  io.out(
    "Start this member of the new cluster with (the cluster flags are recorded in the data dir, so --name and the member's URLs are enough):",
  );
  io.out(
    `  chainfire --name=${flags.name} --data-dir=${flags.dataDir} --initial-cluster=${flags.initialCluster} ` +
      `--initial-advertise-peer-urls=${flags.initialAdvertisePeerUrls} --initial-cluster-token=${flags.initialClusterToken} ` +
      "--initial-cluster-state=new",
  );
}
