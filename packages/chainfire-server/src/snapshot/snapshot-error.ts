// The error every reader of snapshot files throws for a file it refuses (its own module, so that the
// readers of both formats can use it without importing each other).
export type SnapshotErrorCode =
  | "SNAPSHOT_CORRUPT"
  | "SNAPSHOT_TRUNCATED"
  /** A bare database whose WAL file beside it still holds committed writes. */
  | "SNAPSHOT_INCOMPLETE"
  | "SNAPSHOT_UNREADABLE"
  | "SNAPSHOT_AUTH";

export class SnapshotFileError extends Error {
  constructor(
    readonly code: SnapshotErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "SnapshotFileError";
  }
}
