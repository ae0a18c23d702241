// One HTTP/2 connection (RFC 9113), written for the gRPC servers' hot path: the server side of
// client connections, and the client side of the members' peer streams (`role: "client"`).
//
// Node's http2 module costs about 33 µs of CPU per small request/response exchange on this project's
// machines, measured with h2load against a server that answers a 200-byte gRPC reply; most of it is
// per-stream objects (a Duplex per stream, header objects, events) and crossings between nghttp2 and
// JavaScript. This connection parses frames straight from the socket's buffers, keeps one small
// object per stream and writes every frame produced in one turn of the event loop with one write:
// the same exchange costs about 4 µs.
//
// What it does: the connection preface and SETTINGS exchange, HPACK header blocks (with CONTINUATION),
// flow control in both directions (windows per stream and per connection, data queued until the
// client opens its window), PING, RST_STREAM, GOAWAY (both ways, and a graceful close that lets open
// streams finish), limits on concurrent streams, frame size and header list size, and the
// connection and stream errors of RFC 9113 §5.4. Received data is credited back to the client as it
// is delivered, so a stream's reader is bounded by what the layer above accepts per message.
// What it leaves out: server push (never sent, refused when received; a client may disable it,
// nothing else), priorities (read and ignored, as RFC 9113 allows), and the HTTP/1.1 upgrade.
//
// As a client it sends the preface, opens streams with odd IDs (`request`), takes each stream's
// response headers (`onHeaders`) and trailers, and treats a GOAWAY as the end of every stream above
// the server's last one. Server-only limits (the reset rate) do not apply to it.

import type { Socket } from "node:net";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_WINDOW_BYTES,
  ErrorCode,
  FRAME_HEADER_BYTES,
  Flag,
  FrameType,
  frame,
  frameWithRoom,
  goawayFrame,
  MAX_ALLOWED_FRAME_BYTES,
  MAX_WINDOW_BYTES,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.js";
import { encodeHeaders, HeaderListTooLargeError, HpackDecoder, HpackError } from "./hpack.js";

export type HeaderFields = ReadonlyArray<readonly [string, string]>;

export interface H2ConnectionOptions {
  /** Which side of the connection this is (default server). */
  readonly role?: "server" | "client";
  /**
   * Server: a client opened a stream. `headers` is flat: [name0, value0, name1, value1, ...]. The
   * handler sets the stream's callbacks before it returns: data that arrives before then is not kept.
   */
  readonly onStream?: (stream: H2Stream, headers: readonly string[]) => void;
  /** Client: the server's SETTINGS arrived (the connection is up). */
  readonly onReady?: () => void;
  /** The connection is gone (closed by either side, or failed). */
  readonly onClose?: (error?: Error) => void;
  readonly maxConcurrentStreams?: number;
  /** The receive window each stream starts with (SETTINGS_INITIAL_WINDOW_SIZE we announce). */
  readonly streamWindowBytes?: number;
  /** The receive window of the whole connection. */
  readonly connectionWindowBytes?: number;
  /** The largest decoded header list a request may carry (SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxHeaderListBytes?: number;
  /**
   * Keepalive (grpc-go's server keepalive, etcd's --grpc-keepalive-interval): after this long without
   * a byte from the peer, PING it; 0 (the default) never pings.
   */
  readonly keepaliveIntervalMs?: number;
  /**
   * How long a keepalive PING waits for any byte from the peer before the connection is dropped (its
   * streams cancelled: a vanished client's watches and lease keep-alives end). Default 20 s.
   */
  readonly keepaliveTimeoutMs?: number;
}

const DEFAULTS = {
  role: "server" as "server" | "client",
  onStream: (_stream: H2Stream, _headers: readonly string[]) => {},
  onReady: () => {},
  maxConcurrentStreams: 1000,
  streamWindowBytes: 256 << 10,
  connectionWindowBytes: 16 << 20,
  maxHeaderListBytes: 64 << 10,
  keepaliveIntervalMs: 0,
  keepaliveTimeoutMs: 20_000,
};
const EMPTY = Buffer.alloc(0);
/** The keepalive PING's opaque data (the peer echoes it in its ACK; any byte read counts). */
const KEEPALIVE_PING = Buffer.from("keepaliv");
const OUT_BYTES_MIN = 16 << 10;
/** Header block fragments gathered for one block, at most (before decoding; a bound on memory). */
const HEADER_BLOCK_BYTES_MAX = 256 << 10;
const HEADER_BLOCK_FRAMES_MAX = 64;
/**
 * Streams a client may reset: a burst, then a steady rate (nghttp2's defaults, which Node's http2 and
 * so grpc-js's servers apply). Opening and resetting streams in a loop costs the server a call each
 * time for almost nothing on the client's side (the "rapid reset" attack).
 */
