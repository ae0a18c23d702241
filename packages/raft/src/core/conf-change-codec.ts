// Binary encoding of a ConfChange inside a log entry's data. Layout (big-endian):
// version u8 (1) | type u8 | nodeId u64 | contextLength u32 | context bytes.
import type { ConfChange, ConfChangeType } from "./types.js";

const VERSION = 1;
const HEADER_BYTES = 1 + 1 + 8 + 4;
const TYPE_MAX = 3;

export class ConfChangeDecodeError extends Error {
  readonly code = "RAFT_CONF_CHANGE_MALFORMED";
}

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + cc.context.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, VERSION);
  view.setUint8(1, cc.type);
  view.setBigUint64(2, cc.nodeId);
  view.setUint32(10, cc.context.length);
  out.set(cc.context, HEADER_BYTES);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < HEADER_BYTES) {
    throw new ConfChangeDecodeError(
      `conf change data is ${data.length} bytes, need at least ${HEADER_BYTES}`,
    );
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const version = view.getUint8(0);
  if (version !== VERSION)
    throw new ConfChangeDecodeError(`conf change version ${version}, expected ${VERSION}`);
  const type = view.getUint8(1);
  if (type > TYPE_MAX) throw new ConfChangeDecodeError(`conf change type ${type} is unknown`);
  const contextLength = view.getUint32(10);
  if (data.length !== HEADER_BYTES + contextLength) {
    throw new ConfChangeDecodeError(`conf change context length ${contextLength} does not match data`);
  }
  return {
    type: type as ConfChangeType,
    nodeId: view.getBigUint64(2),
    context: data.slice(HEADER_BYTES),
  };
}
