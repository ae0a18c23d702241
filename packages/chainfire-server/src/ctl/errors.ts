// The CLI's own failure kinds. Each carries a stable code so tests and scripts can tell a usage
// mistake from an unreachable server; the message is what the operator reads on stderr.
export type CtlErrorCode =
  | "BAD_ARGUMENT"
  /** A feature the command does not have, e.g. a table for `get` (etcdctl's ExitBadFeature, 4). */
  | "BAD_FEATURE"
  /** The server ended a watch (etcdctl's ExitInterrupted, 5). */
  | "WATCH_CANCELED"
  /** Input ended or could not be read (etcdctl's ExitInvalidInput, 3): `watch -i` at its end. */
  | "INVALID_INPUT"
  | "UNREACHABLE"
  | "SERVER_ERROR"
  | "SNAPSHOT_CORRUPT"
  | "SNAPSHOT_TRUNCATED"
  | "DATA_DIR_EXISTS"
  | "MEMBER_NOT_FOUND"
  /** Failures already written to stderr, one line each (etcdctl's per-endpoint lines): exit 1, nothing more. */
  | "REPORTED";

export class CtlError extends Error {
  constructor(
    readonly code: CtlErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "CtlError";
  }
}

export function badArgument(message: string): CtlError {
  return new CtlError("BAD_ARGUMENT", message);
}