const RESETS_BURST = 1000;
const RESETS_PER_SECOND = 33;
/** Entries one SETTINGS frame may carry (nghttp2 takes 32 at most, Go 100). */
const SETTINGS_ENTRIES_MAX = 100;
/** How long a connection failed by this side waits for the peer to close before it is destroyed. */
const FAILED_CLOSE_MS = 1000;
/** A client that has not sent its preface and SETTINGS by then is disconnected. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Stop reading the socket while this much is written but not yet taken by the kernel. */
const SOCKET_BACKLOG_BYTES_MAX = 4 << 20;

/** A connection error: the connection sends GOAWAY with this code and closes. */
class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A stream error: the stream is reset with this code; the connection carries on. */
class StreamError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** One stream: opened by the client (the server's `onStream`, or the client's `request`). */
export class H2Stream {
  /** Client: the response headers arrived (flat; a trailers-only response also ends the stream). */
  onHeaders: ((headers: readonly string[]) => void) | null = null;
  /** A DATA payload arrived (a view into the socket's buffer: copy it to keep it past the call). */
  onData: ((chunk: Buffer) => void) | null = null;
  /**
   * The other side half-closed the stream (END_STREAM); `trailers` is flat, empty when there were
   * none (a client's trailers-only response passes its headers as the trailers).
   */
  onEnd: ((trailers: readonly string[]) => void) | null = null;
  /**
   * The stream closed before the other side ended it: reset by the peer (its code), the connection
   * went away (CANCEL; REFUSED_STREAM for a client's streams the server's GOAWAY left out), or a server
   * ended the response while the client was still sending (NO_ERROR).
   */
  onClose: ((code: number) => void) | null = null;
  /** Everything queued by `write` has gone to the socket. */
  onDrain: (() => void) | null = null;

  /** @internal The peer sent END_STREAM (or a reset). */
  remoteEnded = false;
  /** @internal Client: the response headers arrived (the next header block is the trailers). */
  responseSeen = false;
  /** @internal This side sent END_STREAM (or a reset). */
  localEnded = false;
  /** @internal */
  headersSent = false;
  /** @internal Bytes this side may still send on the stream. */
  sendWindow: number;
  /** @internal Bytes the client may still send before this side credits more. */
  receiveWindow: number;
  /** @internal Data waiting for window, then the trailers (or an empty END_STREAM) to follow it. */
  queue: Buffer[] = [];
  queuedBytes = 0;
  /** @internal The reader asked to hold the client's credit (backpressure); bytes not yet credited. */
  creditHeld = false;
  /** @internal `write` returned false: `onDrain` is owed once the queue empties. */
  drainOwed = false;
  pendingEnd: Buffer | null | undefined = undefined;

  constructor(
    readonly id: number,
    private readonly connection: H2Connection,
    sendWindow: number,
    receiveWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.receiveWindow = receiveWindow;
  }

  /** The socket the stream arrived on (peer address, TLS state). */
  get socket(): Socket {
    return this.connection.socket;
  }

  /** Whether the stream is over for this side (ended or reset). */
  get closed(): boolean {
    return this.localEnded;
  }

  /**
   * Sends the response headers: fields, or a block already HPACK-encoded by `encodeHeaders` (for
   * constant headers on hot paths). With `endStream` the response ends here (trailers-only).
   */
  respond(headers: HeaderFields | Buffer, endStream = false): void {
    if (this.localEnded || this.headersSent) return;
    this.headersSent = true;
    const block = Buffer.isBuffer(headers) ? headers : encodeHeaders(headers);
    this.connection.sendHeaderBlock(this.id, block, endStream);
    if (endStream) this.connection.localEnd(this);
  }

  /**
   * Queues response data; it goes out as the client's windows allow. Returns false when the queue
   * holds more than one window's worth: wait for `onDrain` before writing more.
   */
  write(data: Buffer): boolean {
    if (this.localEnded || this.pendingEnd !== undefined || data.length === 0) return !this.localEnded;
    this.queue.push(data);
    this.queuedBytes += data.length;
    this.connection.pump(this);
    if (this.queuedBytes <= DEFAULT_WINDOW_BYTES) return true;
    this.drainOwed = true;
    return false;
  }

  /** Ends the response after the queued data: with trailers when given, else an empty DATA frame. */
  end(trailers?: HeaderFields | Buffer): void {
    if (this.localEnded || this.pendingEnd !== undefined) return;
    this.pendingEnd =
      trailers === undefined ? null : Buffer.isBuffer(trailers) ? trailers : encodeHeaders(trailers);
    this.connection.pump(this);
  }

  /** Stops giving the client window for this stream until `releaseCredit` (the reader is full). */
  holdCredit(): void {
    this.creditHeld = true;
  }

