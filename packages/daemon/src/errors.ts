// Domain errors and their one mapping to gRPC status. Handlers throw DomainErrors (or subclasses
// with their own stable code); anything else is a bug and reaches the client as INTERNAL with a
// generic message and an error id that finds the full error in the logs.

import { randomUUID } from "node:crypto";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type { Logger } from "pino";

/** The gRPC status codes a domain error may carry (OK is not an error). */
export type GrpcStatus = Exclude<status, status.OK>;

export interface DomainErrorOptions {
  /** Machine-readable extra facts, sent as `x-photon-<key>` metadata (e.g. leader). */
  readonly details?: Readonly<Record<string, string>>;
  /** For UNAVAILABLE / FAILED_PRECONDITION on a follower: where the client should go instead. */
  readonly leaderHint?: { readonly id?: bigint; readonly endpoint?: string };
  readonly cause?: unknown;
}

/**
 * An expected failure a client can act on. `code` is stable (e.g. "CHAINFIRE_KEY_NOT_FOUND"),
 * `grpcStatus` the status it maps to; the message is sent to the client as is, so it must not
 * contain secrets.
 */
export class DomainError extends Error {
  readonly code: string;
  readonly grpcStatus: GrpcStatus;
  readonly details: Readonly<Record<string, string>>;
  readonly leaderHint: DomainErrorOptions["leaderHint"];

  constructor(code: string, grpcStatus: GrpcStatus, message: string, options: DomainErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.grpcStatus = grpcStatus;
    this.details = options.details ?? {};
    this.leaderHint = options.leaderHint;
  }
}

/** Shorthands for the usual cases. Subclass DomainError when callers need `instanceof`. */
export const domainErrors = {
  notFound: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.NOT_FOUND, message, o),
  invalidArgument: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.INVALID_ARGUMENT, message, o),
  failedPrecondition: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.FAILED_PRECONDITION, message, o),
  alreadyExists: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.ALREADY_EXISTS, message, o),
  resourceExhausted: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.RESOURCE_EXHAUSTED, message, o),
  unavailable: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.UNAVAILABLE, message, o),
  permissionDenied: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.PERMISSION_DENIED, message, o),
  unauthenticated: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.UNAUTHENTICATED, message, o),
  outOfRange: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.OUT_OF_RANGE, message, o),
  aborted: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.ABORTED, message, o),
  deadlineExceeded: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.DEADLINE_EXCEEDED, message, o),
  unimplemented: (code: string, message: string, o?: DomainErrorOptions) =>
    new DomainError(code, status.UNIMPLEMENTED, message, o),
} as const;

/** Metadata keys set on mapped errors. */
export const ERROR_METADATA = {
  code: "x-photon-error-code",
  errorId: "x-photon-error-id",
  leaderId: "x-photon-leader-id",
  leaderEndpoint: "x-photon-leader-endpoint",
} as const;

const MAPPED = Symbol.for("@photoncloud/daemon.mapped-grpc-error");

/** A ServiceError produced by toGrpcError or grpcError; passed through unchanged if mapped again. */
export type MappedGrpcError = ServiceError & { readonly [MAPPED]: true };

/** Build a gRPC error with an explicit status (for wire-compatibility cases like etcd's messages). */
export function grpcError(
  code: GrpcStatus,
  details: string,
  metadata: Metadata = new Metadata(),
): MappedGrpcError {
  const error = Object.assign(new Error(`${status[code]}: ${details}`), { code, details, metadata });
  Object.defineProperty(error, MAPPED, { value: true });
  return error as MappedGrpcError;
}

export function isMappedGrpcError(err: unknown): err is MappedGrpcError {
  return typeof err === "object" && err !== null && (err as Record<symbol, unknown>)[MAPPED] === true;
}

function fromDomainError(err: DomainError): MappedGrpcError {
  const metadata = new Metadata();
  metadata.set(ERROR_METADATA.code, err.code);
  for (const [key, value] of Object.entries(err.details))
    metadata.set(`x-photon-${key.toLowerCase()}`, value);
  if (err.leaderHint?.id !== undefined) metadata.set(ERROR_METADATA.leaderId, err.leaderHint.id.toString(16));
  if (err.leaderHint?.endpoint !== undefined)
    metadata.set(ERROR_METADATA.leaderEndpoint, err.leaderHint.endpoint);
  return grpcError(err.grpcStatus, err.message, metadata);
}

/**
 * Map anything thrown by a handler to the error the client receives: DomainErrors to their status
 * (with code and leader hint in metadata), already-mapped errors unchanged, and everything else to
 * INTERNAL "internal error (id …)" — the real error is logged with that id, never sent.
 */
export function toGrpcError(err: unknown, logger: Pick<Logger, "error">, method?: string): MappedGrpcError {
  if (isMappedGrpcError(err)) return err;
  if (err instanceof DomainError) return fromDomainError(err);
  const errorId = randomUUID();
  logger.error({ err, errorId, method }, "unexpected error in gRPC handler");
  const metadata = new Metadata();
  metadata.set(ERROR_METADATA.errorId, errorId);
  metadata.set(ERROR_METADATA.code, "INTERNAL");
  return grpcError(status.INTERNAL, `internal error (id ${errorId})`, metadata);
}
