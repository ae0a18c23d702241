// The lean HTTP/2 connection against real clients (Node's http2, nghttp2's h2load) and raw frames.
import { execFile } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { promisify } from "node:util";
import { afterEach, describe, expect, it, vi } from "vitest";
import { H2Connection, type H2ConnectionOptions, type H2Stream } from "./connection.js";
import {
  CLIENT_PREFACE,
  ErrorCode,
  FRAME_HEADER_BYTES,
  Flag,
  FrameType,
  frame,
  goawayFrame,
  settingsFrame,
} from "./frames.js";
import { encodeHeaders } from "./hpack.js";

const servers: Server[] = [];
const sessions: http2.ClientHttp2Session[] = [];
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  for (const s of servers.splice(0)) {
    s.close();
  }
  for (const c of cleanups.splice(0)) c();
});

type Handler = (stream: H2Stream, headers: Map<string, string>) => void;

async function serve(
  handler: Handler,
  options: Partial<H2ConnectionOptions> = {},
  connections: H2Connection[] = [],
): Promise<number> {
  const server = createServer((socket) => {
    connections.push(
      new H2Connection(socket, {
        ...options,
        onStream: (stream, flat) => {
          const headers = new Map<string, string>();
          for (let i = 0; i < flat.length; i += 2) headers.set(flat[i]!, flat[i + 1]!);
          handler(stream, headers);
        },
      }),
    );
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

/** Answers with the request body, headers carrying the path, and trailers counting the bytes. */
const echo: Handler = (stream, headers) => {
  const chunks: Buffer[] = [];
  stream.onData = (c) => chunks.push(Buffer.from(c));
  stream.onEnd = () => {
    const body = Buffer.concat(chunks);
    stream.respond([
      [":status", "200"],
      ["x-path", headers.get(":path") ?? ""],
    ]);
    stream.write(body);
    stream.end([["x-bytes", String(body.length)]]);
  };
};

function client(port: number, settings?: http2.Settings): http2.ClientHttp2Session {
  const s = http2.connect(`http://127.0.0.1:${port}`, { settings });
  sessions.push(s);
  return s;
}

interface Reply {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function request(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": path, ...extra });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      headers = h;
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve({ headers, trailers, body: Buffer.concat(chunks) }));
    req.on("error", reject);
    req.end(body);
  });
}

describe("H2Connection", () => {
  it("serves many concurrent requests from Node's http2 client, each with its own answer", async () => {
    const port = await serve(echo);
    const session = client(port);
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) => request(session, `/svc/m${i}`, Buffer.alloc(i * 7, i))),
    );
    replies.forEach((r, i) => {
      expect(r.headers[":status"]).toBe(200);
      expect(r.headers["x-path"]).toBe(`/svc/m${i}`);
      expect(r.body.equals(Buffer.alloc(i * 7, i))).toBe(true);
      expect(r.trailers["x-bytes"]).toBe(String(i * 7));
    });
  });

  it("keeps to a client's small windows and fills its own: megabytes both ways arrive intact", async () => {
    const port = await serve(echo, { streamWindowBytes: 64 << 10, connectionWindowBytes: 128 << 10 });
    // The client's 16 KiB stream window makes the 3 MiB answer wait for many WINDOW_UPDATEs.
    const session = client(port, { initialWindowSize: 16 << 10 });
    const body = Buffer.alloc(3 << 20);
    for (let i = 0; i < body.length; i += 4) body.writeUInt32BE(i, i);
    const replies = await Promise.all([request(session, "/a", body), request(session, "/b", body)]);
    for (const r of replies) {
      expect(r.body.length).toBe(body.length);
      expect(r.body.equals(body)).toBe(true);
    }
  });

  it("takes and sends header blocks larger than a frame (CONTINUATION)", async () => {
    const big = "v".repeat(40_000);
    const port = await serve(
      (stream, headers) => {
        stream.onEnd = () => {
          stream.respond([
            [":status", "200"],
            ["x-echo", headers.get("x-big") ?? "missing"],
          ]);
          stream.end();
        };
      },
      { maxHeaderListBytes: 128 << 10 },
    );
    const reply = await request(client(port), "/big", Buffer.alloc(0), { "x-big": big });
    expect(reply.headers["x-echo"]).toBe(big);
  });

  it("refuses only the stream whose header list is too large; the connection goes on", async () => {
    // Proves a too-large header list is a stream error (RST_STREAM ENHANCE_YOUR_CALM): the HPACK
    // table stays in step, so later requests on the same connection, repeating headers the refused
    // block added to the table, are served.
    const port = await serve(echo, { maxHeaderListBytes: 1024 });
    const session = client(port);
    const refused = await new Promise<number>((resolve) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/big",
        "x-big": "v".repeat(4000),
        "x-keep": "k",
      });
      req.on("error", () => {});
      req.on("close", () => resolve(req.rstCode));
      req.end();
    });
    expect(refused).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    for (let i = 0; i < 3; i++) {
      const reply = await request(session, `/after-${i}`, Buffer.from("ok"), { "x-keep": "k" });
      expect(reply.headers["x-path"]).toBe(`/after-${i}`);
      expect(reply.body.toString()).toBe("ok");
    }
    expect(session.closed || session.destroyed).toBe(false);
  });

  it("tells the handler when the client resets a stream", async () => {
    const closed: number[] = [];
    let opened!: () => void;
    const streamOpened = new Promise<void>((r) => {
      opened = r;
    });
    const port = await serve((stream) => {
      stream.onClose = (code) => closed.push(code);
      opened();
    });
    const session = client(port);
    const req = session.request({ ":method": "POST", ":path": "/slow" });
    req.on("error", () => {});
    await streamOpened;
    req.close(http2.constants.NGHTTP2_CANCEL);
    await expect.poll(() => closed, { timeout: 5000 }).toEqual([ErrorCode.CANCEL]);
  });

  it("keeps a connection whose client cancels hundreds of calls within the burst allowance", async () => {
    let opened = 0;
    const port = await serve((stream, headers) => {
      opened += 1;
      if (headers.get(":path") === "/last") echo(stream, headers);
    });
    const session = client(port);
    for (let i = 0; i < 500; i++) {
      const req = session.request({ ":method": "POST", ":path": "/cancelled" });
      req.on("error", () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
    }
    await expect.poll(() => opened, { timeout: 10_000 }).toBeGreaterThan(0);
    const reply = await request(session, "/last", Buffer.from("still here"));
    expect(reply.body.toString()).toBe("still here");
  });

  it("answers PING and lets a graceful close finish the open streams first", async () => {
    let release!: () => void;
    const connections: H2Connection[] = [];
    const port = await serve(
      (stream) => {
        stream.onEnd = () => {
          release = () => {
            stream.respond([[":status", "200"]]);
            stream.end([["x-done", "1"]]);
          };
        };
      },
      {},
      connections,
    );
    const session = client(port);
    await once(session, "remoteSettings");
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    const pending = request(session, "/held", Buffer.from("x"));
    await expect.poll(() => connections[0]?.streamCount, { timeout: 5000 }).toBe(1);
    await expect.poll(() => typeof release, { timeout: 5000 }).toBe("function");
    const goaway = once(session, "goaway");
    connections[0]!.goaway();
    await goaway;
    release();
    expect((await pending).trailers["x-done"]).toBe("1");
    await once(session, "close");
  });

  it("pings a client silent for the keepalive interval and drops it, cancelling its streams, when it stays silent", async () => {
    // Proves server keepalive (etcd's --grpc-keepalive-interval/-timeout): a client that vanished
    // without closing its connection gets one PING, and when nothing comes back its open stream
    // is cancelled (a watch or keep-alive stream of a dead client ends) and the socket closed.
    const closes: number[] = [];
    const port = await serve(
      (stream) => {
        stream.onClose = (code) => closes.push(code);
      },
      { keepaliveIntervalMs: 100, keepaliveTimeoutMs: 100 },
    );
    const { frames } = await raw(port, [
      ...opening,
      frame(FrameType.HEADERS, Flag.END_HEADERS, 1, requestBlock),
    ]);
    expect(frames.filter((f) => f.type === FrameType.PING).map((f) => f.flags)).toEqual([0]);
    await expect.poll(() => closes, { timeout: 5000 }).toEqual([ErrorCode.CANCEL]);
  });

  it("keeps a client that answers the keepalive PINGs", async () => {
    // Proves the other half: a live but idle client (Node's http2 acknowledges every PING) is
    // pinged again and again and stays connected.
    const port = await serve(echo, { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 50 });
    const session = client(port);
    let pings = 0;
    session.on("ping", () => pings++);
    await expect.poll(() => pings, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    expect((await request(session, "/still", Buffer.from("here"))).body.toString()).toBe("here");
  });

  it("judges a connection with queued output by the output the peer takes, not by what it sends", () => {
    // Proves the keepalive under backpressure: with a large answer queued this side stops reading,
    // so a peer taking the answer sends nothing it would see. Output moving (the queue shrinking)
    // keeps the connection; output stuck for the interval and the timeout drops it, as grpc-go
    // would; without queued output only reads count (this side's own PING is not progress).
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const socket = new FakeSocket();
      let closed = false;
      const connection = new H2Connection(socket as unknown as Socket, {
        onStream: () => {},
        onClose: () => {
          closed = true;
        },
        keepaliveIntervalMs: 1000,
        keepaliveTimeoutMs: 1000,
      });
      socket.emit("data", Buffer.concat([CLIENT_PREFACE, settingsFrame([])]));
      const pings = () =>
        parseFrames(Buffer.concat(socket.written)).filter((f) => f.type === FrameType.PING).length;
      // A large answer queued: the kernel takes some of it each second, the peer sends nothing.
      socket.writableLength = 8 << 20;
      socket.bytesWritten += 8 << 20;
      for (let second = 0; second < 6; second++) {
        vi.advanceTimersByTime(1000);
        socket.writableLength -= 1 << 20;
      }
      expect([closed, connection.open]).toEqual([false, true]);
      // Now stuck: nothing more is taken.
      vi.advanceTimersByTime(4000);
      expect(closed).toBe(true);
      expect(pings()).toBeGreaterThanOrEqual(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it("holds a stream's data back while the socket's backlog is full, and goes on when it drains", async () => {
    // Proves the socket backlog acts as a window: a client that grants all the HTTP/2 window it
    // can but does not read the socket gets nothing more written for it (the writer is told to
    // wait), so memory does not grow with what the server would send it (CVE-2019-9517).
    const socket = new FakeSocket();
    let stream: H2Stream | undefined;
    new H2Connection(socket as unknown as Socket, {
      onStream: (s) => {
        stream = s;
      },
    });
    socket.emit(
      "data",
      Buffer.concat([
        CLIENT_PREFACE,
        settingsFrame([[4, 0x7fffffff]]),
        frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0x7f, 0xff, 0x00, 0x00])),
        frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, requestBlock),
      ]),
    );
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    await turn();
    const dataBytes = () =>
      parseFrames(Buffer.concat(socket.written))
        .filter((f) => f.type === FrameType.DATA)
        .reduce((n, f) => n + f.payload.length, 0);
    stream!.respond([[":status", "200"]]);
    let drained = 0;
    stream!.onDrain = () => drained++;
    socket.writableLength = 5 << 20; // the peer has not taken 5 MB
    const accepted = Array.from({ length: 10 }, () => stream!.write(Buffer.alloc(16 << 10, 7)));
    await turn();
    expect(dataBytes()).toBe(0);
    expect(accepted.at(-1)).toBe(false);
    socket.writableLength = 0;
    socket.emit("drain");
    await turn();
    await turn();
    expect(dataBytes()).toBe(10 * (16 << 10));
    expect(drained).toBe(1);
  });

  it("serves h2load's gRPC-shaped load without a failed request", async () => {
    const reply = Buffer.alloc(205, 1);
    const port = await serve((stream) => {
      stream.onEnd = () => {
        stream.respond([
          [":status", "200"],
          ["content-type", "application/grpc"],
        ]);
        stream.write(reply);
        stream.end([["grpc-status", "0"]]);
      };
    });
    const dir = mkdtempSync(join(tmpdir(), "h2load-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const body = join(dir, "request");
    writeFileSync(body, Buffer.from([0, 0, 0, 0, 0]));
    const { stdout } = await promisify(execFile)("h2load", [
      "-n",
      "20000",
      "-c",
      "2",
      "-m",
      "64",
      "-d",
      body,
      `http://127.0.0.1:${port}/t.S/M`,
    ]);
    expect(stdout).toMatch(/20000 succeeded, 0 failed, 0 errored/);
  });
});

/**
 * A socket whose output queue the test sets: as Node's, a write made while output is queued (a
 * write under way) joins the queue rather than being handed over.
 */
class FakeSocket extends EventEmitter {
  writableLength = 0;
  bytesWritten = 0;
  destroyed = false;
  readonly written: Buffer[] = [];
  write(chunk: Buffer): boolean {
    this.written.push(Buffer.from(chunk));
    this.bytesWritten += chunk.length;
    if (this.writableLength > 0) this.writableLength += chunk.length;
    return true;
  }
  end(): void {}
  pause(): void {}
  resume(): void {}
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

/** Polls `done` until it holds, failing after 10 s (no sleeps as synchronisation). */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("condition not met within 10 s");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A raw client: sends bytes, collects what comes back until the server closes. */
async function raw(port: number, bytes: Buffer[]): Promise<{ frames: RawFrame[] }> {
  const socket: Socket = connect(port, "127.0.0.1");
  await once(socket, "connect");
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  for (const b of bytes) socket.write(b);
  await once(socket, "close");
  return { frames: parseFrames(Buffer.concat(chunks)) };
}

interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

function parseFrames(buf: Buffer): RawFrame[] {
  const frames: RawFrame[] = [];
  for (let at = 0; at + FRAME_HEADER_BYTES <= buf.length; ) {
    const length = buf.readUIntBE(at, 3);
    frames.push({
      type: buf[at + 3]!,
      flags: buf[at + 4]!,
      streamId: buf.readUInt32BE(at + 5),
      payload: buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length),
    });
    at += FRAME_HEADER_BYTES + length;
  }
  return frames;
}

function goawayCode(frames: RawFrame[]): number | undefined {
  const g = frames.find((f) => f.type === FrameType.GOAWAY);
  return g?.payload.readUInt32BE(4);
}

const requestBlock = encodeHeaders([
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/x"],
]);
const opening = [CLIENT_PREFACE, settingsFrame([])];

describe("H2Connection refuses malformed input", () => {
  it("closes a connection that does not open with the HTTP/2 preface", async () => {
    const port = await serve(echo);
    const { frames } = await raw(port, [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")]);
    expect(goawayCode(frames)).toBe(ErrorCode.PROTOCOL_ERROR);
  });

  it("closes with FRAME_SIZE_ERROR on a frame larger than allowed", async () => {
    const port = await serve(echo);
    const { frames } = await raw(port, [...opening, frame(FrameType.DATA, 0, 1, Buffer.alloc(20_000))]);
    expect(goawayCode(frames)).toBe(ErrorCode.FRAME_SIZE_ERROR);
  });

  it("closes with PROTOCOL_ERROR on HEADERS for an even stream and on DATA for an idle one", async () => {
    const port = await serve(echo);
    const even = await raw(port, [...opening, frame(FrameType.HEADERS, Flag.END_HEADERS, 2, requestBlock)]);
    expect(goawayCode(even.frames)).toBe(ErrorCode.PROTOCOL_ERROR);
    const idle = await raw(port, [...opening, frame(FrameType.DATA, 0, 7, Buffer.from("x"))]);
    expect(goawayCode(idle.frames)).toBe(ErrorCode.PROTOCOL_ERROR);
  });

  it("closes with COMPRESSION_ERROR on a header block that does not decode", async () => {
    const port = await serve(echo);
    // Indexed field 0 does not exist.
    const { frames } = await raw(port, [
      ...opening,
      frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])),
    ]);
    expect(goawayCode(frames)).toBe(ErrorCode.COMPRESSION_ERROR);
  });

  it("closes with ENHANCE_YOUR_CALM on a flood of empty CONTINUATION frames", async () => {
    const port = await serve(echo);
    const empty = frame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(0));
    const { frames } = await raw(port, [
      ...opening,
      frame(FrameType.HEADERS, 0, 1, Buffer.from([0x83])),
      Buffer.concat(Array(1000).fill(empty)),
    ]);
    expect(goawayCode(frames)).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  });

  it("closes with ENHANCE_YOUR_CALM when a client resets streams faster than the allowed rate", async () => {
    const port = await serve(() => {});
    const frames: Buffer[] = [...opening];
    for (let id = 1; id <= 2 * 1200; id += 2) {
      frames.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, requestBlock));
      frames.push(frame(FrameType.RST_STREAM, 0, id, Buffer.from([0, 0, 0, ErrorCode.CANCEL])));
    }
    const { frames: answer } = await raw(port, [Buffer.concat(frames)]);
    expect(goawayCode(answer)).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  });

  it("closes with ENHANCE_YOUR_CALM when its own resets of a client's streams come faster than the allowed rate", async () => {
    // Proves the rapid-reset allowance also counts streams this side resets because of the
    // client's frames (here a WINDOW_UPDATE of 0 on each): a client need not reset them itself.
    const port = await serve(() => {});
    const frames: Buffer[] = [...opening];
    for (let id = 1; id <= 2 * 1200; id += 2) {
      frames.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, requestBlock));
      frames.push(frame(FrameType.WINDOW_UPDATE, 0, id, Buffer.from([0, 0, 0, 0])));
    }
    const { frames: answer } = await raw(port, [Buffer.concat(frames)]);
    expect(answer.filter((f) => f.type === FrameType.RST_STREAM).length).toBeGreaterThanOrEqual(1000);
    expect(goawayCode(answer)).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  });

  it("takes a SETTINGS frame of 100 entries and refuses a longer one (CVE-2020-11080)", async () => {
    // Proves a client cannot hold the event loop with one frame of thousands of window changes.
    const port = await serve(echo);
    const entries = (n: number) =>
      settingsFrame(Array.from({ length: n }, (_, i) => [4, i % 2 === 0 ? 0 : 65535] as [number, number]));
    const many = await raw(port, [CLIENT_PREFACE, entries(101)]);
    expect(goawayCode(many.frames)).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    const socket = connect(port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    await once(socket, "connect");
    const got: Buffer[] = [];
    socket.on("data", (c: Buffer) => got.push(c));
    socket.write(Buffer.concat([CLIENT_PREFACE, entries(100)]));
    await until(() =>
      parseFrames(Buffer.concat(got)).some((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK),
    );
    expect(goawayCode(parseFrames(Buffer.concat(got)))).toBeUndefined();
  });

  it("destroys the socket of a connection it failed when the client never closes its side", async () => {
    // Proves a failed connection does not stay half-open for good (a file descriptor each, and a
    // listener that could not close): after the GOAWAY and its FIN the socket is destroyed.
    const accepted: Socket[] = [];
    const server = createServer((socket) => {
      accepted.push(socket);
      new H2Connection(socket, { onStream: () => {} });
    });
    servers.push(server);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const socket = connect({
      port: (server.address() as AddressInfo).port,
      host: "127.0.0.1",
      allowHalfOpen: true,
    });
    cleanups.push(() => socket.destroy());
    await once(socket, "connect");
    socket.on("data", () => {});
    socket.write(Buffer.alloc(CLIENT_PREFACE.length)); // not the preface
    await until(() => accepted.length === 1 && accepted[0]!.destroyed);
  });

  it("resets a stream with malformed request headers and refuses streams beyond the limit", async () => {
    const seen: string[] = [];
    const port = await serve((_stream, h) => seen.push(h.get(":path") ?? ""), { maxConcurrentStreams: 1 });
    const upper = encodeHeaders([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/bad"],
      ["X-Upper", "1"],
    ]);
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.write(Buffer.concat([...opening, frame(FrameType.HEADERS, Flag.END_HEADERS, 1, upper)]));
    socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 3, requestBlock));
    socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 5, requestBlock));
    const resets = () =>
      parseFrames(Buffer.concat(chunks))
        .filter((f) => f.type === FrameType.RST_STREAM)
        .map((f) => [f.streamId, f.payload.readUInt32BE(0)]);
    await expect.poll(resets, { timeout: 5000 }).toEqual([
      [1, ErrorCode.PROTOCOL_ERROR],
      [5, ErrorCode.REFUSED_STREAM],
    ]);
    expect(seen).toEqual(["/x"]);
    socket.destroy();
  });
});

