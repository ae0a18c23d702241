// Membership metadata (name and URLs of each member), replicated in the ConfChange context,
// persisted next to the log and carried in snapshots.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { NodeId } from "../core/types.js";

export interface MemberInfo {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

interface MemberJson {
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
  /**
   * Set on a member's publish of its own name and client URLs: applied, only those two fields change,
   * so a publish that read the record before an operator's URL change cannot write the old URLs back.
   * (A member that does not know the field applies the whole record, as before.)
   */
  publish?: boolean;
}

export function memberToJson(m: MemberInfo): MemberJson {
  return {
    id: m.id.toString(),
    name: m.name,
    peerUrls: [...m.peerUrls],
    clientUrls: [...m.clientUrls],
    isLearner: m.isLearner,
  };
}

export function memberFromJson(j: MemberJson): MemberInfo {
  return {
    id: BigInt(j.id),
    name: j.name,
    peerUrls: j.peerUrls,
    clientUrls: j.clientUrls,
    isLearner: j.isLearner,
  };
}

/** A conf change context's member JSON: the record, and whether it is a publish (see MemberJson). */
export function memberChangeFromJson(text: string): { info: MemberInfo; publish: boolean } {
  const j = JSON.parse(text) as MemberJson;
  return { info: memberFromJson(j), publish: j.publish === true };
}

export function encodeMembers(ms: Iterable<MemberInfo>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify([...ms].map(memberToJson)));
}

export function decodeMembers(b: Uint8Array): MemberInfo[] {
  if (b.length === 0) return [];
  return (JSON.parse(new TextDecoder().decode(b)) as MemberJson[]).map(memberFromJson);
}

/** The layer's snapshot: [4-byte length][members JSON][state machine image]. */
export function encodeLayerSnapshot(members: Iterable<MemberInfo>, image: Uint8Array): Uint8Array {
  return concatBytes(encodeLayerSnapshotParts(members, image));
}

/** The same bytes as `encodeLayerSnapshot`, as [header, image]: written out without copying the image. */
export function encodeLayerSnapshotParts(members: Iterable<MemberInfo>, image: Uint8Array): Uint8Array[] {
  return [encodeLayerSnapshotHead(members), image];
}

/** The bytes of a layer snapshot before its image: the members' length, then the members. */
export function encodeLayerSnapshotHead(members: Iterable<MemberInfo>): Uint8Array {
  const m = encodeMembers(members);
  const head = new Uint8Array(4 + m.length);
  new DataView(head.buffer).setUint32(0, m.length);
  head.set(m, 4);
  return head;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function decodeLayerSnapshot(b: Uint8Array): { members: MemberInfo[]; image: Uint8Array } {
  if (b.length === 0) return { members: [], image: b };
  const len = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0);
  return { members: decodeMembers(b.subarray(4, 4 + len)), image: b.subarray(4 + len) };
}

/** The members at the head of a layer snapshot held in the file `path`, and where its image starts. */
export function readLayerSnapshotHead(path: string): { members: MemberInfo[]; imageOffset: number } {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return { members: [], imageOffset: 0 };
    const length = Buffer.alloc(4);
    readSync(fd, length, 0, 4, 0);
    const head = Buffer.alloc(length.readUInt32BE(0));
    readSync(fd, head, 0, head.length, 4);
    return { members: decodeMembers(head), imageOffset: 4 + head.length };
  } finally {
    closeSync(fd);
  }
}
