// etcd's server-side Lock (v3lockpb) and Election (v3electionpb) services. etcd runs its client
// library's lock and election recipes inside the server, against its own KV, Lease and Watch; these
// handlers run the same recipes against this member's: a lock or a candidacy is a key under
// `<name>/` carrying a lease, and the holder is the key with the smallest create revision. Waiting is
// a watch on the hub for the deletion of the next older key. As in etcd, every error reaches the
// client as UNKNOWN with etcd's text (etcd's handlers return their client's errors unmapped).
import { type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, status } from "@grpc/grpc-js";
import { etcd, mvccpb, type v3election, type v3lock } from "@photoncloud/chainfire-api";
import { type GrpcStatus, grpcError as kitGrpcError } from "@photoncloud/daemon";
import { chainfireError, toGrpcError } from "../errors.js";
import { prefixEnd } from "../mvcc/key-range.js";
import { EMPTY, deleteRangeRequest, putRequest, rangeRequest } from "../mvcc/messages.js";
import type { Watcher } from "../watch/watch-hub.js";
import { type EtcdApiContext, responseHeader } from "./context.js";
import { deleteRange, range, txn } from "./kv-service.js";
import { grant } from "./lease-service.js";
import { requiresLeader, watchForLeaderLoss } from "./require-leader.js";

/** The TTL of the lease a Lock or Campaign without one is given (etcd's session default). */
const SESSION_TTL_S = 60n;

/** etcd's concurrency errors, and the text of what it returns for a missing leader key. */
class ElectionError extends Error {}
const NO_LEADER = "election: no leader";
const NOT_LEADER = "election: not leader";
/** clientv3's ErrSessionExpired: a Lock's own key went (its lease ended) before the lock was its. */
const SESSION_EXPIRED = "session expired";
const MISSING_LEADER_KEY = '"leader" field must be provided';

function unknown(err: unknown) {
  const details = err instanceof ElectionError ? err.message : toGrpcError(err).details;
  return kitGrpcError(status.UNKNOWN as GrpcStatus, details);
}

/** The calls in progress per server, aborted together when it shuts down (one hook, not one per call). */
const inProgress = new WeakMap<EtcdApiContext, Set<AbortController>>();

/** An AbortController for one call: aborted when the client cancels it or the server shuts down. */
function callAbort(ctx: EtcdApiContext, call: { on(event: "cancelled", fn: () => void): unknown }) {
  let calls = inProgress.get(ctx);
  if (calls === undefined) {
    const set = new Set<AbortController>();
    inProgress.set(ctx, (calls = set));
    void ctx.shuttingDown?.then(() => {
      for (const abort of set) abort.abort(chainfireError("STOPPED"));
    });
  }
  const abort = new AbortController();
  calls.add(abort);
  call.on("cancelled", () => abort.abort(new Error("context canceled")));
  return { signal: abort.signal, done: () => calls.delete(abort) };
}

/** A unary handler that may wait: aborted when the client cancels or the server shuts down. */
function waiting<Req, Res>(
  ctx: EtcdApiContext,
  fn: (request: Req, signal: AbortSignal) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    const { signal, done } = callAbort(ctx, call);
    fn(call.request, signal).then(
      (response) => {
        done();
        callback(null, response);
      },
      (err: unknown) => {
        done();
        callback(unknown(err));
      },
    );
  };
}

/** `<name>/`: the prefix of a lock's or an election's keys. */
function prefixOf(name: Buffer): Buffer {
  return Buffer.concat([name, Buffer.from("/")]);
}

/** The oldest (`ASCEND`) or newest key under `prefix`, as clientv3's WithFirstCreate/WithLastCreate. */
function byCreate(prefix: Buffer, order: etcd.RangeRequest_SortOrder, maxCreateRevision = 0n) {
  return rangeRequest({
    key: prefix,
    rangeEnd: prefixEnd(prefix),
    sortTarget: etcd.RangeRequest_SortTarget.CREATE,
    sortOrder: order,
    limit: 1n,
    maxCreateRevision,
  });
}

function createRevisionIs(key: Buffer, createRevision: bigint): etcd.Compare {
  return {
    result: etcd.Compare_CompareResult.EQUAL,
    target: etcd.Compare_CompareTarget.CREATE,
    key,
    createRevision,
    rangeEnd: EMPTY,
  };
}