/** A raw server: records every frame a client sends; `reply` writes frames back. */
async function rawServer(): Promise<{
  port: number;
  frames: () => RawFrame[];
  reply: (...frames: Buffer[]) => void;
}> {
  let socket: Socket | undefined;
  const chunks: Buffer[] = [];
  const server = createServer((s) => {
    socket = s;
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", () => {});
    s.write(settingsFrame([]));
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const frames = () => {
    const all = Buffer.concat(chunks);
    const body = all.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE)
      ? all.subarray(CLIENT_PREFACE.length)
      : all;
    return parseFrames(body);
  };
  return {
    port: (server.address() as AddressInfo).port,
    frames,
    reply: (...f) => socket?.write(Buffer.concat(f)),
  };
}

describe("H2Connection as a client", () => {
  async function dial(port: number): Promise<H2Connection> {
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    let ready!: () => void;
    const up = new Promise<void>((r) => {
      ready = r;
    });
    const c = new H2Connection(socket, { role: "client", onReady: () => ready() });
    await up;
    return c;
  }

  it("exchanges a request and its response with Node's http2 server: headers, data, trailers", async () => {
    // Proves the client side of the framing: preface, odd streams, response headers, data, trailers.
    const server = http2.createServer();
    server.on("stream", (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        stream.respond({ ":status": 200, "x-path": String(headers[":path"]) }, { waitForTrailers: true });
        stream.on("wantTrailers", () =>
          stream.sendTrailers({ "x-bytes": String(Buffer.concat(chunks).length) }),
        );
        stream.end(Buffer.concat(chunks).reverse());
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    servers.push(server as unknown as Server);
    const c = await dial((server.address() as AddressInfo).port);
    const body = Buffer.alloc(200_000, 7); // beyond the server's initial stream window
    body[0] = 1;
    const reply = await new Promise<{ headers: string[]; data: Buffer; trailers: readonly string[] }>(
      (resolve) => {
        const s = c.request([
          [":method", "POST"],
          [":scheme", "http"],
          [":path", "/client"],
          [":authority", "localhost"],
        ]);
        let headers: string[] = [];
        const data: Buffer[] = [];
        s.onHeaders = (h) => {
          headers = [...h];
        };
        s.onData = (d) => data.push(Buffer.from(d));
        s.onEnd = (trailers) => resolve({ headers, data: Buffer.concat(data), trailers });
        s.write(body);
        s.end();
      },
    );
    expect(reply.headers).toEqual(expect.arrayContaining([":status", "200", "x-path", "/client"]));
    expect(reply.data.length).toBe(body.length);
    expect(reply.data[reply.data.length - 1]).toBe(1);
    expect(reply.trailers).toEqual(expect.arrayContaining(["x-bytes", String(body.length)]));
    expect(c.streamCount).toBe(0);
    c.destroy();
  });

  it("ends a trailers-only response, a reset stream, and streams a GOAWAY left out", async () => {
    // Proves: HEADERS with END_STREAM is headers and trailers at once; RST_STREAM reaches onClose;
    // GOAWAY refuses the streams above the server's last one and closes the connection to new ones.
    const server = await rawServer();
    const c = await dial(server.port);
    const outcome = (s: H2Stream) =>
      new Promise<string>((resolve) => {
        s.onEnd = (t) => resolve(`end ${t.join(" ")}`);
        s.onClose = (code) => resolve(`close ${code}`);
      });
    const open = () => c.request(requestBlock);
    const [s1, s3, s5, s7] = [open(), open(), open(), open()];
    expect([s1.id, s3.id, s5.id, s7.id]).toEqual([1, 3, 5, 7]);
    const results = [s1, s3, s5, s7].map(outcome);
    await expect
      .poll(() => server.frames().filter((f) => f.type === FrameType.HEADERS).length, { timeout: 5000 })
      .toBe(4);
    server.reply(
      frame(
        FrameType.HEADERS,
        Flag.END_HEADERS | Flag.END_STREAM,
        1,
        encodeHeaders([
          [":status", "200"],
          ["grpc-status", "5"],
        ]),
      ),
      frame(FrameType.RST_STREAM, 0, 3, Buffer.from([0, 0, 0, ErrorCode.INTERNAL_ERROR])),
      goawayFrame(5, ErrorCode.NO_ERROR),
    );
    expect(await results[0]).toBe("end :status 200 grpc-status 5");
    expect(await results[1]).toBe(`close ${ErrorCode.INTERNAL_ERROR}`);
    expect(await results[3]).toBe(`close ${ErrorCode.REFUSED_STREAM}`);
    expect(c.open).toBe(false);
    expect(() => c.request(requestBlock)).toThrow(/going away/);
    // Stream 5 was below the server's last stream: it still finishes.
    server.reply(
      frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 5, encodeHeaders([[":status", "200"]])),
    );
    expect(await results[2]).toBe("end :status 200");
    c.destroy();
  });

  it("closes the connection on a PUSH_PROMISE (push is disabled)", async () => {
    // Proves the client refuses server push as its SETTINGS announced.
    const server = await rawServer();
    const c = await dial(server.port);
    c.request(requestBlock);
    server.reply(
      frame(
        FrameType.PUSH_PROMISE,
        Flag.END_HEADERS,
        1,
        Buffer.concat([Buffer.from([0, 0, 0, 2]), requestBlock]),
      ),
    );
    await expect
      .poll(
        () =>
          server
            .frames()
            .find((f) => f.type === FrameType.GOAWAY)
            ?.payload.readUInt32BE(4),
        { timeout: 5000 },
      )
      .toBe(ErrorCode.PROTOCOL_ERROR);
    expect(c.open).toBe(false);
  });
});
