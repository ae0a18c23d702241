import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { DomainError, domainErrors, ERROR_METADATA, grpcError, toGrpcError } from "./errors.js";

function recordingLogger() {
  const logged: unknown[] = [];
  return { logged, logger: { error: (obj: unknown) => void logged.push(obj) } };
}

describe("toGrpcError", () => {
  it.each([
    [domainErrors.notFound, status.NOT_FOUND],
    [domainErrors.failedPrecondition, status.FAILED_PRECONDITION],
    [domainErrors.invalidArgument, status.INVALID_ARGUMENT],
    [domainErrors.resourceExhausted, status.RESOURCE_EXHAUSTED],
    [domainErrors.alreadyExists, status.ALREADY_EXISTS],
    [domainErrors.permissionDenied, status.PERMISSION_DENIED],
    [domainErrors.unauthenticated, status.UNAUTHENTICATED],
    [domainErrors.unavailable, status.UNAVAILABLE],
  ])("maps a domain error to its status (%#)", (make, expected) => {
    // Proves each DomainError keeps its status, message and stable code on the wire.
    const { logger, logged } = recordingLogger();
    const mapped = toGrpcError(make("X_CODE", "what happened"), logger);
    expect(mapped.code).toBe(expected);
    expect(mapped.details).toBe("what happened");
    expect(mapped.metadata.get(ERROR_METADATA.code)).toEqual(["X_CODE"]);
    expect(logged).toHaveLength(0);
  });

  it("carries the leader hint and details in metadata", () => {
    // Proves a follower's UNAVAILABLE tells the client where the leader is.
    const err = domainErrors.unavailable("NOT_LEADER", "not the leader", {
      leaderHint: { id: 0xabcn, endpoint: "http://127.0.0.1:2379" },
      details: { term: "7" },
    });
    const mapped = toGrpcError(err, recordingLogger().logger);
    expect(mapped.metadata.get(ERROR_METADATA.leaderId)).toEqual(["abc"]);
    expect(mapped.metadata.get(ERROR_METADATA.leaderEndpoint)).toEqual(["http://127.0.0.1:2379"]);
    expect(mapped.metadata.get("x-photon-term")).toEqual(["7"]);
  });

  it("hides unexpected errors behind INTERNAL with an error id that is logged", () => {
    // Proves internal text never reaches the client and the log line can be found by the id.
    const { logger, logged } = recordingLogger();
    const mapped = toGrpcError(new Error("sqlite file /secret/path corrupt"), logger, "/svc/M");
    expect(mapped.code).toBe(status.INTERNAL);
    expect(mapped.details).not.toContain("/secret/path");
    const errorId = mapped.metadata.get(ERROR_METADATA.errorId)[0];
    expect(mapped.details).toBe(`internal error (id ${errorId})`);
    expect(logged).toEqual([expect.objectContaining({ errorId, method: "/svc/M" })]);
    expect(toGrpcError("a string", logger).code).toBe(status.INTERNAL);
    expect(toGrpcError(Object.assign(new Error("x"), { code: 5 }), logger).code).toBe(status.INTERNAL);
  });

  it("passes already-mapped errors through unchanged", () => {
    // Proves mapping twice (adapter then instrumentation) does not turn a status into INTERNAL.
    const explicit = grpcError(
      status.OUT_OF_RANGE,
      "etcdserver: mvcc: required revision is a future revision",
    );
    const logger = recordingLogger().logger;
    expect(toGrpcError(explicit, logger)).toBe(explicit);
    const once = toGrpcError(new DomainError("C", status.ABORTED, "m"), logger);
    expect(toGrpcError(once, logger)).toBe(once);
    expect(explicit.metadata).toBeInstanceOf(Metadata);
  });
});
