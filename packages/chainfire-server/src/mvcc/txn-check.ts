// Request checks etcd makes before a write reaches the log (api/v3rpc/key.go): empty keys, txn size and
// overlapping writes inside one txn branch. They are pure, so the handlers refuse bad requests without
// a proposal and the store repeats them at apply as a guard.
import type { etcd } from "@photoncloud/chainfire-api";
import { chainfireError } from "../errors.js";
import { type KeyRange, inRange, keyRange, keyString } from "./key-range.js";

export const DEFAULT_MAX_TXN_OPS = 128;

export function checkRange(req: etcd.RangeRequest): void {
  if (req.key.length === 0) throw chainfireError("EMPTY_KEY");
}

export function checkPut(req: etcd.PutRequest): void {
  if (req.key.length === 0) throw chainfireError("EMPTY_KEY");
  if (req.ignoreValue && req.value.length !== 0) throw chainfireError("VALUE_PROVIDED");
  if (req.ignoreLease && req.lease !== 0n) throw chainfireError("LEASE_PROVIDED");
}

export function checkDeleteRange(req: etcd.DeleteRangeRequest): void {
  if (req.key.length === 0) throw chainfireError("EMPTY_KEY");
}

export function checkTxn(req: etcd.TxnRequest, maxTxnOps: number): void {
  checkTxnShape(req, maxTxnOps);
  checkIntervals(req.success);
  checkIntervals(req.failure);
}

/**
 * etcd's checkTxnRequest: the longest of the compares and the two branches counts against the
 * limit, and a nested txn has only what its parent left; an operation with nothing in it answers
 * etcd's "key not found".
 */
function checkTxnShape(req: etcd.TxnRequest, maxTxnOps: number): void {
  const ops = Math.max(req.compare.length, req.success.length, req.failure.length);
  if (ops > maxTxnOps) throw chainfireError("TOO_MANY_OPS");
  for (const c of req.compare) if (c.key.length === 0) throw chainfireError("EMPTY_KEY");
  for (const op of [...req.success, ...req.failure]) {
    if (op.requestRange) checkRange(op.requestRange);
    else if (op.requestPut) checkPut(op.requestPut);
    else if (op.requestDeleteRange) checkDeleteRange(op.requestDeleteRange);
    else if (op.requestTxn) checkTxnShape(op.requestTxn, maxTxnOps - ops);
    else throw chainfireError("KEY_NOT_FOUND");
  }
}

interface Writes {
  puts: Set<string>;
  deletes: KeyRange[];
}

function hitsDelete(deletes: KeyRange[], key: string): boolean {
  return deletes.some((range) => inRange(range, key));
}

/**
 * A key may be written at most once per branch: no two puts of one key, no put inside a deleted range.
 * A nested txn's two branches exclude each other, so the same key put in both is allowed.
 */
function checkIntervals(ops: etcd.RequestOp[]): Writes {
  const deletes: KeyRange[] = [];
  for (const op of ops) {
    if (op.requestDeleteRange)
      deletes.push(keyRange(op.requestDeleteRange.key, op.requestDeleteRange.rangeEnd));
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (!op.requestTxn) continue;
    const then = checkIntervals(op.requestTxn.success);
    const otherwise = checkIntervals(op.requestTxn.failure);
    for (const key of then.puts) {
      if (puts.has(key) || hitsDelete(deletes, key)) throw chainfireError("DUPLICATE_KEY");
      puts.add(key);
    }
    for (const key of otherwise.puts) {
      if ((puts.has(key) && !then.puts.has(key)) || hitsDelete(deletes, key)) {
        throw chainfireError("DUPLICATE_KEY");
      }
      puts.add(key);
    }
    deletes.push(...then.deletes, ...otherwise.deletes);
  }
  for (const op of ops) {
    if (!op.requestPut) continue;
    const key = keyString(op.requestPut.key);
    if (puts.has(key) || hitsDelete(deletes, key)) throw chainfireError("DUPLICATE_KEY");
    puts.add(key);
  }
  return { puts, deletes };
}
