// etcdserverpb.KV on the Replicated facade: writes are proposals, reads are served locally after a
// ReadIndex (or immediately when serializable), read-only txns never enter the log.
import type { etcd } from "@photoncloud/chainfire-api";
import { isReadOnlyTxn } from "../mvcc/store.js";
import { checkDeleteRange, checkPut, checkRange, checkTxn } from "../mvcc/txn-check.js";
import { type EtcdApiContext, proposeCommand, raiseNoSpace, responseHeader } from "./context.js";
import { unary } from "./grpc-util.js";

export function kvHandlers(ctx: EtcdApiContext): etcd.KVServer {
  return {
    range: unary((req: etcd.RangeRequest) => range(ctx, req)),
    put: unary((req: etcd.PutRequest) => put(ctx, req)),
    deleteRange: unary((req: etcd.DeleteRangeRequest) => deleteRange(ctx, req)),
    txn: unary((req: etcd.TxnRequest) => txn(ctx, req)),
    compact: unary((req: etcd.CompactionRequest) => compact(ctx, req)),
  };
}

export async function range(ctx: EtcdApiContext, req: etcd.RangeRequest): Promise<etcd.RangeResponse> {
  checkRange(req);
  const response = req.serializable
    ? ctx.replicated.serializableRead(() => ctx.store.range(req))
    : await ctx.replicated.linearizableRead(() => ctx.store.range(req));
  response.header = responseHeader(ctx, response.header!.revision);
  return response;
}

/** etcd checks the quota before proposing and raises the NOSPACE alarm through the log. */
async function checkQuota(ctx: EtcdApiContext, requestBytes: number): Promise<void> {
  if (ctx.store.quotaAvailable(requestBytes)) return;
  await raiseNoSpace(ctx);
}

/**
 * The hottest write: no async frame or extra promise turn when the quota allows it (the usual case).
 * As etcd's quota layer, the quota is asked first: over it, even a malformed put raises NOSPACE.
 */
function put(ctx: EtcdApiContext, req: etcd.PutRequest): Promise<etcd.PutResponse> {
  if (!ctx.store.quotaAvailable(putCost(req))) return raiseNoSpace(ctx);
  checkPut(req);
  return proposeCommand(ctx, { put: req }).then((r) => {
    const result = r.put!;
    result.header = responseHeader(ctx, result.header!.revision);
    return result;
  });
}

export async function deleteRange(
  ctx: EtcdApiContext,
  req: etcd.DeleteRangeRequest,
): Promise<etcd.DeleteRangeResponse> {
  checkDeleteRange(req);
  const result = (await proposeCommand(ctx, { deleteRange: req })).deleteRange!;
  result.header = responseHeader(ctx, result.header!.revision);
  return result;
}

export async function txn(ctx: EtcdApiContext, req: etcd.TxnRequest): Promise<etcd.TxnResponse> {
  // etcd's quota layer runs before the request's own checks, and lets a txn that puts nothing by.
  const cost = txnCost(req);
  if (cost > 0) await checkQuota(ctx, cost);
  checkTxn(req, ctx.store.maxTxnOps);
  let result: etcd.TxnResponse;
  if (isReadOnlyTxn(req)) {
    // As etcd: a txn whose every op is a serializable range (or that has no ops) is served from this
    // member's store without a ReadIndex, so it answers even without a quorum.
    result = isSerializableTxn(req)
      ? ctx.replicated.serializableRead(() => ctx.store.readTxn(req))
      : await ctx.replicated.linearizableRead(() => ctx.store.readTxn(req));
  } else {
    result = (await proposeCommand(ctx, { txn: req })).txn!;
  }
  result.header = responseHeader(ctx, result.header!.revision);
  return result;
}

function isSerializableTxn(req: etcd.TxnRequest): boolean {
  return [...req.success, ...req.failure].every((op) => op.requestRange?.serializable === true);
}

/** What etcd's quota charges for a key's metadata on top of its key and value (its kvOverhead). */
const KV_OVERHEAD_BYTES = 256;

export function putCost(req: etcd.PutRequest): number {
  return KV_OVERHEAD_BYTES + req.key.length + req.value.length;
}

/** etcd's costTxn: the dearer branch's puts (those of nested txns are not charged, as in etcd). */
export function txnCost(req: etcd.TxnRequest): number {
  const branch = (ops: etcd.RequestOp[]) =>
    ops.reduce((bytes, op) => bytes + (op.requestPut ? putCost(op.requestPut) : 0), 0);
  return Math.max(branch(req.success), branch(req.failure));
}

async function compact(ctx: EtcdApiContext, req: etcd.CompactionRequest): Promise<etcd.CompactionResponse> {
  const result = (await proposeCommand(ctx, { compaction: req })).compaction!;
  result.header = responseHeader(ctx, result.header!.revision);
  return result;
}
