// An image of the store handed to a client (Maintenance Snapshot, Hash): a file the snapshot worker
// wrote beside the store, read back in pieces, so neither its size nor the member's memory is
// bounded by one Buffer; or, for a store kept in memory, the serialized database.
import { closeSync, openSync, readdirSync, readSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface ClientImage {
  /** The store's revision in the image. */
  readonly revision: bigint;
  readonly sizeBytes: number;
  /** The image in order, in pieces of at most `pieceBytes`; each piece is a new Buffer. */
  pieces(pieceBytes: number): Generator<Buffer>;
  /** Removes the image's file, if it has one. Call it once done or given up; again is harmless. */
  release(): void;
}

/** Marks the files of client images beside the store's `path` (`<path>.client-image-<n>`). */
const IMAGE_INFIX = ".client-image-";

let nextImage = 0;

/** A name for a new client image of the store at `path`. */
export function clientImagePath(path: string): string {
  return `${path}${IMAGE_INFIX}${process.pid}-${nextImage++}`;
}

/** Removes client images a stopped process left beside the store at `path`. */
export function removeLeftClientImages(path: string): void {
  const prefix = `${basename(path)}${IMAGE_INFIX}`;
  for (const name of readdirSync(dirname(path))) {
    if (name.startsWith(prefix)) rmSync(join(dirname(path), name), { force: true });
  }
}

export function removeClientImage(file: string): void {
  rmSync(file, { force: true });
}

/** The image the worker wrote to `file`, which `release` removes. */
export function fileImage(file: string, revision: bigint): ClientImage {
  let released = false;
  return {
    revision,
    sizeBytes: statSync(file).size,
    *pieces(pieceBytes: number) {
      const fd = openSync(file, "r");
      try {
        for (let position = 0; ; ) {
          const piece = Buffer.allocUnsafe(pieceBytes);
          const n = readSync(fd, piece, 0, pieceBytes, position);
          if (n === 0) return;
          position += n;
          yield n === pieceBytes ? piece : piece.subarray(0, n);
        }
      } finally {
        closeSync(fd);
      }
    },
    release() {
      if (!released) removeClientImage(file);
      released = true;
    },
  };
}

export function memoryImage(image: Uint8Array, revision: bigint): ClientImage {
  const bytes = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  return {
    revision,
    sizeBytes: bytes.length,
    *pieces(pieceBytes: number) {
      for (let offset = 0; offset < bytes.length; offset += pieceBytes) {
        yield Buffer.from(bytes.subarray(offset, offset + pieceBytes));
      }
    },
    release() {},
  };
}
