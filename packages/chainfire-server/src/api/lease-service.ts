// etcdserverpb.Lease. Grant and revoke go through the log; keep-alive and time-to-live are answered
// from the lessor, whose expiry clock runs on the leader (a follower relays them there).
import {
  type ClientDuplexStream,
  Metadata,
  type ServerDuplexStream,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
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
  const forwarding = ctx.forwarding;
  const leader = forwarding?.leaseClient() ?? null;
  if (forwarding !== undefined && leader !== null) {
    // Only the leader's lessor counts the remaining time down.
    // The leader's answer, in this member's header with its revision (etcd's follower fills it so).
    // Within etcd's request timeout: a leader that stopped answering must not hold the call.
    const deadline = Date.now() + forwarding.relayTimeoutMs;
    return new Promise((resolve, reject) => {
      leader.leaseTimeToLive(req, new Metadata(), { deadline }, (err, res) =>
        err
          ? reject(err.code === status.DEADLINE_EXCEEDED ? chainfireError("TIMEOUT") : forwardedError(err))
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

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Most renewals recorded by one proposal. */
const RENEWALS_PER_PROPOSAL_MAX = 1000;

/**
 * Records renewals through the log before they are answered: a lease checkpoint with remaining TTL
 * 0, which tells whichever member leads next to count the lease down from its full TTL. Only then
 * may a client count on it. A leader cut off from the others cannot record one, so it cannot promise
 * a lease the others have already counted down (they elect a leader, which starts from what the log
 * says, while the cut-off one still believes it leads). A renewal made as the leader of a term is
 * proposed for that term only (Replicated.propose's leaderTerm): one that lost the leadership
 * meanwhile does not have it forwarded. One proposal per term is in flight at a time; the renewals
 * that come meanwhile share the next.
 */
class RenewalLog {
  /** Renewals waiting for the next proposal, by the term they were made in (0n: none known). */
  private readonly next = new Map<bigint, { ids: Set<bigint>; done: Deferred }>();
  /**
   * The terms with a record in flight. One per term: a record of an earlier term that may never
   * be answered (its leader lost the log position) holds up none of a later term's renewals.
   */
  private readonly inFlight = new Set<bigint>();
  private scheduled = false;

  constructor(private readonly ctx: EtcdApiContext) {}

  record(id: bigint, term: bigint): Promise<void> {
    let batch = this.next.get(term);
    if (batch === undefined) {
      batch = { ids: new Set(), done: deferred() };
      this.next.set(term, batch);
      if (!this.inFlight.has(term)) this.schedule();
    }
    batch.ids.add(id);
    return batch.done.promise;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    for (const [term, { ids, done }] of [...this.next]) {
      if (this.inFlight.has(term)) continue;
      this.next.delete(term);
      this.inFlight.add(term);
      void this.propose(term, [...ids])
        .then(done.resolve, done.reject)
        .finally(() => {
          this.inFlight.delete(term);
          if (this.next.has(term)) this.schedule();
        });
    }
  }

  private async propose(term: bigint, ids: bigint[]): Promise<void> {
    const proposals: Promise<unknown>[] = [];
    for (let at = 0; at < ids.length; at += RENEWALS_PER_PROPOSAL_MAX) {
      const checkpoints = ids
        .slice(at, at + RENEWALS_PER_PROPOSAL_MAX)
        .map((ID) => ({ ID, remainingTTL: 0n }));
      proposals.push(
        proposeCommand(
          this.ctx,
          { leaseCheckpoint: { checkpoints } },
          term === 0n ? {} : { leaderTerm: term },
        ),
      );
    }
    await Promise.all(proposals);
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
  let upstreamEnded = false;
  /** Those waiting for the leader's answers to the requests relayed to it, in order. */
  const relayed: ((res: etcd.LeaseKeepAliveResponse) => void)[] = [];
  let ended = false;
  // Requests received and not answered yet. A client that half-closes after its last request still
  // gets every answer, as etcd answers each request before it reads the next.
  let owed = 0;
  let halfClosed = false;
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
  const finishIfDone = () => {
    if (owed === 0 && halfClosed && (upstream === null || upstreamEnded)) finish();
  };
  // Answers go out in the order of the requests, as etcd answers each before it reads the next:
  // those answered here and those relayed to the leader alike (the leader changed mid-stream).
  let answered: Promise<void> = Promise.resolve();
  call.on("data", (req: etcd.LeaseKeepAliveRequest) => {
    if (ended) return;
    let leader: etcd.LeaseClient | null;
    try {
      leader = upstream === null ? (ctx.forwarding?.leaseClient() ?? null) : null;
    } catch (err) {
      return finish(grpcError(err));
    }
    let ttl: Promise<bigint>;
    if (upstream === null && leader === null) {
      ttl = renew(req.ID);
    } else {
      if (upstream === null && leader !== null) upstream = relay(leader);
      ttl = new Promise((resolve) => relayed.push((res) => resolve(res.TTL)));
      upstream!.write(req);
    }
    owed++;
    // Observed below once the answers before it are out; until then a failure must not count as
    // unhandled (the daemon stops on one).
    ttl.catch(() => {});
    answered = answered
      .then(() => ttl)
      .then(
        (TTL) => {
          if (ended) return;
          // A relayed answer, too, carries this member's header, as etcd's follower fills it.
          call.write({ header: responseHeader(ctx, ctx.store.currentRevision()), ID: req.ID, TTL });
          owed--;
          finishIfDone();
        },
        (err: unknown) => finish(grpcError(err)),
      )
      .catch(() => {
        // The stream could not take the answer: it is gone, and there is no one to tell.
      });
  });
  /** The stream to the leader: its answers, in order, are those of the requests relayed to it. */
  const relay = (leader: etcd.LeaseClient) => {
    const up = leader.leaseKeepAlive();
    up.on("data", (res: etcd.LeaseKeepAliveResponse) => relayed.shift()?.(res));
    up.on("error", (err: ServiceError) => finish(forwardedError(err)));
    up.on("end", () => {
      upstreamEnded = true;
      // Ended with requests it never answered: as a broken connection to it.
      if (relayed.length > 0) finish(grpcError(chainfireError("NO_LEADER")));
      else finishIfDone();
    });
    return up;
  };
  // The TTL to answer: the granted one once the renewal is recorded (see RenewalLog), or 0 for a
  // lease that does not exist (clients read it as "expired"), or that an entry before the record
  // revoked. A lease whose time is up is not renewed: as etcd, the answer (TTL 0) waits until its
  // revocation is applied, so a client told its lease is gone finds its keys gone too. Should this
  // member stop leading first, the stream ends with "no leader" and the client's next stream
  // reaches the new leader.
  const renew = async (id: bigint): Promise<bigint> => {
    const lessor = ctx.store.lessor;
    for (;;) {
      const term = lessor.term;
      const renewal = lessor.renew(id, ctx.nowMs());
      if (renewal === "not-found") return 0n;
      if (renewal !== "expired") {
        await renewals.record(id, term);
        return lessor.get(id) === undefined ? 0n : renewal;
      }
      await lessor.whenSettled(id);
      if (ended) return 0n;
      if (lessor.get(id) !== undefined && !lessor.isPrimary) throw chainfireError("NO_LEADER");
    }
  };
  call.on("end", () => {
    halfClosed = true;
    // A relayed stream ends once the leader has answered what it was sent and ended its side.
    upstream?.end();
    finishIfDone();
  });
  call.on("error", () => finish());
  call.on("cancelled", () => finish());
  void ctx.shuttingDown?.then(() => finish());
}

/** A leader's answer keeps its status and text; a broken connection to it reads as "no leader". */
function forwardedError(err: ServiceError): ServiceError {
  if (err.code === status.UNAVAILABLE || err.code === status.CANCELLED)
    return grpcError(chainfireError("NO_LEADER"));
  return kitGrpcError(err.code as GrpcStatus, err.details);
}
