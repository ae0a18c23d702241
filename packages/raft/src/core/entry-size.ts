// Size accounting of entries: only `data` counts, which is what the byte bounds are about.
import type { Entry } from "./types.js";

export function entriesDataBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const e of entries) bytes += e.data.length;
  return bytes;
}

/** The longest prefix of `entries` within `bytesMax` of data, but never empty when `entries` is not. */
export function limitEntriesBytes<T extends Entry>(entries: T[], bytesMax: number): T[] {
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    bytes += (entries[i] as T).data.length;
    if (bytes > bytesMax && i > 0) return entries.slice(0, i);
  }
  return entries;
}