/** The lease a request names, or a new one as etcd's session grants when it names none. */
async function sessionLease(ctx: EtcdApiContext, lease: bigint): Promise<bigint> {
  if (lease !== 0n) return lease;
  return (await grant(ctx, { TTL: SESSION_TTL_S, ID: 0n })).ID;
}

/**
 * Watches `key` (and `rangeEnd`) from `startRevision`, handing each delivery to `onEvents` until it
 * returns true. Rejects when the start is compacted or `signal` aborts. While `congested` says so,
 * deliveries are refused: the hub keeps none of them and reads them again from storage once
 * resumed (see WatchHub), so a client that stops reading costs no memory here.
 */
function watchUntil(
  ctx: EtcdApiContext,
  key: Buffer,
  rangeEnd: Buffer,
  startRevision: bigint,
  onEvents: (events: mvccpb.Event[], revision: bigint) => boolean,
  signal: AbortSignal,
  congested: () => boolean = () => false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      ctx.hub.cancel(watcher);
      signal.removeEventListener("abort", onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onAbort = () => finish(signal.reason);
    const spec = { key, rangeEnd, startRevision, prevKv: false, noPut: false, noDelete: false };
    // The hub calls the sink from a later turn, never from within watch().
    const watcher: Watcher = ctx.hub.watch(
      0n,
      spec,
      (_w, delivery) => {
        if (done) return true;
        if (congested()) return false;
        if (delivery.compactRevision !== undefined) {
          finish(chainfireError("COMPACTED"));
        } else if (onEvents(delivery.events, delivery.revision)) finish();
        return true;
      },
      { blocked: () => !done && congested() },
    );
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** A waiter's own key under the prefix, and what it is told when the key goes while it waits. */
interface OwnKey {
  readonly key: Buffer;
  readonly createRevision: bigint;
  readonly lost: string;
}

/**
 * clientv3's waitDeletes: returns once no key under `prefix` created before the waiter's own is
 * left, waiting for the deletion of the newest such key each time. A waiter whose own key goes
 * meanwhile (its lease expired or was revoked) fails at once with `own.lost`, and so does one whose
 * key is not the one it created when the wait ends: it must not be told it holds the lock, or leads,
 * while the waiter after it takes its place. (etcd 3.4 answered such a Lock as held once the keys
 * before it went; its client checks its own key at the end since 3.5.)
 */
async function waitDeletes(
  ctx: EtcdApiContext,
  prefix: Buffer,
  own: OwnKey,
  signal: AbortSignal,
): Promise<etcd.ResponseHeader> {
  for (;;) {
    const older = await range(
      ctx,
      byCreate(prefix, etcd.RangeRequest_SortOrder.DESCEND, own.createRevision - 1n),
    );
    // A client gone meanwhile does not get the lock or leadership (its caller undoes its key).
    signal.throwIfAborted();
    // Read after `older`: a deletion of the waiter's key before this read shows here, one after it
    // in the watch below, which starts at `older`'s revision.
    const mine = await range(ctx, rangeRequest({ key: own.key }));
    signal.throwIfAborted();
    if (mine.kvs[0]?.createRevision !== own.createRevision) throw new ElectionError(own.lost);
    const last = older.kvs[0];
    // As clientv3's Mutex, the header of the read of its own key.
    if (last === undefined) return mine.header!;
    if (await deletedFirst(ctx, own.key, last.key, older.header!.revision, signal)) {
      throw new ElectionError(own.lost);
    }
  }
}

/**
 * Watches `mine` and `other` from `startRevision` until one is deleted: true when it is `mine`. Two
 * single-key watches, so a waiter wakes for the deletion it waits for only, not for every waiter
 * joining or leaving the queue.
 */
async function deletedFirst(
  ctx: EtcdApiContext,
  mine: Buffer,
  other: Uint8Array,
  startRevision: bigint,
  signal: AbortSignal,
): Promise<boolean> {
  const both = new AbortController();
  const either = AbortSignal.any([signal, both.signal]);
  const deleted = (key: Buffer) =>
    watchUntil(
      ctx,
      key,
      EMPTY,
      startRevision,
      (events) => events.some((e) => e.type === mvccpb.Event_EventType.DELETE),
      either,
    ).then(() => key === mine);
  try {
    return await Promise.race([deleted(mine), deleted(Buffer.from(other))]);
  } finally {
    both.abort(new Error("the other deletion came first"));
  }
}

export function lockHandlers(ctx: EtcdApiContext): v3lock.LockServer {
  return {
    lock: waiting(ctx, (req: v3lock.LockRequest, signal) => lock(ctx, req, signal)),
    unlock: waiting(ctx, async (req: v3lock.UnlockRequest) => {
      const res = await deleteRange(ctx, deleteRangeRequest({ key: req.key }));
      return { header: res.header };
    }),
  };
}

/** A session's key under `<name>/`: `<name>/<lease in hex>`, with the lease it is under. */
async function sessionKey(ctx: EtcdApiContext, name: Buffer, requestLease: bigint) {
  const lease = await sessionLease(ctx, requestLease);
  const prefix = prefixOf(name);
  return { lease, prefix, key: Buffer.concat([prefix, Buffer.from(lease.toString(16))]) };
}

/** clientv3's Mutex.Lock, with the lease of the request. */
async function lock(
  ctx: EtcdApiContext,
  req: v3lock.LockRequest,
  signal: AbortSignal,
): Promise<v3lock.LockResponse> {
  const { lease, prefix, key } = await sessionKey(ctx, req.name, req.lease);
  const owner = { requestRange: byCreate(prefix, etcd.RangeRequest_SortOrder.ASCEND) };
  const res = await txn(ctx, {
    compare: [createRevisionIs(key, 0n)],
    success: [{ requestPut: putRequest({ key, value: EMPTY, lease }) }, owner],
    failure: [{ requestRange: rangeRequest({ key }) }, owner],
  });
  const mine = res.succeeded ? res.header!.revision : res.responses[0]!.responseRange!.kvs[0]!.createRevision;
  const first = res.responses[1]!.responseRange!.kvs[0];
  if (first === undefined || first.createRevision === mine) return { header: res.header, key };
  try {
    return {
      header: await waitDeletes(ctx, prefix, { key, createRevision: mine, lost: SESSION_EXPIRED }, signal),
      key,
    };
  } catch (err) {
    // As etcd's Mutex: a wait that failed gives its place in the queue back (the key it created
    // only: the same session may have queued again meanwhile).
    void resign(ctx, key, mine).catch(() => undefined);
    throw err;
  }
}

export function electionHandlers(ctx: EtcdApiContext): v3election.ElectionServer {
  return {
    campaign: waiting(ctx, (req: v3election.CampaignRequest, signal) => campaign(ctx, req, signal)),
    proclaim: waiting(ctx, async (req: v3election.ProclaimRequest) => {
      const leader = requireLeaderKey(req.leader);
      return { header: await proclaim(ctx, leader, await sessionLease(ctx, leader.lease), req.value) };
    }),
    leader: waiting(ctx, async (req: v3election.LeaderRequest) => {
      const res = await range(ctx, byCreate(prefixOf(req.name), etcd.RangeRequest_SortOrder.ASCEND));
      const kv = res.kvs[0];
      if (kv === undefined) throw new ElectionError(NO_LEADER);
      return { header: res.header, kv };
    }),
    observe: (call) => void observe(ctx, call),
    resign: waiting(ctx, async (req: v3election.ResignRequest) => {
      const leader = requireLeaderKey(req.leader);
      return { header: await resign(ctx, leader.key, leader.rev) };
    }),
  };
}

function requireLeaderKey(leader: v3election.LeaderKey | undefined): v3election.LeaderKey {
  if (leader === undefined) throw new ElectionError(MISSING_LEADER_KEY);
  return leader;
}

/** clientv3's Election.Campaign: the candidate's key, then the wait for every older candidate. */
async function campaign(
  ctx: EtcdApiContext,
  req: v3election.CampaignRequest,
  signal: AbortSignal,
): Promise<v3election.CampaignResponse> {
  const { lease, prefix, key } = await sessionKey(ctx, req.name, req.lease);
  const res = await txn(ctx, {
    compare: [createRevisionIs(key, 0n)],
    success: [{ requestPut: putRequest({ key, value: req.value, lease }) }],
    failure: [{ requestRange: rangeRequest({ key }) }],
  });
  let rev = res.header!.revision;
  if (!res.succeeded) {
    // Campaigning again under the same lease: the same place in the queue, with the new value.
    const kv = res.responses[0]!.responseRange!.kvs[0]!;
    rev = kv.createRevision;
    if (!kv.value.equals(req.value)) {
      try {
        await proclaim(ctx, { name: req.name, key, rev, lease }, lease, req.value);
      } catch (err) {
        await resign(ctx, key, rev).catch(() => undefined);
        throw err;
      }
    }
  }
  try {
    await waitDeletes(ctx, prefix, { key, createRevision: rev, lost: NOT_LEADER }, signal);
  } catch (err) {
    // A candidate whose client went away withdraws; one that failed otherwise keeps its key.
    if (signal.aborted) void resign(ctx, key, rev).catch(() => undefined);
    throw err;
  }
  return { header: res.header, leader: { name: req.name, key, rev, lease } };
}

async function proclaim(
  ctx: EtcdApiContext,
  leader: v3election.LeaderKey,
  lease: bigint,
  value: Buffer,
): Promise<etcd.ResponseHeader> {
  const res = await txn(ctx, {
    compare: [createRevisionIs(leader.key, leader.rev)],
    success: [{ requestPut: putRequest({ key: leader.key, value, lease }) }],
    failure: [],
  });
  if (!res.succeeded) throw new ElectionError(NOT_LEADER);
  return res.header!;
}

/** Deletes the leader's key if it is still the one created at `rev` (a no-op otherwise, as etcd's). */
async function resign(ctx: EtcdApiContext, key: Buffer, rev: bigint): Promise<etcd.ResponseHeader> {
  const res = await txn(ctx, {
    compare: [createRevisionIs(key, rev)],
    success: [{ requestDeleteRange: deleteRangeRequest({ key }) }],
    failure: [],
  });
  return res.header!;
}

/**
 * clientv3's Election.Observe: the leader now (or the first candidate to come), then each new value
 * of its key until it is deleted, then the next leader. Ends, as etcd's, without an error when its
 * reads or watches fail, when the client cancels, or when the server shuts down.
 */
async function observe(
  ctx: EtcdApiContext,
  call: ServerWritableStream<v3election.LeaderRequest, v3election.LeaderResponse>,
): Promise<void> {
  const called = callAbort(ctx, call);
  // A client that requires a leader (clientv3.WithRequireLeader) has the stream ended once this
  // member has gone without one, as etcd's stream interceptor cancels it: "context canceled".
  const leaderLost = new AbortController();
  const stopLeaderCheck = requiresLeader(call)
    ? watchForLeaderLoss(ctx, () => leaderLost.abort(new Error("context canceled")))
    : null;
  const signal = AbortSignal.any([called.signal, leaderLost.signal]);
  const prefix = prefixOf(call.request.name);
  // A client that stops reading: its stream's buffer fills, and the watches below wait for it to
  // drain instead of buffering every change (etcd's observer blocks on its stream the same way).
  let congested = false;
  const write = (response: v3election.LeaderResponse) => {
    if (!call.write(response)) congested = true;
  };
  call.on("drain", () => {
    congested = false;
    ctx.hub.resume();
  });
  try {
    while (!signal.aborted) {
      const res = await range(ctx, byCreate(prefix, etcd.RangeRequest_SortOrder.ASCEND));
      let kv = res.kvs[0];
      let header = res.header!;
      if (kv === undefined) {
        // No leader yet: the first put under the prefix (a deletion would make it spin).
        await watchUntil(
          ctx,
          prefix,
          prefixEnd(prefix),
          header.revision,
          (events) => {
            kv = events.find((e) => e.type === mvccpb.Event_EventType.PUT)?.kv;
            return kv !== undefined;
          },
          signal,
        );
        header = responseHeader(ctx, kv!.modRevision);
      }
      write({ header, kv });
      await watchUntil(
        ctx,
        kv!.key,
        EMPTY,
        header.revision + 1n,
        (events, revision) => {
          for (const e of events) {
            if (e.type === mvccpb.Event_EventType.DELETE) return true;
            write({ header: responseHeader(ctx, revision), kv: e.kv });
          }
          return false;
        },
        signal,
        () => congested,
      );
    }
  } catch {
    // Ends the stream below, as etcd's does on a failed read or watch.
  }
  called.done();
  stopLeaderCheck?.();
  if (call.cancelled) return;
  if (leaderLost.signal.aborted) call.emit("error", kitGrpcError(status.CANCELLED, "context canceled"));
  else call.end();
}
