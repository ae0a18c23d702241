// A listener with lean methods is served by the kit's HTTP/2 front: lean calls answered there, every
// other call (streams in all directions, health) forwarded to grpc-js with its messages, status,
// cancellation and backpressure intact, and shutdown closing both.
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { domainErrors } from "../errors.js";
import { startGrpcServer } from "../grpc/grpc-server.js";
import { type HandedOverHttp, handedOverHttp } from "../http-server.js";
import { createLogger } from "../logging.js";
import { http2Get } from "../testing/http2-get.js";
import { parseUrlList } from "../urls.js";
import { CLIENT_PREFACE, Flag, FrameType, frame, settingsFrame } from "./frames.js";
import { looksLikeHttp1 } from "./grpc-front.js";
import { encodeHeaders } from "./hpack.js";
import { rawMethod } from "./test-methods.js";

/** The compiled kit, for child processes (the set-up compiles it before the tests run). */
const DAEMON_DIST = join(dirname(fileURLToPath(import.meta.url)), "../../dist");

/**
 * A child process's script (ES module) that starts a fronted server from the compiled kit, then
 * runs `then` (with `grpc` and `readdirSync` in scope).
 */
function serveInChild(then: string): string {
  const kit = (file: string) => JSON.stringify(pathToFileURL(join(DAEMON_DIST, file)).href);
  return `
    import { readdirSync } from "node:fs";
    import { Writable } from "node:stream";
    import { createLogger, parseUrlList, startGrpcServer } from ${kit("index.js")};
    import { rawMethod } from ${kit("h2/test-methods.js")};
    const grpc = await startGrpcServer({
      urls: parseUrlList("http://127.0.0.1:0"),
      services: [{
        definition: { Echo: rawMethod("test.v1.Front", "Echo", false, false) },
        implementation: { Echo: (call, cb) => cb(null, call.request) },
        leanUnaryMethods: ["Echo"],
      }],
      logger: createLogger({ name: "t", destination: new Writable({ write: (_c, _e, d) => d() }) }),
    });
    ${then}
  `;
}

const method = (name: string, requestStream: boolean, responseStream: boolean) =>
  rawMethod("test.v1.Front", name, requestStream, responseStream);
const definition = {
  Echo: method("Echo", false, false),
  Fail: method("Fail", false, false),
  Many: method("Many", false, true),
  Sum: method("Sum", true, false),
  Refuse: method("Refuse", true, false),
  Chat: method("Chat", true, true),
};

/** A DomainError handed to the callback as it is: the kit maps it to its status as it maps a thrown one. */
const refusal = (message: string) =>
  domainErrors.failedPrecondition("TEST_REFUSED", message) as unknown as ServiceError;

