// etcdserverpb.Maintenance: the parts served by one member's own state (Status, Hash, HashKV, Alarm,
// Defragment, Snapshot). MoveLeader needs the Raft layer and answers UNIMPLEMENTED until wired.
import { createHash } from "node:crypto";
import { type ServerWritableStream, status } from "@grpc/grpc-js";
import { etcd } from "@photoncloud/chainfire-api";
import { errorSpecs } from "../errors.js";
import type { ClientImage } from "../mvcc/client-image.js";
import { type EtcdApiContext, proposeCommand, responseHeader } from "./context.js";
import { grpcError, unary } from "./grpc-util.js";

const SNAPSHOT_CHUNK_BYTES = 32 * 1024;

export function maintenanceHandlers(ctx: EtcdApiContext): etcd.MaintenanceServer {
  return {
    alarm: unary((req: etcd.AlarmRequest) => alarm(ctx, req)),
    status: unary(() => statusOf(ctx)),
    defragment: unary(async () => {
      await ctx.store.defragment();
      // etcd 3.4 answers Defragment, MoveLeader and Alarm without a header.
      return { header: undefined };
    }),
    hash: unary(async () => {
      const { hash, revision } = await ctx.store.hash();
      return { header: responseHeader(ctx, revision), hash };
    }),
    hashKv: unary(async (req: etcd.HashKVRequest) => {
      const result = await ctx.store.hashKV(req.revision);
      return {
        header: responseHeader(ctx, result.revision),
        hash: result.hash,
        compactRevision: result.compactRevision,
      };
    }),
    snapshot: (call) => {
      void streamSnapshot(ctx, call);
    },
    moveLeader: (_call, callback) => {
      callback({ code: status.UNIMPLEMENTED, details: "chainfire: move-leader needs the Raft layer" });
    },
  };
}

/**
 * Like etcd: the database image in 32-KiB chunks, each with the bytes still to come, then the
 * sha256 of the image as a last message of its own. The image is made off the event loop into a
 * file, as a Raft snapshot's is (a large store serialized here would stall this member long
 * enough for its followers to start an election), and read from that file as the client takes
 * it: a chunk is read only once the stream has room for it.
 */
async function streamSnapshot(
  ctx: EtcdApiContext,
  call: ServerWritableStream<etcd.SnapshotRequest, etcd.SnapshotResponse>,
): Promise<void> {
  let image: ClientImage | undefined;
  try {
    image = await ctx.store.clientImage();
    if (call.cancelled) return;
    // No header, as etcd's Snapshot sends none: only the bytes and how many remain.
    const hash = createHash("sha256");
    let sent = 0;
    for (const blob of image.pieces(SNAPSHOT_CHUNK_BYTES)) {
      hash.update(blob);
      sent += blob.length;
      const room = call.write({ header: undefined, remainingBytes: BigInt(image.sizeBytes - sent), blob });
      if (!room) await drainedOrGone(call);
      if (call.cancelled) return;
    }
    call.write({ header: undefined, remainingBytes: 0n, blob: hash.digest() });
    call.end();
  } catch (err) {
    if (!call.cancelled) call.emit("error", grpcError(err));
  } finally {
    image?.release();
  }
}

/** Resolves once the stream has room again, or the client has gone. */
function drainedOrGone(
  call: ServerWritableStream<etcd.SnapshotRequest, etcd.SnapshotResponse>,
): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const event of ["drain", "cancelled", "close", "error"]) call.off(event, done);
      resolve();
    };
    for (const event of ["drain", "cancelled", "close", "error"]) call.once(event, done);
  });
}

function statusOf(ctx: EtcdApiContext): etcd.StatusResponse {
  const leader = ctx.member.leaderId();
  const alarms = ctx.store.alarms().map((a) => `memberID:${a.memberID} alarm:${etcd.AlarmType[a.alarm]} `);
  return {
    header: responseHeader(ctx, ctx.store.currentRevision()),
    version: ctx.version,
    dbSize: ctx.store.dbSizeBytes(),
    leader,
    raftIndex: ctx.member.raftIndex(),
    raftTerm: ctx.member.raftTerm(),
    raftAppliedIndex: ctx.member.raftAppliedIndex?.() ?? ctx.store.appliedIndex(),
    // As etcd's: a member that knows no leader says so first, then its active alarms.
    errors: leader === 0n ? [errorSpecs.NO_LEADER.message, ...alarms] : alarms,
    dbSizeInUse: ctx.store.dbSizeInUseBytes(),
    isLearner: ctx.member.isLearner(),
  };
}

async function alarm(ctx: EtcdApiContext, req: etcd.AlarmRequest): Promise<etcd.AlarmResponse> {
  if (req.action === etcd.AlarmRequest_AlarmAction.GET) {
    const alarms = await ctx.replicated.linearizableRead(() => ctx.store.alarms(req.alarm));
    return { header: undefined, alarms };
  }
  const result = (await proposeCommand(ctx, { alarm: req })).alarm!;
  return { header: undefined, alarms: result.alarms };
}
