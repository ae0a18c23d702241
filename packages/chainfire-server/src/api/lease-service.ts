// etcdserverpb.Lease. Grant and revoke go through the log; keep-alive and time-to-live are answered
// from the lessor, whose expiry clock runs on the leader (the daemon forwards them there).
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { etcd } from "@photoncloud/chainfire-api";
import { chainfireError } from "../errors.js";
import { type EtcdApiContext, proposeCommand, randomId63, responseHeader } from "./context.js";
import { unary } from "./grpc-util.js";

export function leaseHandlers(ctx: EtcdApiContext): etcd.LeaseServer {
  return {
    leaseGrant: unary((req: etcd.LeaseGrantRequest) => grant(ctx, req)),
    leaseRevoke: unary(async (req: etcd.LeaseRevokeRequest) => {
      const result = (await proposeCommand(ctx, { leaseRevoke: req })).leaseRevoke!;
      return { header: responseHeader(ctx, result.header!.revision) };
    }),
    leaseKeepAlive: (call) => keepAlive(ctx, call),
    leaseTimeToLive: unary((req: etcd.LeaseTimeToLiveRequest) => timeToLive(ctx, req)),
    leaseLeases: unary(async () => {
      const ids = await ctx.replicated.linearizableRead(() => ctx.store.lessor.ids());
      return {
        header: responseHeader(ctx, ctx.store.currentRevision()),
        leases: ids.map((ID) => ({ ID })),
      };
    }),
  };
}

async function grant(ctx: EtcdApiContext, req: etcd.LeaseGrantRequest): Promise<etcd.LeaseGrantResponse> {
  if (!ctx.store.quotaAvailable(16)) throw chainfireError("NO_SPACE");
  // The proposer picks the ID (as etcd does) so every member applies the same one.
  const request = { TTL: req.TTL, ID: req.ID === 0n ? randomId63() : req.ID };
  const result = (await proposeCommand(ctx, { leaseGrant: request })).leaseGrant!;
  result.header = responseHeader(ctx, result.header!.revision);
  return result;
}

async function timeToLive(
  ctx: EtcdApiContext,
  req: etcd.LeaseTimeToLiveRequest,
): Promise<etcd.LeaseTimeToLiveResponse> {
  return ctx.replicated.linearizableRead(() => {
    const header = responseHeader(ctx, ctx.store.currentRevision());
    const lease = ctx.store.lessor.get(req.ID);
    // etcd answers an unknown lease with TTL -1 rather than an error; etcdctl prints "already expired".
    if (lease === undefined) return { header, ID: req.ID, TTL: -1n, grantedTTL: 0n, keys: [] };
    const keys = req.keys ? [...lease.keys].sort().map((key) => Buffer.from(key, "latin1")) : [];
    const TTL = ctx.store.lessor.remainingSeconds(lease, ctx.nowMs());
    return { header, ID: req.ID, TTL, grantedTTL: lease.ttlSeconds, keys };
  });
}

function keepAlive(
  ctx: EtcdApiContext,
  call: ServerDuplexStream<etcd.LeaseKeepAliveRequest, etcd.LeaseKeepAliveResponse>,
): void {
  call.on("data", (req: etcd.LeaseKeepAliveRequest) => {
    // An unknown lease answers TTL 0, which clients read as "expired".
    const ttl = ctx.store.lessor.renew(req.ID, ctx.nowMs()) ?? 0n;
    call.write({ header: responseHeader(ctx, ctx.store.currentRevision()), ID: req.ID, TTL: ttl });
  });
  call.on("end", () => call.end());
  call.on("error", () => call.end());
  call.on("cancelled", () => call.end());
}
