// HTTP/2 frame constants and writers (RFC 9113 §4 and §6), shared by the lean connection and its tests.

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The client connection preface every HTTP/2 connection opens with (RFC 9113 §3.4). */
export const CLIENT_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const FRAME_HEADER_BYTES = 9;
/** The initial flow-control window of a connection and of every stream (RFC 9113 §6.9.2). */
export const DEFAULT_WINDOW_BYTES = 65_535;
export const DEFAULT_MAX_FRAME_BYTES = 16_384;
export const MAX_ALLOWED_FRAME_BYTES = 16_777_215;
export const MAX_WINDOW_BYTES = 2 ** 31 - 1;

/** A frame header followed by `payloadBytes` bytes of room, header filled in. */
export function frameWithRoom(type: number, flags: number, streamId: number, payloadBytes: number): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  frame[0] = payloadBytes >>> 16;
  frame[1] = (payloadBytes >>> 8) & 0xff;
  frame[2] = payloadBytes & 0xff;
  frame[3] = type;
  frame[4] = flags;
  frame.writeUInt32BE(streamId, 5);
  return frame;
}

export function frame(type: number, flags: number, streamId: number, payload: Uint8Array): Buffer {
  const f = frameWithRoom(type, flags, streamId, payload.length);
  f.set(payload, FRAME_HEADER_BYTES);
  return f;
}

export function settingsFrame(settings: ReadonlyArray<readonly [number, number]>): Buffer {
  const f = frameWithRoom(FrameType.SETTINGS, 0, 0, 6 * settings.length);
  settings.forEach(([id, value], i) => {
    f.writeUInt16BE(id, FRAME_HEADER_BYTES + 6 * i);
    f.writeUInt32BE(value, FRAME_HEADER_BYTES + 6 * i + 2);
  });
  return f;
}

export function windowUpdateFrame(streamId: number, incrementBytes: number): Buffer {
  const f = frameWithRoom(FrameType.WINDOW_UPDATE, 0, streamId, 4);
  f.writeUInt32BE(incrementBytes, FRAME_HEADER_BYTES);
  return f;
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const f = frameWithRoom(FrameType.RST_STREAM, 0, streamId, 4);
  f.writeUInt32BE(code, FRAME_HEADER_BYTES);
  return f;
}

export function goawayFrame(lastStreamId: number, code: number, debug = ""): Buffer {
  const text = Buffer.from(debug, "utf8");
  const f = frameWithRoom(FrameType.GOAWAY, 0, 0, 8 + text.length);
  f.writeUInt32BE(lastStreamId, FRAME_HEADER_BYTES);
  f.writeUInt32BE(code, FRAME_HEADER_BYTES + 4);
  f.set(text, FRAME_HEADER_BYTES + 8);
  return f;
}
