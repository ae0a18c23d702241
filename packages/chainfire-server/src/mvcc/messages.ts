// Constructors for generated messages: ts-proto encodes every field, so objects must be complete.
import { command, etcd, type mvccpb } from "@photoncloud/chainfire-api";
import { reusingEncoder } from "@photoncloud/daemon";

/** A command's bytes for the log, through one reused writer (see reusingEncoder). */
export const encodeCommand = reusingEncoder(command.MvccCommand);

export function header(revision: bigint): etcd.ResponseHeader {
  return { clusterId: 0n, memberId: 0n, revision, raftTerm: 0n };
}

export const EMPTY = Buffer.alloc(0);

export function rangeRequest(fields: Partial<etcd.RangeRequest>): etcd.RangeRequest {
  return {
    key: EMPTY,
    rangeEnd: EMPTY,
    limit: 0n,
    revision: 0n,
    sortOrder: etcd.RangeRequest_SortOrder.NONE,
    sortTarget: etcd.RangeRequest_SortTarget.KEY,
    serializable: false,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0n,
    maxModRevision: 0n,
    minCreateRevision: 0n,
    maxCreateRevision: 0n,
    ...fields,
  };
}

export function putRequest(fields: Partial<etcd.PutRequest>): etcd.PutRequest {
  return {
    key: EMPTY,
    value: EMPTY,
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
    ...fields,
  };
}

export function deleteRangeRequest(fields: Partial<etcd.DeleteRangeRequest>): etcd.DeleteRangeRequest {
  return { key: EMPTY, rangeEnd: EMPTY, prevKv: false, ...fields };
}

export function watchCreateRequest(fields: Partial<etcd.WatchCreateRequest>): etcd.WatchCreateRequest {
  return {
    key: EMPTY,
    rangeEnd: EMPTY,
    startRevision: 0n,
    progressNotify: false,
    filters: [],
    prevKv: false,
    watchId: 0n,
    fragment: false,
    ...fields,
  };
}

export function tombstone(key: Buffer, revision: bigint): mvccpb.KeyValue {
  return { key, createRevision: 0n, modRevision: revision, version: 0n, value: EMPTY, lease: 0n };
}
