// flaredb's domain errors. Each has a stable `code`; the API maps codes to gRPC status in one table
// (grpcStatusOf). The same codes travel inside replicated results (ErrorDetail), so a member that
// did not run the statement itself reports the exact error the applying state machine produced.

/**
 * The gRPC status codes this server uses (values fixed by the gRPC specification). Kept here rather
 * than imported from @grpc/grpc-js so the domain layer has no runtime dependency on the transport.
 */
export const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

export const FlareDbErrorCode = {
  /** SQL text that SQLite cannot parse (or that our lexer cannot: unterminated strings). */
  SqlSyntax: "FLAREDB_SQL_SYNTAX",
  /** SQLite refused to run the statement (constraint, missing table, type error...). */
  SqlExecution: "FLAREDB_SQL_EXECUTION",
  /** A SQLite constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY) failed. */
  SqlConstraint: "FLAREDB_SQL_CONSTRAINT",
  /** The statement uses something whose result would differ between members. */
  NonDeterministic: "FLAREDB_NONDETERMINISTIC",
  /** The statement is never allowed (PRAGMA that changes durability, ATTACH, transaction control...). */
  StatementRefused: "FLAREDB_STATEMENT_REFUSED",
  /** Destructive DDL outside a maintenance window (the additive-first rule). */
  DestructiveDdl: "FLAREDB_SCHEMA_DESTRUCTIVE_DDL",
  /** Maintenance begin with a backup that does not match the current state. */
  StaleBackup: "FLAREDB_MAINTENANCE_STALE_BACKUP",
  MaintenanceAlreadyOpen: "FLAREDB_MAINTENANCE_ALREADY_OPEN",
  MaintenanceNotOpen: "FLAREDB_MAINTENANCE_NOT_OPEN",
  ParameterMismatch: "FLAREDB_PARAMETER_MISMATCH",
  MultipleStatements: "FLAREDB_MULTIPLE_STATEMENTS",
  EmptyRequest: "FLAREDB_EMPTY_REQUEST",
  RequestTooLarge: "FLAREDB_REQUEST_TOO_LARGE",
  ResultTooLarge: "FLAREDB_RESULT_TOO_LARGE",
  WriteInQuery: "FLAREDB_WRITE_IN_QUERY",
  BackupCorrupt: "FLAREDB_BACKUP_CORRUPT",
  RestoreNotEmpty: "FLAREDB_RESTORE_NOT_EMPTY",
  NotLeader: "FLAREDB_NOT_LEADER",
  StaleRead: "FLAREDB_STALE_READ",
  BadCommand: "FLAREDB_BAD_COMMAND",
} as const;
export type FlareDbErrorCode = (typeof FlareDbErrorCode)[keyof typeof FlareDbErrorCode];

export class FlareDbError extends Error {
  constructor(
    readonly code: FlareDbErrorCode,
    message: string,
    /** The failing statement's position in the request, or -1. */
    readonly statementIndex = -1,
  ) {
    super(message);
    this.name = "FlareDbError";
  }

  /** The same error, attributed to statement `index` of a request. */
  at(index: number): FlareDbError {
    if (this.statementIndex === index) return this;
    const prefix = `statement ${index}: `;
    const message = this.message.startsWith("statement ") ? this.message : prefix + this.message;
    return new FlareDbError(this.code, message, index);
  }
}

const statusByCode: Record<FlareDbErrorCode, GrpcStatusCode> = {
  FLAREDB_SQL_SYNTAX: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_SQL_EXECUTION: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_SQL_CONSTRAINT: GrpcStatus.FAILED_PRECONDITION,
  FLAREDB_NONDETERMINISTIC: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_STATEMENT_REFUSED: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_SCHEMA_DESTRUCTIVE_DDL: GrpcStatus.FAILED_PRECONDITION,
  FLAREDB_MAINTENANCE_STALE_BACKUP: GrpcStatus.FAILED_PRECONDITION,
  FLAREDB_MAINTENANCE_ALREADY_OPEN: GrpcStatus.FAILED_PRECONDITION,
  FLAREDB_MAINTENANCE_NOT_OPEN: GrpcStatus.FAILED_PRECONDITION,
  FLAREDB_PARAMETER_MISMATCH: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_MULTIPLE_STATEMENTS: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_EMPTY_REQUEST: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_REQUEST_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  FLAREDB_RESULT_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  FLAREDB_WRITE_IN_QUERY: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_BACKUP_CORRUPT: GrpcStatus.INVALID_ARGUMENT,
  FLAREDB_RESTORE_NOT_EMPTY: GrpcStatus.FAILED_PRECONDITION,
  FLAREDB_NOT_LEADER: GrpcStatus.UNAVAILABLE,
  FLAREDB_STALE_READ: GrpcStatus.UNAVAILABLE,
  FLAREDB_BAD_COMMAND: GrpcStatus.INTERNAL,
};

export function grpcStatusOf(code: string): GrpcStatusCode {
  return (statusByCode as Record<string, GrpcStatusCode>)[code] ?? GrpcStatus.INTERNAL;
}

export function isFlareDbErrorCode(code: string): code is FlareDbErrorCode {
  return code in statusByCode;
}

/** Converts an error thrown by better-sqlite3 (or by our own SQL functions) into a domain error. */
export function fromSqliteError(err: unknown): FlareDbError {
  if (err instanceof FlareDbError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : String(err);
  const sqliteCode = typeof e.code === "string" ? e.code : "";
  if (sqliteCode.startsWith("SQLITE_CONSTRAINT")) return new FlareDbError("FLAREDB_SQL_CONSTRAINT", message);
  if (/syntax error|incomplete input|unrecognized token/.test(message)) {
    return new FlareDbError("FLAREDB_SQL_SYNTAX", message);
  }
  if (err instanceof RangeError) return new FlareDbError("FLAREDB_PARAMETER_MISMATCH", message);
  return new FlareDbError("FLAREDB_SQL_EXECUTION", message);
}
