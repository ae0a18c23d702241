import { status } from "@grpc/grpc-js";
import {
  CertificateRejectedError,
  KeyInputError,
  KeyNotFoundError,
  KeyStateError,
  NoActiveKeyError,
  TokenRejectedError,
} from "@photoncloud/iam-authn";

/** Errors raised by the iam.v1 handlers and store; each has a stable code. */
export class IamApiError extends Error {
  constructor(
    readonly code: string,
    readonly grpcStatus: status,
    message: string,
  ) {
    super(message);
    this.name = "IamApiError";
  }
}

export const notFound = (what: string) =>
  new IamApiError("NOT_FOUND", status.NOT_FOUND, `${what} does not exist`);
export const invalidArgument = (field: string, fix: string) =>
  new IamApiError("INVALID_ARGUMENT", status.INVALID_ARGUMENT, `${field}: ${fix}`);
export const failedPrecondition = (message: string) =>
  new IamApiError("FAILED_PRECONDITION", status.FAILED_PRECONDITION, message);
export const alreadyExists = (what: string) =>
  new IamApiError("ALREADY_EXISTS", status.ALREADY_EXISTS, `${what} already exists`);
export const unauthenticated = (message: string) =>
  new IamApiError("UNAUTHENTICATED", status.UNAUTHENTICATED, message);
export const permissionDenied = (message: string) =>
  new IamApiError("PERMISSION_DENIED", status.PERMISSION_DENIED, message);
/** Credential issuance is refused until IAM_CRED_MASTER_KEY is configured. */
export const masterKeyMissing = () =>
  new IamApiError(
    "MASTER_KEY_MISSING",
    status.FAILED_PRECONDITION,
    "credential issuance is disabled: set IAM_CRED_MASTER_KEY to 32 bytes (64 hex characters or base64) and restart",
  );
/**
 * The audit record of a request could not be made durable, so the request is not answered with its
 * result (its effect may have happened: the caller should retry once the audit log is writable).
 */
export const auditUnavailable = (cause: unknown) =>
  new IamApiError(
    "AUDIT_UNAVAILABLE",
    status.UNAVAILABLE,
    `the audit log could not record this request, so it is not answered: ${(cause as Error)?.message ?? String(cause)}`,
  );

/** The one mapping from any error this server raises to a gRPC status code and client-safe message. */
export function toGrpcError(err: unknown): { code: status; details: string } {
  if (err instanceof IamApiError) return { code: err.grpcStatus, details: err.message };
  if (err instanceof TokenRejectedError || err instanceof CertificateRejectedError)
    return { code: status.UNAUTHENTICATED, details: `${err.code}: ${err.message}` };
  if (err instanceof KeyNotFoundError) return { code: status.NOT_FOUND, details: err.message };
  if (err instanceof KeyStateError || err instanceof NoActiveKeyError)
    return { code: status.FAILED_PRECONDITION, details: err.message };
  if (err instanceof KeyInputError || err instanceof RangeError)
    return { code: status.INVALID_ARGUMENT, details: err.message };
  return { code: status.INTERNAL, details: "internal error (see server log)" };
}