const cancelled: string[] = [];
const implementation = {
  Echo: (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => cb(null, call.request),
  Fail: (_call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) =>
    cb(refusal("no such thing"), null),
  /** `count` messages of `size` bytes, each filled with its index; waits on backpressure. */
  Many: (call: ServerWritableStream<Buffer, Buffer>) => {
    const count = call.request.readUInt32BE(0);
    const size = call.request.readUInt32BE(4);
    call.on("cancelled", () => cancelled.push("Many"));
    let i = 0;
    const more = () => {
      while (i < count && !call.cancelled) {
        const ok = call.write(Buffer.alloc(size, i++ % 256));
        if (!ok) {
          call.once("drain", more);
          return;
        }
      }
      if (i === count) call.end();
    };
    more();
  },
  Sum: (call: ServerReadableStream<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
    let bytes = 0;
    call.on("data", (m: Buffer) => {
      bytes += m.length;
    });
    call.on("end", () => cb(null, Buffer.from(String(bytes))));
  },
  /** Answers at the first message, before the client has finished sending. */
  Refuse: (call: ServerReadableStream<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
    call.once("data", () => cb(refusal("refused early"), null));
  },
  Chat: (call: ServerDuplexStream<Buffer, Buffer>) => {
    call.on("data", (m: Buffer) => call.write(Buffer.concat([Buffer.from("re:"), m])));
    call.on("end", () => call.end());
  },
};

const Client = makeGenericClientConstructor(definition, "Front");
type AnyClient = InstanceType<typeof Client> & Record<string, (...args: unknown[]) => unknown>;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(
  shutdownTimeoutMs = 2000,
  http1?: (socket: Socket) => void,
  http2?: HandedOverHttp["h2"],
) {
  const grpc = await startGrpcServer({
    urls: parseUrlList("http://127.0.0.1:0"),
    services: [{ definition, implementation, leanUnaryMethods: ["Echo", "Fail"] }],
    ...(http1 ? { http1 } : {}),
    ...(http2 ? { http2 } : {}),
    logger: createLogger({ name: "t", destination: new Writable({ write: (_c, _e, d) => d() }) as never }),
    maxReceiveMessageBytes: 8 << 20,
    maxSendMessageBytes: 8 << 20,
    shutdownTimeoutMs,
  });
  const client = new Client(`127.0.0.1:${grpc.urls[0]!.port}`, credentials.createInsecure(), {
    "grpc.max_receive_message_length": 8 << 20,
  }) as AnyClient;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    client.close();
    await grpc.shutdown();
  };
  cleanups.push(stop);
  return { grpc, client, stop };
}

function unary(client: AnyClient, name: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client[name]!(request, new Metadata(), (err: ServiceError | null, r: Buffer) =>
      err ? reject(err) : resolve(r),
    ),
  );
}

describe("looksLikeHttp1", () => {
  it("tells an HTTP/1.x request line from the HTTP/2 preface, also cut short", () => {
    // Proves the sniff of a fronted port's first read: only a request line goes to HTTP/1.x.
    const yes = ["GET /health HTTP/1.1\r\n", "HEAD / HTTP/1.0\r\n", "OPTIONS * HTTP/1.1\r\n"];
    const no = [CLIENT_PREFACE.toString("latin1"), "PRI * HTTP/2", "P", "", "\x16\x03\x01", "get / HTTP/1.1"];
    expect(yes.map((t) => looksLikeHttp1(Buffer.from(t, "latin1")))).toEqual(yes.map(() => true));
    expect(no.map((t) => looksLikeHttp1(Buffer.from(t, "latin1")))).toEqual(no.map(() => false));
  });
});

describe("HTTP/1.x beside gRPC on a fronted port", () => {
  it("hands a request line over, survives a client that resets before sending, and closes a silent one", async () => {
    // Proves the sniffing front: HTTP/1.x reaches the handler with its first bytes, gRPC still
    // works, a reset before the first byte is no uncaught error, and shutdown does not wait on a
    // connection that never sent anything.
    const http = handedOverHttp({
      logger: createLogger({ name: "t", destination: new Writable({ write: (_c, _e, d) => d() }) as never }),
      routes: {
        "/ping": (_req, res) => {
          res.end("pong");
        },
      },
    });
    cleanups.push(() => http.close());
    const { grpc, client, stop } = await start(60_000, http.accept);
    const port = grpc.urls[0]!.port;
    expect(await (await fetch(`http://127.0.0.1:${port}/ping`)).text()).toBe("pong");
    expect((await unary(client, "Echo", Buffer.from("hi"))).toString()).toBe("hi");
    const reset = connect(port, "127.0.0.1");
    await once(reset, "connect");
    reset.resetAndDestroy();
    const silent = connect(port, "127.0.0.1");
    await once(silent, "connect");
    const silentClosed = once(silent, "close");
    expect((await unary(client, "Echo", Buffer.from("still"))).toString()).toBe("still");
    await stop();
    await silentClosed;
  });
});

