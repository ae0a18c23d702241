import { status } from "@grpc/grpc-js";
import { errorFromCode, LeaderChangedError, NotLeaderError } from "@photoncloud/raft";
import { describe, expect, it } from "vitest";
import { toGrpcError } from "./errors.js";

describe("toGrpcError", () => {
  it("tells a write that was never proposed from one whose leader failed before it was applied", () => {
    // Proves the two Raft outcomes reach etcd clients in etcd's words: "no leader" (not proposed,
    // safe to send again) and "possibly due to previous leader failure" (outcome unknown), also
    // when the error was rebuilt from its code on the wire.
    const notProposed = { code: status.UNAVAILABLE, details: "etcdserver: no leader" };
    const unknown = {
      code: status.UNAVAILABLE,
      details: "etcdserver: request timed out, possibly due to previous leader failure",
    };
    expect(toGrpcError(new NotLeaderError(3n))).toEqual(notProposed);
    expect(toGrpcError(new LeaderChangedError(3n))).toEqual(unknown);
    expect(toGrpcError(new LeaderChangedError(0n))).toEqual(unknown);
    const rebuilt = errorFromCode("RAFT_LEADER_CHANGED", "", 3n);
    expect(rebuilt).toBeInstanceOf(LeaderChangedError);
    expect(toGrpcError(rebuilt)).toEqual(unknown);
  });
});
