// etcdserverpb.Lease. Grant and revoke go through the log; keep-alive and time-to-live are answered
// from the lessor, whose expiry clock runs on the leader (a follower relays them there).
import { type ClientDuplexStream, type ServerDuplexStream, type ServiceError, status } from "@grpc/grpc-js";
import type { etcd } from "@photoncloud/chainfire-api";
import { type GrpcStatus, grpcError as kitGrpcError } from "@photoncloud/daemon";
import { chainfireError } from "../errors.js";
import { type EtcdApiContext, proposeCommand, raiseNoSpace, randomId63, responseHeader } from "./context.js";
import { grpcError, unary } from "./grpc-util.js";
import { requiresLeader, watchForLeaderLoss } from "./require-leader.js";

export function leaseHandlers(ctx: EtcdApiContext): etcd.LeaseServer {
  const renewals = new RenewalLog(ctx);
  return {
    leaseGrant: unary((req: etcd.LeaseGrantRequest) => grant(ctx, req)),
    leaseRevoke: unary(async (req: etcd.LeaseRevokeRequest) => {
      const result = (await proposeCommand(ctx, { leaseRevoke: req })).leaseRevoke!;
      return { header: responseHeader(ctx, result.header!.revision) };
    }),
    leaseKeepAlive: (call) => keepAlive(ctx, renewals, call),
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

/** What etcd's quota counts for a lease (its leaseOverhead). */
const LEASE_COST_BYTES = 64;

export async function grant(
  ctx: EtcdApiContext,
  req: etcd.LeaseGrantRequest,
): Promise<etcd.LeaseGrantResponse> {
  // Over the quota a grant raises the NOSPACE alarm, as a put does (etcd's quotaLeaseServer).
  if (!ctx.store.quotaAvailable(LEASE_COST_BYTES)) return raiseNoSpace(ctx);
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
  const leader = ctx.forwarding?.leaseClient() ?? null;
  if (leader !== null) {
    // Only the leader's lessor counts the remaining time down.
    // The leader's answer, in this member's header with its revision (etcd's follower fills it so).
    return new Promise((resolve, reject) => {
      leader.leaseTimeToLive(req, (err, res) =>
        err
          ? reject(forwardedError(err))
          : resolve({
              ...res,
              header: responseHeader(ctx, ctx.store.currentRevision()),
            }),
      );
    });
  }
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

type KeepAliveCall = ServerDuplexStream<etcd.LeaseKeepAliveRequest, etcd.LeaseKeepAliveResponse>;

/** Most renewals recorded by one proposal. */
const RENEWALS_PER_PROPOSAL_MAX = 1000;

/**
 * Records renewals through the log before they are answered: a lease checkpoint with remaining TTL
 * 0, which tells whichever member leads next to count the lease down from its full TTL. Only then
 * may a client count on it. A leader cut off from the others cannot record one, so it cannot promise
 * a lease the others have already counted down (they elect a leader, which starts from what the log
 * says, while the cut-off one still believes it leads). The renewals of one event-loop turn share
 * a proposal.
 */
class RenewalLog {
  private pending: { ids: Set<bigint>; recorded: Promise<void> } | null = null;

  constructor(private readonly ctx: EtcdApiContext) {}

  record(id: bigint): Promise<void> {
    if (this.pending === null) {
      const ids = new Set<bigint>();
      const recorded = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        this.pending = null;
        const all = [...ids];
        const proposals: Promise<unknown>[] = [];
        for (let at = 0; at < all.length; at += RENEWALS_PER_PROPOSAL_MAX) {
          const checkpoints = all
            .slice(at, at + RENEWALS_PER_PROPOSAL_MAX)
            .map((ID) => ({ ID, remainingTTL: 0n }));
          proposals.push(proposeCommand(this.ctx, { leaseCheckpoint: { checkpoints } }));
        }
        await Promise.all(proposals);
      });
      this.pending = { ids, recorded };
    }
    this.pending.ids.add(id);
    return this.pending.recorded;
  }
}

/**
 * Keep-alives renew the leader's expiry clock. On the leader they are answered here, once the
 * renewal is recorded through the log; on a follower the stream is relayed to the leader, and ends
 * with an error if the leader goes away (etcd clients then open a new stream, which reaches the new
 * leader).
 */
function keepAlive(ctx: EtcdApiContext, renewals: RenewalLog, call: KeepAliveCall): void {
  let upstream: ClientDuplexStream<etcd.LeaseKeepAliveRequest, etcd.LeaseKeepAliveResponse> | null = null;
  let ended = false;
  // A client that requires a leader hears "no leader" once this member has lost it (as etcd ends it).
  const stopLeaderCheck = requiresLeader(call)
    ? watchForLeaderLoss(ctx, () => finish(grpcError(chainfireError("NO_LEADER"))))
    : null;
  const finish = (err?: ServiceError) => {
    if (ended) return;
    ended = true;
    stopLeaderCheck?.();
    upstream?.cancel();
    if (err) call.emit("error", err);
    else call.end();
  };
  call.on("data", (req: etcd.LeaseKeepAliveRequest) => {
    if (ended) return;
    let leader: etcd.LeaseClient | null;
    try {
      leader = upstream === null ? (ctx.forwarding?.leaseClient() ?? null) : null;
    } catch (err) {
      return finish(grpcError(err));
    }
    if (upstream === null && leader === null) {
      answerHere(req.ID);
      return;
    }
    if (upstream === null && leader !== null) upstream = relay(ctx, leader, call, finish);
    upstream!.write(req);
  });
  // An unknown lease answers TTL 0, which clients read as "expired". A lease whose time is up is
  // not renewed: as etcd, the answer (TTL 0) waits until its revocation is applied, so a client
  // told its lease is gone finds its keys gone too. Should this member stop leading first, the
  // stream ends with "no leader" and the client's next stream reaches the new leader.
  const answerHere = (id: bigint) => {
    const lessor = ctx.store.lessor;
    const renewal = lessor.renew(id, ctx.nowMs());
    if (renewal === "expired") {
      void lessor.whenSettled(id).then(() => {
        if (ended) return;
        if (lessor.get(id) !== undefined && !lessor.isPrimary) finish(grpcError(chainfireError("NO_LEADER")));
        else answerHere(id);
      });
      return;
    }
    const answer = (TTL: bigint) => {
      if (!ended) call.write({ header: responseHeader(ctx, ctx.store.currentRevision()), ID: id, TTL });
    };
    if (renewal === "not-found") return answer(0n);
    // Answered in order: the renewals of a stream are recorded by proposals applied in order. A
    // lease revoked or expired by an entry before the record is gone: TTL 0.
    renewals.record(id).then(
      () => answer(lessor.get(id) === undefined ? 0n : renewal),
      (err: unknown) => finish(grpcError(err)),
    );
  };
  call.on("end", () => finish());
  call.on("error", () => finish());
  call.on("cancelled", () => finish());
  void ctx.shuttingDown?.then(() => finish());
}

function relay(
  ctx: EtcdApiContext,
  leader: etcd.LeaseClient,
  call: KeepAliveCall,
  finish: (err?: ServiceError) => void,
): ClientDuplexStream<etcd.LeaseKeepAliveRequest, etcd.LeaseKeepAliveResponse> {
  const upstream = leader.leaseKeepAlive();
  // The leader renews; the answer is this member's, as etcd's follower answers a keep-alive itself.
  upstream.on("data", (res: etcd.LeaseKeepAliveResponse) =>
    call.write({ ...res, header: responseHeader(ctx, ctx.store.currentRevision()) }),
  );
  upstream.on("error", (err: ServiceError) => finish(forwardedError(err)));
  upstream.on("end", () => finish());
  return upstream;
}

/** A leader's answer keeps its status and text; a broken connection to it reads as "no leader". */
function forwardedError(err: ServiceError): ServiceError {
  if (err.code === status.UNAVAILABLE || err.code === status.CANCELLED)
    return grpcError(chainfireError("NO_LEADER"));
  return kitGrpcError(err.code as GrpcStatus, err.details);
}
