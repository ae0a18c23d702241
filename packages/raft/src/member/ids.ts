// Member and cluster IDs, etcd style: full uint64 values shown as 16 hex digits. A member's ID is
// derived from the cluster token and its name, so every member computes the same ID for a name
// from --initial-cluster alone, and re-adding a name re-adds the same ID.
import { createHash } from "node:crypto";

const UINT64_MAX = (1n << 64n) - 1n;

/** The first non-zero 8-byte big-endian word of sha256(text); 1 in the (astronomical) all-zero case. */
function hashToId(text: string): bigint {
  const digest = createHash("sha256").update(text, "utf8").digest();
  for (let off = 0; off + 8 <= digest.length; off += 8) {
    const v = digest.readBigUInt64BE(off);
    if (v !== 0n) return v;
  }
  return 1n;
}

/** sha256(`${token}\0${name}`), first 8 bytes as uint64, never 0. */
export function deriveMemberId(token: string, name: string): bigint {
  return hashToId(`${token}\0${name}`);
}

/** The cluster's ID from its token and its initial members' IDs (order-independent), never 0. */
export function deriveClusterId(token: string, memberIds: readonly bigint[]): bigint {
  const sorted = [...new Set(memberIds)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return hashToId(`${token}\0${sorted.map(formatId).join(",")}`);
}

/** 16 lower-case hex digits, as etcdctl prints member IDs. */
export function formatId(id: bigint): string {
  if (id < 0n || id > UINT64_MAX) throw new RangeError(`${id} is not a uint64`);
  return id.toString(16).padStart(16, "0");
}

/**
 * Hex (with or without 0x; what etcdctl prints) or decimal. Text made only of decimal digits is
 * read as hex when it has 16 digits (formatId's output) and as decimal otherwise; text with a-f
 * is hex. Throws an Error explaining the accepted forms.
 */
export function parseId(text: string): bigint {
  const t = text.trim().toLowerCase();
  let v: bigint | undefined;
  if (/^0x[0-9a-f]{1,16}$/.test(t)) v = BigInt(t);
  else if (/^[0-9a-f]{16}$/.test(t)) v = BigInt(`0x${t}`);
  else if (/^[0-9a-f]*[a-f][0-9a-f]*$/.test(t) && t.length <= 16) v = BigInt(`0x${t}`);
  else if (/^[0-9]{1,20}$/.test(t)) v = BigInt(t);
  if (v === undefined || v > UINT64_MAX || v === 0n) {
    throw new Error(
      `"${text}" is not a member ID (expected a non-zero uint64 in hex, as printed by member list, ` +
        "e.g. 8e9e05c52164694d or 0x8e9e05c52164694d, or in decimal)",
    );
  }
  return v;
}