describe("HTTP/2 requests that are not gRPC on a fronted port", () => {
  it("serves them from the HTTP routes, beside gRPC calls on the same connection's port", async () => {
    // Proves what `curl https://<client-url>/health` gets when it negotiates HTTP/2: the route's
    // answer, where before such a request went to grpc-js and was refused. gRPC is unchanged.
    const http = handedOverHttp({
      logger: createLogger({ name: "t", destination: new Writable({ write: (_c, _e, d) => d() }) as never }),
      routes: {
        "/ping": (_req, res) => {
          res.writeHead(200, { "content-type": "text/plain" });
          res.end("pong");
        },
      },
    });
    cleanups.push(() => http.close());
    const { grpc, client, stop } = await start(10_000, http.accept, http.h2);
    const port = grpc.urls[0]!.port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const get = (path: string) => http2Get(session, path);
    expect(await get("/ping")).toEqual({ status: 200, body: "pong" });
    expect((await get("/nowhere")).status).toBe(404);
    expect((await unary(client, "Echo", Buffer.from("hi"))).toString()).toBe("hi");
    session.close();
    await stop();
  });
});

describe("gRPC front", () => {
  it("answers lean calls itself and forwards streams in every direction to grpc-js", async () => {
    const { client } = await start();
    expect((await unary(client, "Echo", Buffer.from("hi"))).toString()).toBe("hi");
    await expect(unary(client, "Fail", Buffer.alloc(0))).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringContaining("no such thing"),
    });

    const sum = await new Promise<string>((resolve, reject) => {
      const call = client.Sum!(new Metadata(), (err: ServiceError | null, r: Buffer) =>
        err ? reject(err) : resolve(r.toString()),
      ) as Writable;
      for (let i = 0; i < 40; i++) call.write(Buffer.alloc(100_000));
      call.end();
    });
    expect(sum).toBe("4000000");

    const replies: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.Chat!(new Metadata()) as NodeJS.ReadWriteStream & { on: Writable["on"] };
      call.on("data", (m: Buffer) => replies.push(m.toString()));
      call.on("error", reject);
      call.on("end", () => resolve());
      for (const word of ["a", "b", "c"]) call.write(Buffer.from(word));
      call.end();
    });
    expect(replies).toEqual(["re:a", "re:b", "re:c"]);
  });

  it("forwards a call whose :authority carries a scheme, as etcdctl 3.4 sends it", async () => {
    // etcdctl 3.4 dials each endpoint of `endpoint status`, `defrag` and `move-leader` with the
    // endpoint as written, `http://host:port` included, as the HTTP/2 authority. Go's server takes
    // it; the front passes such calls on with the host and port alone.
    const { grpc } = await start();
    const port = grpc.urls[0]!.port;
    for (const authority of [`http://127.0.0.1:${port}`, `https://127.0.0.1:${port}/`]) {
      const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), {
        "grpc.default_authority": authority,
      }) as AnyClient;
      cleanups.push(() => client.close());
      expect((await unary(client, "Echo", Buffer.from("lean"))).toString()).toBe("lean");
      const sum = await new Promise<string>((resolve, reject) => {
        const call = client.Sum!(new Metadata(), (err: ServiceError | null, r: Buffer) =>
          err ? reject(err) : resolve(r.toString()),
        ) as Writable;
        call.end(Buffer.alloc(10));
      });
      expect(sum).toBe("10");
    }
  });

  it("carries a large server stream intact to a client that reads slowly", async () => {
    const { client } = await start();
    const request = Buffer.alloc(8);
    request.writeUInt32BE(64, 0);
    request.writeUInt32BE(1 << 20, 4);
    const got: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.Many!(request, new Metadata()) as NodeJS.ReadableStream & {
        on: Writable["on"];
      };
      call.on("data", (m: Buffer) => {
        if (m.length !== 1 << 20 || m[0] !== m[m.length - 1]) reject(new Error("damaged message"));
        got.push(m[0]!);
        // Reading slowly: the answer backs up through the front to the handler, and the end of
        // the stream waits behind the last messages in the front's queue.
        call.pause();
        setTimeout(() => call.resume(), got.length > 56 ? 50 : 0);
      });
      call.on("error", reject);
      call.on("end", () => resolve());
    });
    expect(got).toEqual(Array.from({ length: 64 }, (_, i) => i % 256));
  });

  it("ends a forwarded stream whose last messages wait for a client's small window", async () => {
    const { grpc } = await start();
    const session = http2.connect(`http://127.0.0.1:${grpc.urls[0]!.port}`, {
      settings: { initialWindowSize: 16 << 10 },
    });
    cleanups.push(() => void session.destroy());
    const request = Buffer.alloc(13);
    request.writeUInt32BE(8, 1);
    request.writeUInt32BE(8, 5);
    request.writeUInt32BE(100_000, 9);
    const req = session.request({
      ":method": "POST",
      ":path": "/test.v1.Front/Many",
      "content-type": "application/grpc",
      te: "trailers",
    });
    let bytes = 0;
    let grpcStatus: unknown;
    req.on("data", (c: Buffer) => {
      bytes += c.length;
    });
    req.on("trailers", (t) => {
      grpcStatus = t["grpc-status"];
    });
    req.end(request);
    await once(req, "end");
    expect(bytes).toBe(8 * 100_005);
    expect(grpcStatus).toBe("0");
  });

  it("passes a client's cancellation of a forwarded stream to the handler", async () => {
    const { client } = await start();
    const request = Buffer.alloc(8);
    request.writeUInt32BE(1_000_000, 0);
    request.writeUInt32BE(1000, 4);
    const before = cancelled.length;
    await new Promise<void>((resolve) => {
      const call = client.Many!(request, new Metadata()) as NodeJS.ReadableStream & {
        on: Writable["on"];
        cancel(): void;
      };
      let n = 0;
      call.on("data", () => {
        if (++n === 10) call.cancel();
      });
      call.on("error", (err: ServiceError) => {
        expect(err.code).toBe(status.CANCELLED);
        resolve();
      });
    });
    await expect.poll(() => cancelled.length, { timeout: 10_000 }).toBe(before + 1);
  });

  it("closes a forwarded call answered before the client finished sending, so shutdown need not wait", async () => {
    // A shutdown deadline past the test's own: waiting on a leftover call fails the test.
    const { grpc, stop } = await start(120_000);
    const session = http2.connect(`http://127.0.0.1:${grpc.urls[0]!.port}`);
    const statuses = await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<unknown>((resolve) => {
            const req = session.request({
              ":method": "POST",
              ":path": "/test.v1.Front/Refuse",
              "content-type": "application/grpc",
              te: "trailers",
            });
            let grpcStatus: unknown;
            req.on("response", (h) => {
              grpcStatus = h["grpc-status"];
            });
            req.on("error", () => {});
            req.on("close", () => resolve(grpcStatus));
            req.write(Buffer.from([0, 0, 0, 0, 1, 7])); // one message; the request is never ended
          }),
      ),
    );
    expect(statuses).toEqual(Array(10).fill(String(status.FAILED_PRECONDITION)));
    session.destroy();
    await stop();
  });

  it("closes at its deadline even when a client has stopped reading", async () => {
    const { grpc, stop } = await start(300);
    const socket = connect(grpc.urls[0]!.port, "127.0.0.1");
    await once(socket, "connect");
    socket.pause(); // never reads: the server's writes back up
    // A call left open (its request never ends), so the connection cannot simply finish.
    const open = encodeHeaders([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/test.v1.Front/Echo"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]);
    socket.write(
      Buffer.concat([CLIENT_PREFACE, settingsFrame([]), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, open)]),
    );
    const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
    const flood = Buffer.concat(Array(20_000).fill(ping));
    for (let i = 0; i < 40; i++) socket.write(flood);
    // The server's answers back up until it stops reading us (our own queue stops moving) or it has
    // read everything and holds megabytes of answers the kernel could not take.
    let queued = -1;
    const stalled = () => {
      const before = queued;
      queued = socket.writableLength;
      return queued === 0 || queued === before;
    };
    await expect.poll(stalled, { interval: 250, timeout: 30_000 }).toBe(true);
    await stop();
    socket.destroy();
  });

  it("removes its private folder when the process exits without shutting the server down", async () => {
    // Proves a daemon that exits after listening (a startup error, process.exit in a signal
    // handler) leaves nothing in the temporary folder. The child uses the compiled kit.
    const own = mkdtempSync(join(tmpdir(), "front-exit-"));
    cleanups.push(() => rmSync(own, { recursive: true, force: true }));
    const script = serveInChild(
      "console.log(JSON.stringify({ port: grpc.urls[0].port, folders: readdirSync(process.env.TMPDIR) })); process.exit(0);",
    );
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, TMPDIR: own },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const seen = JSON.parse(run.stdout.trim()) as { port: number; folders: string[] };
    expect(seen.port).toBeGreaterThan(0);
    expect(seen.folders.filter((n) => n.startsWith("photon-grpc-"))).toHaveLength(1);
    expect(readdirSync(own)).toEqual([]);
  });

  it("clears the folder a SIGKILLed server left behind when the next server starts", async () => {
    // Proves kill -9 of a daemon does not leave a socket folder in the temporary directory for
    // good: the next server started there removes it, and keeps the folders of live processes and
    // names it does not own. The children use the compiled kit.
    const own = mkdtempSync(join(tmpdir(), "front-kill-"));
    cleanups.push(() => rmSync(own, { recursive: true, force: true }));
    const child = (script: string) =>
      spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        env: { ...process.env, TMPDIR: own },
        encoding: "utf8",
        timeout: 60_000,
      });
    const killed = child(serveInChild('process.kill(process.pid, "SIGKILL");'));
    expect(killed.signal, killed.stderr).toBe("SIGKILL");
    const left = readdirSync(own);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^photon-grpc-\d+\.\d+-/);
    expect(readdirSync(join(own, left[0]!))).toEqual(["grpc.sock"]);
    // A live process's folder (this test's), a gone process's of another PID namespace, and a
    // name of another shape are not the server's to remove.
    const [namespace] = left[0]!.slice("photon-grpc-".length).split(".");
    const live = mkdtempSync(join(own, `photon-grpc-${namespace}.${process.pid}-`));
    const elsewhere = mkdtempSync(join(own, `photon-grpc-${namespace}1.${killed.pid}-`));
    const other = mkdtempSync(join(own, "photon-grpc-"));
    const next = child(
      serveInChild(
        "await grpc.shutdown(); console.log(JSON.stringify(readdirSync(process.env.TMPDIR).sort()));",
      ),
    );
    expect(next.status, next.stderr).toBe(0);
    const after = JSON.parse(next.stdout.trim()) as string[];
    expect(after).toEqual([live, elsewhere, other].map((d) => d.slice(own.length + 1)).sort());
  });

  it("shuts down with a stream still open and removes its private socket", async () => {
    // A temporary directory of this test's own: servers of test files running alongside make
    // theirs in the shared one.
    const own = mkdtempSync(join(tmpdir(), "front-test-"));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = own;
    cleanups.push(() => {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      rmSync(own, { recursive: true, force: true });
    });
    const { client, stop } = await start();
    const mine = readdirSync(own).filter((n) => n.startsWith("photon-grpc-"));
    expect(mine).toHaveLength(1);
    const request = Buffer.alloc(8);
    request.writeUInt32BE(1_000_000, 0);
    request.writeUInt32BE(10, 4);
    const call = client.Many!(request, new Metadata()) as NodeJS.ReadableStream & { on: Writable["on"] };
    const ended = new Promise<void>((resolve) => {
      call.on("error", () => resolve());
      call.on("end", () => resolve());
    });
    call.on("data", () => call.pause());
    await stop();
    await ended;
    expect(existsSync(join(own, mine[0]!))).toBe(false);
  });
});