  releaseCredit(): void {
    if (!this.creditHeld) return;
    this.creditHeld = false;
    this.connection.creditStream(this);
  }

  /** Abandons the stream (RST_STREAM with `code`). */
  reset(code: number = ErrorCode.CANCEL): void {
    if (this.localEnded) return;
    this.connection.resetStream(this, code);
  }
}

/** One HTTP/2 connection over `socket` (plain TCP, or TLS with ALPN h2). */
export class H2Connection {
  private readonly options: Required<Omit<H2ConnectionOptions, "onClose">> &
    Pick<H2ConnectionOptions, "onClose">;
  private readonly client: boolean;
  /** Client: the ID of the next stream `request` opens. */
  private nextStreamId = 1;
  private readonly decoder: HpackDecoder;
  private readonly streams = new Map<number, H2Stream>();
  /** Streams with data or an end waiting for send window. */
  private readonly blocked = new Set<H2Stream>();
  private pending: Buffer | null = null;
  private prefaceSeen = false;
  private settingsSeen = false;
  private lastStreamId = 0;
  /** A header block being gathered: its stream, flags of its HEADERS frame, fragments. */
  private headerBlock: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | null = null;
  private sendWindow = DEFAULT_WINDOW_BYTES;
  private receiveWindow: number;
  private peerStreamWindow = DEFAULT_WINDOW_BYTES;
  private peerMaxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  /** Frames made this turn of the event loop, back to back; one write sends them (see `flush`). */
  private out: Buffer = EMPTY;
  private outBytes = 0;
  private flushScheduled = false;
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** Socket reads so far, and at the keepalive's last look (a change is activity). */
  private reads = 0;
  private readsSeen = 0;
  /** The socket's queued and handed-over output at the keepalive's last look (a change is progress). */
  private queuedSeen = 0;
  private dispatchedSeen = 0;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private pingOutstanding = false;
  private goingAway = false;
  private closed = false;

