import { status } from "@grpc/grpc-js";
import {
  errorFromCode,
  LeaderChangedError,
  NotLeaderError,
  QuorumAtRiskError,
  TransfereeUnreachableError,
  UnhealthyClusterError,
} from "@photoncloud/raft";
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

  it("answers a transfer to a silent member with etcd's leader-transfer timeout, word for word", () => {
    // Proves MoveLeader's refusal reads as etcd's (which answers it once the transfer times out),
    // exactly (etcd's Go client matches the whole text), also when rebuilt from its code after
    // forwarding. The reason is logged, not sent.
    const direct = new TransfereeUnreachableError(0xan, 400);
    const rebuilt = errorFromCode("RAFT_TRANSFEREE_UNREACHABLE", direct.message, 0n);
    for (const err of [direct, rebuilt]) {
      expect(toGrpcError(err)).toEqual({
        code: status.UNAVAILABLE,
        details: "etcdserver: request timed out, leader transfer took too long",
      });
    }
    expect(direct.message).toMatch(/member a has not been heard from within 400 ms/);
  });

  it("refuses a reconfiguration with members out of reach as etcd's unhealthy cluster, word for word", () => {
    // Proves an etcd client sees etcd's Unavailable "unhealthy cluster" (which it may retry) when
    // voters are out of reach, directly and when rebuilt after forwarding, and "not enough started
    // members" for a change no quorum could survive: etcd's exact texts, which etcd's Go client
    // turns into its typed errors.
    const why = "adding voter 5 needs every voter reachable, and 2 is not";
    for (const err of [new UnhealthyClusterError(why), errorFromCode("RAFT_UNHEALTHY_CLUSTER", why, 0n)]) {
      expect(err).toBeInstanceOf(QuorumAtRiskError);
      expect(toGrpcError(err)).toEqual({
        code: status.UNAVAILABLE,
        details: "etcdserver: unhealthy cluster",
      });
    }
    expect(toGrpcError(new QuorumAtRiskError("removing voter 1 would leave no voters"))).toEqual({
      code: status.FAILED_PRECONDITION,
      details: "etcdserver: re-configuration failed due to not enough started members",
    });
  });
});
