// Makes a SQLite database's files durable from libuv's thread pool, without blocking the event loop:
// the database file, its WAL when there is one, and the folder (a file replaced by a restore is a
// new directory entry). A commit in WAL mode with synchronous=NORMAL reaches the WAL but is not
// synced; frames a checkpoint already copied into the database file were synced by the checkpoint
// before it let the WAL restart. So after this resolves, every transaction committed before the
// call survives a power loss.
import { open } from "node:fs/promises";
import { dirname } from "node:path";

async function syncPath(path: string, directory = false): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, directory ? "r" : "r+");
  } catch (err) {
    // No WAL file (not in WAL mode, or none since the last close) is nothing to sync.
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !directory && path.endsWith("-wal")) return;
    throw err;
  }
  try {
    await (directory ? handle.sync() : handle.datasync());
  } finally {
    await handle.close();
  }
}

/** Syncs the database file at `path`, its `-wal` file (if any) and its folder. */
export async function syncDatabaseFiles(path: string): Promise<void> {
  await syncPath(`${path}-wal`);
  await syncPath(path);
  await syncPath(dirname(path), true);
}
