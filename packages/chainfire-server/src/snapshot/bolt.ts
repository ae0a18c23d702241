// A read-only reader of bbolt database images, the format of etcd's backend and of the files
// `etcdctl snapshot save` writes (the image, then its sha256). Enough to walk the top-level
// buckets in key order: the two meta pages (the valid one with the newest transaction wins; as
// bbolt, a damaged first one is passed over for the second), branch and leaf pages, inline buckets
// and overflow pages. Every offset is checked against the image, and a page reached twice in one
// walk is refused as bbolt's check refuses it, so a damaged or crafted file is refused with
// SnapshotFileError instead of misread or walked without end.
import { SnapshotFileError } from "./snapshot-error.js";

const MAGIC = 0xed0cdaed;
const VERSION = 2;
const PAGE_HEADER_BYTES = 16;
const ELEMENT_BYTES = 16;
const BRANCH_PAGE = 0x01;
const LEAF_PAGE = 0x02;
const META_PAGE = 0x04;
const BUCKET_LEAF = 0x01;
/** Bytes of the meta struct its checksum covers (everything before the checksum field). */
const META_SUMMED_BYTES = 56;
/** B+trees deeper than this are damaged. */
const DEPTH_MAX = 64;
/** Where bbolt looks for the second meta page when the first cannot say the page size. */
const FALLBACK_PAGE_SIZES = [4096, 8192, 16384, 32768, 65536];

export interface BoltEntry {
  readonly key: Buffer;
  readonly value: Buffer;
}

interface Meta {
  readonly pageSize: number;
  readonly rootPage: bigint;
  /** The high-water page count: the database's size is this many pages. */
  readonly pages: bigint;
  readonly txid: bigint;
}

/** Whether `image` starts with a bbolt meta page. */
export function isBoltImage(image: Buffer): boolean {
  return image.length >= PAGE_HEADER_BYTES + 8 && image.readUInt32LE(PAGE_HEADER_BYTES) === MAGIC;
}

export class BoltImage {
  private readonly meta: Meta;

  constructor(
    private readonly image: Buffer,
    private readonly path: string,
  ) {
    const first = this.readMeta(0);
    const second =
      first !== null
        ? this.readMeta(first.pageSize)
        : (FALLBACK_PAGE_SIZES.map((size) => this.readMeta(size)).find(
            (m, i) => m?.pageSize === FALLBACK_PAGE_SIZES[i],
          ) ?? null);
    if (first === null && second === null)
      throw this.corrupt("neither of its meta pages is a valid bbolt meta page");
    this.meta = first === null || (second !== null && second.txid > first.txid) ? second! : first;
  }

  /** The database's size as bbolt reports it (its pages × the page size). */
  get sizeBytes(): bigint {
    return this.meta.pages * BigInt(this.meta.pageSize);
  }

  /** The top-level buckets' names, in key order. */
  bucketNames(): Buffer[] {
    return [...this.rootEntries()].map((e) => e.key);
  }

  /** The entries of top-level bucket `name` in key order (none when it does not exist). */
  *bucket(name: string | Buffer): Generator<BoltEntry> {
    const wanted = typeof name === "string" ? Buffer.from(name) : name;
    for (const entry of this.rootEntries()) {
      if (!entry.key.equals(wanted)) continue;
      if (entry.value.length < 16) throw this.corrupt(`bucket ${wanted}'s header is cut short`);
      const root = entry.value.readBigUInt64LE(0);
      // Root 0: a small bucket stored inline, its one leaf page right after the header.
      if (root === 0n) yield* this.entries(entry.value, 16, 0, false, new Set());
      else yield* this.entries(this.image, this.pageOffset(root), 0, false, new Set([root]));
      return;
    }
  }

  private rootEntries(): Generator<BoltEntry> {
    const root = this.meta.rootPage;
    return this.entries(this.image, this.pageOffset(root), 0, true, new Set([root]));
  }

  private readMeta(offset: number): Meta | null {
    const at = offset + PAGE_HEADER_BYTES;
    if (at + META_SUMMED_BYTES + 8 > this.image.length) return null;
    if ((this.image.readUInt16LE(offset + 8) & META_PAGE) === 0) return null;
    if (this.image.readUInt32LE(at) !== MAGIC || this.image.readUInt32LE(at + 4) !== VERSION) return null;
    if (fnv64a(this.image.subarray(at, at + META_SUMMED_BYTES)) !== this.image.readBigUInt64LE(at + 56))
      return null;
    const pageSize = this.image.readUInt32LE(at + 8);
    if (pageSize < 512 || pageSize > 1 << 20) return null;
    return {
      pageSize,
      rootPage: this.image.readBigUInt64LE(at + 16),
      pages: this.image.readBigUInt64LE(at + 40),
      txid: this.image.readBigUInt64LE(at + 48),
    };
  }

  private pageOffset(page: bigint): number {
    const offset = page * BigInt(this.meta.pageSize);
    if (
      page < 2n ||
      page >= this.meta.pages ||
      offset + BigInt(PAGE_HEADER_BYTES) > BigInt(this.image.length)
    )
      throw this.corrupt(`page ${page} lies outside the file`);
    return Number(offset);
  }

  /**
   * The entries under the page at `start` of `buf`, in key order; buckets only when `buckets`.
   * `seen` holds the pages this walk has reached: a page reached again is refused.
   */
  private *entries(
    buf: Buffer,
    start: number,
    depth: number,
    buckets: boolean,
    seen: Set<bigint>,
  ): Generator<BoltEntry> {
    if (depth > DEPTH_MAX) throw this.corrupt("its B+tree is deeper than any bbolt file's");
    if (start + PAGE_HEADER_BYTES > buf.length) throw this.corrupt("a page header lies outside the file");
    const flags = buf.readUInt16LE(start + 8);
    const count = buf.readUInt16LE(start + 10);
    const elements = start + PAGE_HEADER_BYTES;
    if (elements + count * ELEMENT_BYTES > buf.length)
      throw this.corrupt("a page's elements lie outside the file");
    for (let i = 0; i < count; i++) {
      const e = elements + i * ELEMENT_BYTES;
      if (flags & BRANCH_PAGE) {
        const child = buf.readBigUInt64LE(e + 8);
        if (seen.has(child)) throw this.corrupt(`page ${child} is referred to more than once`);
        seen.add(child);
        yield* this.entries(this.image, this.pageOffset(child), depth + 1, buckets, seen);
      } else if (flags & LEAF_PAGE) {
        const isBucket = (buf.readUInt32LE(e) & BUCKET_LEAF) !== 0;
        const key = e + buf.readUInt32LE(e + 4);
        const keyEnd = key + buf.readUInt32LE(e + 8);
        const valueEnd = keyEnd + buf.readUInt32LE(e + 12);
        if (valueEnd > buf.length) throw this.corrupt("a leaf entry lies outside the file");
        if (isBucket !== buckets) continue;
        yield { key: buf.subarray(key, keyEnd), value: buf.subarray(keyEnd, valueEnd) };
      } else {
        throw this.corrupt(`a page has flags 0x${flags.toString(16)}, neither branch nor leaf`);
      }
    }
  }

  private corrupt(why: string): SnapshotFileError {
    return new SnapshotFileError("SNAPSHOT_CORRUPT", `${this.path}: not a sound bbolt (etcd) image: ${why}`);
  }
}

/** 64-bit FNV-1a, bbolt's meta page checksum. */
function fnv64a(bytes: Buffer): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return hash;
}