  constructor(
    readonly socket: Socket,
    options: H2ConnectionOptions,
  ) {
    this.options = { ...DEFAULTS, ...options };
    this.client = this.options.role === "client";
    if (!this.client && options.onStream === undefined) throw new Error("a server connection needs onStream");
    this.decoder = new HpackDecoder({ maxHeaderListSize: this.options.maxHeaderListBytes });
    this.receiveWindow = this.options.connectionWindowBytes;
    socket.setNoDelay?.(true);
    if (this.client) {
      // A server sends no preface of its own: its first frame is SETTINGS.
      this.prefaceSeen = true;
      this.push(CLIENT_PREFACE);
    }
    this.push(
      settingsFrame([
        [Setting.MAX_CONCURRENT_STREAMS, this.options.maxConcurrentStreams],
        [Setting.INITIAL_WINDOW_SIZE, this.options.streamWindowBytes],
        [Setting.MAX_HEADER_LIST_SIZE, this.options.maxHeaderListBytes],
        [Setting.ENABLE_PUSH, 0],
      ]),
    );
    if (this.receiveWindow > DEFAULT_WINDOW_BYTES)
      this.push(windowUpdateFrame(0, this.receiveWindow - DEFAULT_WINDOW_BYTES));
    this.handshakeTimer = setTimeout(
      () =>
        this.fail(new ConnectionError(ErrorCode.SETTINGS_TIMEOUT, "no HTTP/2 preface and SETTINGS in time")),
      HANDSHAKE_TIMEOUT_MS,
    );
    this.handshakeTimer.unref();
    if (this.options.keepaliveIntervalMs > 0) this.armKeepalive(this.options.keepaliveIntervalMs);
    socket.on("data", (chunk: Buffer) => this.onSocketData(chunk));
    socket.on("drain", () => {
      socket.resume();
      // Streams held back by the socket's backlog (see `pump`) go on now that the peer took it.
      if (this.blocked.size > 0 && !this.closed) for (const s of [...this.blocked]) this.pump(s);
    });
    socket.on("error", (err) => this.teardown(err));
    socket.on("close", () => this.teardown());
    socket.on("end", () => socket.end());
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Whether new streams may be opened (not closed, no GOAWAY either way). */
  get open(): boolean {
    return !this.closed && !this.goingAway;
  }

  /**
   * Client: opens a stream with these request headers (fields, or a block `encodeHeaders` made) and
   * returns it; data follows with `write`, the end with `end()`.
   */
  request(headers: HeaderFields | Buffer, endStream = false): H2Stream {
    if (!this.client) throw new Error("only a client opens streams");
    if (!this.open) throw new Error("the connection is closed or going away");
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    this.lastStreamId = id;
    const stream = new H2Stream(id, this, this.peerStreamWindow, this.options.streamWindowBytes);
    this.streams.set(id, stream);
    stream.respond(headers, endStream);
    return stream;
  }

  /**
   * Graceful close: GOAWAY with the last stream this side saw, no new streams, and the connection
   * closes once the open ones have finished.
   */
  goaway(): void {
    if (this.goingAway || this.closed) return;
    this.goingAway = true;
    this.push(goawayFrame(this.peerLastStreamId(), ErrorCode.NO_ERROR));
    this.maybeFinish();
  }

  /** Closes at once: open streams see onClose(CANCEL). */
  destroy(): void {
    if (this.closed) return;
    this.push(goawayFrame(this.peerLastStreamId(), ErrorCode.NO_ERROR));
    this.flush();
    // At once, even with writes pending: a client that does not read must not hold a shutdown.
    this.socket.destroy();
    this.teardown();
  }

  /** The last stream the peer opened (what a GOAWAY names): a client's server opens none. */
  private peerLastStreamId(): number {
    return this.client ? 0 : this.lastStreamId;
  }

  // ---- input ----

  private onSocketData(chunk: Buffer): void {
    if (this.closed) return;
    this.reads++;
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    try {
      let offset = 0;
      if (!this.prefaceSeen) {
        const n = Math.min(buf.length, CLIENT_PREFACE.length);
        if (buf.compare(CLIENT_PREFACE, 0, n, 0, n) !== 0)
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
        if (n < CLIENT_PREFACE.length) {
          this.pending = buf;
          return;
        }
        this.prefaceSeen = true;
        offset = CLIENT_PREFACE.length;
      }
      while (buf.length - offset >= FRAME_HEADER_BYTES) {
        const length = (buf[offset]! << 16) | (buf[offset + 1]! << 8) | buf[offset + 2]!;
        if (length > DEFAULT_MAX_FRAME_BYTES)
          throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds 16384`);
        const end = offset + FRAME_HEADER_BYTES + length;
        if (end > buf.length) break;
        const type = buf[offset + 3]!;
        const flags = buf[offset + 4]!;
        const streamId = buf.readUInt32BE(offset + 5) & 0x7fffffff;
        this.onFrame(type, flags, streamId, buf.subarray(offset + FRAME_HEADER_BYTES, end));
        offset = end;
        if (this.closed) return;
      }
      if (offset < buf.length) this.pending = buf.subarray(offset);
    } catch (err) {
      this.fail(err);
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock !== null && type !== FrameType.CONTINUATION)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted by another frame");
    if (!this.settingsSeen && type !== FrameType.SETTINGS)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the first frame must be SETTINGS");
    try {
      switch (type) {
        case FrameType.DATA:
          this.onDataFrame(flags, streamId, payload);
          return;
        case FrameType.HEADERS:
          this.onHeadersFrame(flags, streamId, payload);
          return;
        case FrameType.CONTINUATION:
          this.onContinuation(flags, streamId, payload);
          return;
        case FrameType.PRIORITY:
          if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
          if (payload.length !== 5) throw new StreamError(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY size");
          return;
        case FrameType.RST_STREAM:
          this.onRstStream(streamId, payload);
          return;
        case FrameType.SETTINGS:
          this.onSettings(flags, streamId, payload);
          return;
        case FrameType.PUSH_PROMISE:
          // A server may not push to a client that disabled push (as this side always does).
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE is not accepted");
        case FrameType.PING:
          this.onPing(flags, streamId, payload);
          return;
        case FrameType.GOAWAY:
          this.onGoaway(streamId, payload);
          return;
        case FrameType.WINDOW_UPDATE:
          this.onWindowUpdate(streamId, payload);
          return;
        default:
          return; // unknown frame types are ignored (RFC 9113 §4.1)
      }
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      this.sendReset(streamId, err.code);
    }
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ack size");
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size");
    if (!this.settingsSeen && this.client) queueMicrotask(() => this.closed || this.options.onReady());
    this.settingsSeen = true;
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    // A frame of thousands of entries, each moving every open stream's window, would hold the
    // event loop (CVE-2020-11080): entries are capped as nghttp2 caps them, and a window change
    // takes effect once per frame (the last value counts, as it would applied in order).
    if (payload.length / 6 > SETTINGS_ENTRIES_MAX)
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many entries in one SETTINGS frame");
    let streamWindow: number | undefined;
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.ENABLE_PUSH && value > 1)
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1");
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW_BYTES)
          throw new ConnectionError(
            ErrorCode.FLOW_CONTROL_ERROR,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
          );
        streamWindow = value;
      }
      if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_BYTES || value > MAX_ALLOWED_FRAME_BYTES)
          throw new ConnectionError(
            ErrorCode.PROTOCOL_ERROR,
            `SETTINGS_MAX_FRAME_SIZE ${value} out of range`,
          );
        this.peerMaxFrameBytes = value;
      }
      // HEADER_TABLE_SIZE bounds the client's decoder table; this side's encoder never inserts into
      // it. MAX_CONCURRENT_STREAMS limits pushes, which this side never sends. The rest are advisory.
    }
    if (streamWindow !== undefined) this.setPeerStreamWindow(streamWindow);
    this.push(frameWithRoom(FrameType.SETTINGS, Flag.ACK, 0, 0));
  }

  /** A new SETTINGS_INITIAL_WINDOW_SIZE moves every open stream's window by the difference. */
  private setPeerStreamWindow(value: number): void {
    if (value > MAX_WINDOW_BYTES)
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
    const delta = value - this.peerStreamWindow;
    this.peerStreamWindow = value;
    for (const s of this.streams.values()) {
      s.sendWindow += delta;
      if (s.sendWindow > MAX_WINDOW_BYTES)
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "a stream window grew above 2^31-1");
    }
    if (delta > 0) for (const s of [...this.blocked]) this.pump(s);
  }

  private onPing(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING size");
    if (!(flags & Flag.ACK)) this.push(frame(FrameType.PING, Flag.ACK, 0, payload));
  }

  private onGoaway(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY size");
    // No more new streams; the ones open finish, then the connection closes. A server names the
    // last stream it will process: a client's streams above it were never seen and may be retried.
    this.goingAway = true;
    if (this.client) {
      const last = payload.readUInt32BE(0) & 0x7fffffff;
      for (const s of [...this.streams.values()])
        if (s.id > last) this.closeStream(s, ErrorCode.REFUSED_STREAM);
    }
    this.maybeFinish();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size");
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW_BYTES)
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      for (const s of [...this.blocked]) {
        this.pump(s);
        if (this.sendWindow <= 0) break;
      }
      return;
    }
    this.checkKnown(streamId, "WINDOW_UPDATE");
    const stream = this.streams.get(streamId);
    if (stream === undefined) return; // a closed stream: frames in flight are ignored
    if (increment === 0) throw new StreamError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW_BYTES)
      throw new StreamError(ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1");
    this.pump(stream);
  }

  private onRstStream(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size");
    this.checkKnown(streamId, "RST_STREAM");
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (!this.client) this.spendResetToken();
    this.closeStream(stream, payload.readUInt32BE(0));
  }

  private resetTokens = RESETS_BURST;
  private resetTokensAt = 0;

  private spendResetToken(): void {
    const now = performance.now();
    if (this.resetTokensAt > 0) {
      const refill = ((now - this.resetTokensAt) / 1000) * RESETS_PER_SECOND;
      this.resetTokens = Math.min(RESETS_BURST, this.resetTokens + refill);
    }
    this.resetTokensAt = now;
    if (this.resetTokens < 1)
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset by the client");
    this.resetTokens -= 1;
  }

  /** Frames other than HEADERS may not name a stream the client has not opened yet. */
  private checkKnown(streamId: number, what: string): void {
    if (streamId > this.lastStreamId)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `${what} on idle stream ${streamId}`);
  }

  /** The payload of a frame less its padding (and, for HEADERS, its priority fields). */
  private unpad(flags: number, payload: Buffer, priorityBytes: number): Buffer {
    let start = priorityBytes;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded frame too short");
      start += 1;
      end -= payload[0]!;
    }
    if (end < start) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame");
    return payload.subarray(start, end);
  }

  private onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    this.checkKnown(streamId, "DATA");
    // The whole frame, padding included, counts against both windows; the client gets it back at once
    // for the connection and as the stream's reader takes it for the stream.
    this.receiveWindow -= payload.length;
    if (this.receiveWindow < 0)
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "data beyond the connection window");
    this.creditConnection(payload.length);
    const stream = this.streams.get(streamId);
    if (stream === undefined || stream.remoteEnded) {
      if (stream === undefined && streamId <= this.lastStreamId) return; // closed: in flight, ignored
      throw new StreamError(ErrorCode.STREAM_CLOSED, `DATA after the end of stream ${streamId}`);
    }
    stream.receiveWindow -= payload.length;
    if (stream.receiveWindow < 0)
      throw new StreamError(ErrorCode.FLOW_CONTROL_ERROR, "data beyond the window");
    const data = this.unpad(flags, payload, 0);
    if (data.length > 0) stream.onData?.(data);
    if (flags & Flag.END_STREAM) this.remoteEnd(stream, []);
    else this.creditStream(stream);
  }

  private creditConnection(bytes: number): void {
    // Credited in bulk once half the window is used, not per frame.
    const window = this.options.connectionWindowBytes;
    if (bytes > 0 && window - this.receiveWindow >= window / 2) {
      this.push(windowUpdateFrame(0, window - this.receiveWindow));
      this.receiveWindow = window;
    }
  }

  /** @internal Credits the peer once half the stream's window is used (unless the reader holds it). */
  creditStream(stream: H2Stream): void {
    if (stream.creditHeld || stream.remoteEnded || this.streams.get(stream.id) !== stream) return;
    const window = this.options.streamWindowBytes;
    if (window - stream.receiveWindow >= window / 2) {
      this.push(windowUpdateFrame(stream.id, window - stream.receiveWindow));
      stream.receiveWindow = window;
    }
  }

  private onHeadersFrame(flags: number, streamId: number, payload: Buffer): void {
    // Streams are the client's (odd); a client takes HEADERS only on streams it has opened.
    if (streamId === 0 || streamId % 2 === 0 || (this.client && streamId > this.lastStreamId))
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
    const fragment = this.unpad(flags, payload, flags & Flag.PRIORITY ? 5 : 0);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) {
      this.onHeaderBlock(streamId, endStream, fragment);
      return;
    }
    this.headerBlock = { streamId, endStream, parts: [Buffer.from(fragment)], bytes: fragment.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.headerBlock;
    if (block === null || block.streamId !== streamId)
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without its HEADERS");
    block.bytes += payload.length;
    // Bytes and frames are both bounded: a flood of empty CONTINUATION frames costs memory too.
    if (block.bytes > HEADER_BLOCK_BYTES_MAX || block.parts.length >= HEADER_BLOCK_FRAMES_MAX)
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    block.parts.push(Buffer.from(payload));
    if (!(flags & Flag.END_HEADERS)) return;
    this.headerBlock = null;
    this.onHeaderBlock(streamId, block.endStream, Buffer.concat(block.parts));
  }

  /** A complete header block: decoded always (the HPACK table must stay in step), then used. */
  private onHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let headers: string[];
    try {
      headers = this.decoder.decode(block, 0, block.length);
    } catch (err) {
      if (err instanceof HeaderListTooLargeError) {
        // The table is in step: only this stream is refused (a client's gRPC reads the reset as
        // RESOURCE_EXHAUSTED). A new stream's ID counts as used.
        if (!this.client && streamId > this.lastStreamId) this.lastStreamId = streamId;
        throw new StreamError(ErrorCode.ENHANCE_YOUR_CALM, err.message);
      }
      if (err instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const existing = this.streams.get(streamId);
    if (existing !== undefined && this.client && !existing.responseSeen) {
      existing.responseSeen = true;
      existing.onHeaders?.(headers);
      if (endStream) this.remoteEnd(existing, headers);
      return;
    }
    if (existing !== undefined) {
      // Trailers: they end the request (the response, on a client).
      if (existing.remoteEnded || !endStream)
        throw new StreamError(ErrorCode.PROTOCOL_ERROR, "HEADERS after the request headers must end it");
      this.remoteEnd(existing, headers);
      return;
    }
    // A client's closed stream (reset by this side): a response in flight is ignored.
    if (this.client) return;
    if (streamId <= this.lastStreamId) {
      // A closed stream (reset by this side): trailers in flight are ignored; a reuse is an error.
      if (endStream) return;
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `stream ${streamId} reused`);
    }
    this.lastStreamId = streamId;
    this.openStream(streamId, endStream, headers);
  }

  private openStream(streamId: number, endStream: boolean, headers: string[]): void {
    if (this.goingAway || this.streams.size >= this.options.maxConcurrentStreams) {
      this.sendReset(streamId, ErrorCode.REFUSED_STREAM);
      return;
    }
    const problem = requestHeaderProblem(headers);
    if (problem !== null) {
      this.sendReset(streamId, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    const stream = new H2Stream(streamId, this, this.peerStreamWindow, this.options.streamWindowBytes);
    this.streams.set(streamId, stream);
    this.options.onStream(stream, headers);
    if (endStream && !stream.remoteEnded) this.remoteEnd(stream, []);
  }

  private remoteEnd(stream: H2Stream, trailers: readonly string[]): void {
    stream.remoteEnded = true;
    if (stream.localEnded) this.forget(stream);
    stream.onEnd?.(trailers);
  }

  // ---- output ----

  /** @internal Sends a header block as HEADERS (+ CONTINUATION frames when it exceeds a frame). */
  sendHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    const max = this.peerMaxFrameBytes;
    const endFlag = endStream ? Flag.END_STREAM : 0;
    if (block.length <= max) {
      this.writeFrame(FrameType.HEADERS, endFlag | Flag.END_HEADERS, streamId, block);
      return;
    }
    this.writeFrame(FrameType.HEADERS, endFlag, streamId, block.subarray(0, max));
    for (let at = max; at < block.length; at += max) {
      const last = at + max >= block.length;
      const part = block.subarray(at, Math.min(at + max, block.length));
      this.writeFrame(FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, streamId, part);
    }
  }

  /** @internal Sends what the windows allow of a stream's queue, then its end when the queue is empty. */
  pump(stream: H2Stream): void {
    if (this.closed || stream.localEnded) return;
    while (stream.queue.length > 0) {
      const room = Math.min(stream.sendWindow, this.sendWindow, this.peerMaxFrameBytes);
      // The socket's backlog is a window too: a client that grants HTTP/2 window but does not read
      // the socket would otherwise have every byte written for it held in memory. Held back here,
      // the stream's queue grows, `write` returns false and its writer waits for `onDrain`.
      if (room <= 0 || this.socket.writableLength + this.outBytes > SOCKET_BACKLOG_BYTES_MAX) {
        this.blocked.add(stream);
        return;
      }
      const head = stream.queue[0]!;
      const n = Math.min(room, head.length);
      this.writeFrame(FrameType.DATA, 0, stream.id, head.subarray(0, n));
      stream.sendWindow -= n;
      this.sendWindow -= n;
      stream.queuedBytes -= n;
      if (n === head.length) stream.queue.shift();
      else stream.queue[0] = head.subarray(n);
    }
    this.blocked.delete(stream);
    if (stream.pendingEnd !== undefined) {
      if (stream.pendingEnd === null) this.writeFrame(FrameType.DATA, Flag.END_STREAM, stream.id, EMPTY);
      else this.sendHeaderBlock(stream.id, stream.pendingEnd, true);
      stream.pendingEnd = undefined;
      this.localEnd(stream);
      return;
    }
    if (stream.drainOwed) {
      stream.drainOwed = false;
      queueMicrotask(() => stream.localEnded || stream.onDrain?.());
    }
  }

  /** Appends one frame to this turn's output. */
  private writeFrame(type: number, flags: number, streamId: number, payload: Uint8Array): void {
    if (this.closed) return;
    const length = payload.length;
    const at = this.reserve(FRAME_HEADER_BYTES + length);
    const out = this.out;
    out[at] = length >>> 16;
    out[at + 1] = (length >>> 8) & 0xff;
    out[at + 2] = length & 0xff;
    out[at + 3] = type;
    out[at + 4] = flags;
    out.writeUInt32BE(streamId, at + 5);
    out.set(payload, at + FRAME_HEADER_BYTES);
  }

  /** Room for `bytes` more in the output; returns where they go. */
  private reserve(bytes: number): number {
    const at = this.outBytes;
    if (at + bytes > this.out.length) {
      const bigger = Buffer.allocUnsafe(Math.max(OUT_BYTES_MIN, 2 * (at + bytes)));
      this.out.copy(bigger, 0, 0, at);
      this.out = bigger;
    }
    this.outBytes = at + bytes;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return at;
  }

  /** @internal This side sent END_STREAM. */
  localEnd(stream: H2Stream): void {
    stream.localEnded = true;
    if (stream.remoteEnded) {
      this.forget(stream);
      return;
    }
    // A client's request is complete: the response follows.
    if (this.client) return;
    // The response is complete before the request: ask the client to stop sending (RFC 9113 §8.1).
    // Whoever still feeds the request (a forwarded call) learns that it is over.
    this.push(rstStreamFrame(stream.id, ErrorCode.NO_ERROR));
    this.closeStream(stream, ErrorCode.NO_ERROR);
  }

  /** @internal This side abandons the stream (its owner asked: no onClose). */
  resetStream(stream: H2Stream, code: number): void {
    this.push(rstStreamFrame(stream.id, code));
    this.closeStream(stream);
  }

  /** A stream error: RST_STREAM, and the stream's owner is told when it was still open. */
  private sendReset(streamId: number, code: number): void {
    this.push(rstStreamFrame(streamId, code));
    const stream = this.streams.get(streamId);
    if (stream === undefined || stream.localEnded) return;
    // A client whose frames make this side reset its open streams costs as much as one resetting
    // them itself (the rapid-reset attack by another route): it spends the same tokens.
    if (!this.client) this.spendResetToken();
    this.closeStream(stream, code);
  }

  /** Over on both sides; `onClose` runs with `code` when one is given. */
  private closeStream(stream: H2Stream, code?: number): void {
    stream.localEnded = true;
    stream.remoteEnded = true;
    this.forget(stream);
    if (code !== undefined) stream.onClose?.(code);
  }

  private forget(stream: H2Stream): void {
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    stream.queue = [];
    stream.queuedBytes = 0;
    if (this.goingAway) this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.goingAway && this.streams.size === 0 && !this.closed) {
      this.flush();
      this.socket.end();
    }
  }

  /** Appends a whole frame made elsewhere (the less frequent control frames). */
  private push(frameBytes: Buffer): void {
    if (this.closed) return;
    const at = this.reserve(frameBytes.length);
    frameBytes.copy(this.out, at);
  }

  /** Writes this turn's frames so far now; the flush scheduled for the end of the turn finds the rest. */
  flushNow(): void {
    if (this.outBytes > 0) this.flush();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.outBytes === 0 || this.closed || this.socket.destroyed) return;
    // The socket keeps the buffer until it is written: the next turn starts a new one.
    const out = this.out.subarray(0, this.outBytes);
    this.out = EMPTY;
    this.outBytes = 0;
    this.socket.write(out);
    // A client that sends requests but does not read the answers is not read from until it does.
    if (this.socket.writableLength > SOCKET_BACKLOG_BYTES_MAX) this.socket.pause();
  }

  private fail(err: unknown): void {
    const code = err instanceof ConnectionError ? err.code : ErrorCode.INTERNAL_ERROR;
    const message = err instanceof Error ? err.message : String(err);
    this.push(goawayFrame(this.peerLastStreamId(), code, message));
    this.flush();
    this.socket.end();
    // A peer that never closes its side would keep the socket half-open for good (a file
    // descriptor, and a listener that cannot close): it is destroyed once the GOAWAY had time to go.
    const socket = this.socket;
    const destroy = setTimeout(() => socket.destroy(), FAILED_CLOSE_MS);
    destroy.unref();
    socket.once("close", () => clearTimeout(destroy));
    this.teardown(err instanceof ConnectionError ? undefined : (err as Error));
  }

  private armKeepalive(delayMs: number): void {
    this.keepaliveTimer = setTimeout(() => this.keepaliveCheck(), delayMs);
    this.keepaliveTimer.unref();
  }

  /**
   * As grpc-go's server keepalive: a peer heard from since the last look is alive; one silent for
   * the interval gets a PING, and one still silent when the PING's timeout runs out is gone.
   */
  private keepaliveCheck(): void {
    if (this.closed) return;
    // Output the peer takes counts as well: while an answer waits for the socket this side stops
    // reading (backpressure), so a client busy taking it would look silent. With output queued at
    // the last look (the kernel's buffer full), a write finishing since (the queue shrinking, or
    // the next write handed over) means the peer took bytes. A peer that takes nothing for the interval
    // and the timeout together is gone, as grpc-go would find.
    const queued = this.socket.writableLength;
    const dispatched = this.socket.bytesWritten - queued;
    // (Writes of this side only add to the queue; they are handed over only once the one under
    // way has finished.)
    const outputMoved =
      this.queuedSeen > 0 && (queued < this.queuedSeen || dispatched !== this.dispatchedSeen);
    if (this.reads !== this.readsSeen || outputMoved) {
      this.readsSeen = this.reads;
      this.queuedSeen = queued;
      this.dispatchedSeen = dispatched;
      this.pingOutstanding = false;
      this.armKeepalive(this.options.keepaliveIntervalMs);
      return;
    }
    this.queuedSeen = queued;
    this.dispatchedSeen = dispatched;
    if (this.pingOutstanding) {
      // No GOAWAY worth waiting for: the peer reads nothing. Its streams are cancelled.
      this.socket.destroy();
      this.teardown(new Error("keepalive PING not answered in time"));
      return;
    }
    this.pingOutstanding = true;
    this.push(frame(FrameType.PING, 0, 0, KEEPALIVE_PING));
    this.flush();
    this.armKeepalive(this.options.keepaliveTimeoutMs);
  }

  private teardown(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (this.keepaliveTimer !== null) clearTimeout(this.keepaliveTimer);
    const open = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const s of open) {
      s.localEnded = true;
      s.remoteEnded = true;
      s.onClose?.(ErrorCode.CANCEL);
    }
    this.options.onClose?.(error);
  }
}

const CONNECTION_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/** Why a request's header list is malformed (RFC 9113 §8.2–8.3), or null when it is not. */
export function requestHeaderProblem(headers: readonly string[]): string | null {
  let regularSeen = false;
  let method = false;
  let path = false;
  let scheme = false;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name.length === 0) return "empty header name";
    if (name !== name.toLowerCase()) return `header name ${name} is not lower case`;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (regularSeen) return `pseudo-header ${name} after a regular header`;
      if (name === ":method") method = true;
      else if (name === ":path") path = headers[i + 1] !== "";
      else if (name === ":scheme") scheme = true;
      else if (name !== ":authority") return `unknown pseudo-header ${name}`;
      continue;
    }
    regularSeen = true;
    if (CONNECTION_HEADERS.has(name)) return `connection-specific header ${name}`;
    if (name === "te" && headers[i + 1] !== "trailers") return "te other than trailers";
  }
  if (!method || !path || !scheme) return "missing :method, :path or :scheme";
  return null;
}
