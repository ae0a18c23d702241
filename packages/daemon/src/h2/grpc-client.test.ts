// The kit's HTTP/2 gRPC client (client role of the connection) against grpc-js servers and the kit's
// own front: client streams with their statuses and cancellation, TLS with and without
// the right CA, connection failures, and HTTP CONNECT proxies chosen from the environment.
import { once } from "node:events";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { Writable } from "node:stream";
import {
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { domainErrors } from "../errors.js";
import { startGrpcServer } from "../grpc/grpc-server.js";
import { createTestCa } from "../grpc/test-pki.js";
import { createLogger } from "../logging.js";
import { parseUrlList } from "../urls.js";
import { rawMethod } from "./test-methods.js";
import { GrpcClientConnection, type GrpcCallStatus, type GrpcClientTarget } from "./grpc-client.js";

const method = (name: string, requestStream: boolean) =>
  rawMethod("test.v1.Client", name, requestStream, false);
const definition = {
  Join: method("Join", true),
  Refuse: method("Refuse", true),
  Boom: method("Boom", true),
  /** Requests must be JSON. */
  Strict: {
    ...method("Strict", true),
    requestDeserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
  },
};
const implementation = {
  /** The messages joined with "," once the client has half-closed. */
  Join: (call: ServerReadableStream<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
    const seen: string[] = [];
    call.on("data", (m: Buffer) => seen.push(m.toString()));
    call.on("end", () => cb(null, Buffer.from(seen.join(","))));
  },
  Refuse: (_call: ServerReadableStream<Buffer, Buffer>, cb: sendUnaryData<Buffer>) =>
    cb({ code: status.FAILED_PRECONDITION, details: "refusé: 100% sure" }, null),
  Boom: (call: ServerReadableStream<Buffer, Buffer>) => {
    call.on("data", () => {
      throw new Error("a listener that throws");
    });
  },
  Strict: (call: ServerReadableStream<Buffer, Buffer>, cb: sendUnaryData<Buffer>) =>
    call.on("end", () => cb(null, Buffer.from("ok"))),
};

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A plain grpc-js server (no kit) with `credentials`; returns its port. */
async function grpcJsServer(credentials = ServerCredentials.createInsecure()): Promise<number> {
  const server = new Server();
  server.addService(definition, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  cleanups.push(() => void server.forceShutdown());
  return port;
}

/** The kit's server: the front serves Join (and Boom, Strict) through the lean path. */
async function kitServer(): Promise<number> {
  const grpc = await startGrpcServer({
    urls: parseUrlList("http://127.0.0.1:0"),
    services: [
      {
        definition,
        // The kit maps only its domain errors to their status (anything else is INTERNAL).
        implementation: {
          ...implementation,
          Refuse: (_call: ServerReadableStream<Buffer, Buffer>, cb: sendUnaryData<Buffer>) =>
            cb(domainErrors.failedPrecondition("TEST_REFUSED", "refusé: 100% sure") as never, null),
        },
        leanClientStreamMethods: ["Join", "Boom", "Strict"],
      },
    ],
    logger: createLogger({ name: "t", destination: new Writable({ write: (_c, _e, d) => d() }) as never }),
    shutdownTimeoutMs: 500,
  });
  cleanups.push(() => grpc.shutdown());
  return grpc.urls[0]!.port;
}

async function open(target: GrpcClientTarget): Promise<GrpcClientConnection> {
  const c = await GrpcClientConnection.connect(target, { timeoutMs: 5000 });
  cleanups.push(() => c.destroy());
  return c;
}

/** Sends `messages` on a client stream of `name`; resolves with its outcome. */
function clientStream(
  c: GrpcClientConnection,
  name: string,
  messages: string[],
): Promise<{ result: GrpcCallStatus; response: string | null }> {
  return new Promise((resolve) => {
    const call = c.clientStream(`/test.v1.Client/${name}`, (result, response) =>
      resolve({ result, response: response === null ? null : response.toString() }),
    );
    for (const m of messages) call.write(Buffer.from(m));
    call.end();
  });
}

describe.each([
  ["a grpc-js server", grpcJsServer],
  ["the kit's front (lean client stream)", kitServer],
])("GrpcClientConnection against %s", (_, serve) => {
  it("delivers a client stream's messages in order and reads the response", async () => {
    // Proves framing both ways: many messages, some larger than a frame, arrive whole and in order.
    const c = await open({ host: "127.0.0.1", port: await serve() });
    const messages = ["a", "b".repeat(40_000), "c", "", "d"];
    const { result, response } = await clientStream(c, "Join", messages);
    expect(result.code).toBe(status.OK);
    expect(response).toBe(messages.join(","));
    // The connection carries further calls.
    expect((await clientStream(c, "Join", ["again"])).response).toBe("again");
  });

  it("reads an error status with its details decoded", async () => {
    // Proves grpc-status and the percent-encoded grpc-message come back as the handler set them.
    const c = await open({ host: "127.0.0.1", port: await serve() });
    const { result, response } = await clientStream(c, "Refuse", ["x"]);
    expect(result.code).toBe(status.FAILED_PRECONDITION);
    expect(result.details).toContain("refusé: 100% sure");
    expect(response).toBeNull();
  });

  it("reports an unknown method as UNIMPLEMENTED, and a cancelled call as CANCELLED", async () => {
    // Proves a trailers-only refusal is read, and cancel() ends a call at once with its own status.
    const c = await open({ host: "127.0.0.1", port: await serve() });
    expect((await clientStream(c, "Nope", ["x"])).result.code).toBe(status.UNIMPLEMENTED);
    const cancelled = new Promise<GrpcCallStatus>((resolve) => {
      const call = c.clientStream("/test.v1.Client/Join", (result) => resolve(result));
      call.write(Buffer.from("never ended"));
      call.cancel();
    });
    expect((await cancelled).code).toBe(status.CANCELLED);
    expect((await clientStream(c, "Join", ["after"])).response).toBe("after");
    expect(c.ready).toBe(true);
  });
});

describe("lean client streams on the kit's front", () => {
  it("end with the status grpc-js gives: too large, undecodable, or a listener that throws", async () => {
    // Proves the lean client-streaming path's refusals (and that the connection survives them).
    const c = await open({ host: "127.0.0.1", port: await kitServer() });
    const tooLarge = await clientStream(c, "Join", ["x".repeat(5 << 20)]);
    expect(tooLarge.result.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(tooLarge.result.details).toMatch(/larger than max/);
    const throwing = await clientStream(c, "Boom", ["boom"]);
    expect(throwing.result).toEqual({ code: status.UNKNOWN, details: "Unknown error" });
    const undecodable = await clientStream(c, "Strict", ["not json"]);
    expect(undecodable.result).toEqual({ code: status.INTERNAL, details: "Error deserializing request" });
    expect((await clientStream(c, "Join", ["still", "up"])).response).toBe("still,up");
  });
});

describe("GrpcClientConnection connecting", () => {
  it("rejects when nothing listens, and ends open streams as UNAVAILABLE when the server goes", async () => {
    // Proves connection failures reach the caller instead of hanging.
    const closed = await grpcJsServer();
    for (const c of cleanups.splice(0).reverse()) await c();
    await expect(GrpcClientConnection.connect({ host: "127.0.0.1", port: closed })).rejects.toThrow();

    const server = new Server();
    server.addService(definition, implementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const c = await open({ host: "127.0.0.1", port });
    const outcome = new Promise<GrpcCallStatus>((resolve) => {
      const call = c.clientStream("/test.v1.Client/Join", (result) => resolve(result));
      call.write(Buffer.from("pending"));
    });
    await expect.poll(() => c.ready, { timeout: 5000 }).toBe(true);
    server.forceShutdown();
    expect((await outcome).code).toBe(status.UNAVAILABLE);
    expect(c.usable).toBe(false);
  });

  it("speaks TLS with ALPN h2 to a server its CA vouches for, and refuses one it does not", async () => {
    // Proves the tls target options: the right CA connects, another CA fails the handshake.
    const ca = createTestCa("client test CA");
    const leaf = ca.issue("server");
    const port = await grpcJsServer(
      ServerCredentials.createSsl(null, [
        { cert_chain: Buffer.from(leaf.cert), private_key: Buffer.from(leaf.key) },
      ]),
    );
    const c = await open({ host: "127.0.0.1", port, tls: { ca: ca.cert } });
    expect((await clientStream(c, "Join", ["secure"])).response).toBe("secure");
    const other = createTestCa("some other CA");
    await expect(
      GrpcClientConnection.connect({ host: "127.0.0.1", port, tls: { ca: other.cert } }),
    ).rejects.toThrow();
  });
});

/** An HTTP CONNECT proxy that records the targets it was asked for. */
async function connectProxy(): Promise<{ port: number; targets: string[] }> {
  const targets: string[] = [];
  const server: HttpServer = createHttpServer((_req, res) => res.writeHead(405).end());
  const sockets = new Set<Socket>();
  server.on("connect", (req, client: Socket, head: Buffer) => {
    targets.push(req.url ?? "");
    const [host, port] = (req.url ?? "").split(":");
    const upstream = connect(Number(port), host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, targets };
}

describe("GrpcClientConnection and proxies", () => {
  const saved = { grpc_proxy: process.env.grpc_proxy, no_grpc_proxy: process.env.no_grpc_proxy };
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it("tunnels through the proxy grpc_proxy names, unless no_grpc_proxy lists the host", async () => {
    // Proves the proxy choice follows grpc-js's environment variables.
    const port = await grpcJsServer();
    const proxy = await connectProxy();
    process.env.grpc_proxy = `http://127.0.0.1:${proxy.port}`;
    delete process.env.no_grpc_proxy;
    const viaProxy = await open({ host: "127.0.0.1", port });
    expect((await clientStream(viaProxy, "Join", ["tunnelled"])).response).toBe("tunnelled");
    expect(proxy.targets).toEqual([`127.0.0.1:${port}`]);

    process.env.no_grpc_proxy = "example.com,127.0.0.0/8";
    const direct = await open({ host: "127.0.0.1", port });
    expect((await clientStream(direct, "Join", ["direct"])).response).toBe("direct");
    expect(proxy.targets).toHaveLength(1);
  });

  it("fails to connect when the proxy refuses the tunnel", async () => {
    // Proves a proxy's non-200 answer is a connection error naming it.
    const refusing = createHttpServer();
    refusing.on("connect", (_req, client: Socket) => client.end("HTTP/1.1 503 Partitioned\r\n\r\n"));
    refusing.listen(0, "127.0.0.1");
    await once(refusing, "listening");
    cleanups.push(() => void refusing.close());
    process.env.grpc_proxy = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    delete process.env.no_grpc_proxy;
    await expect(GrpcClientConnection.connect({ host: "127.0.0.1", port: 1 })).rejects.toThrow(
      /503 Partitioned/,
    );
  });

  it("fails at once when the proxy closes without answering, and at its deadline when it never answers", async () => {
    // Proves a dial through a proxy always settles. A proxy that closed the connection without a
    // status (as one does when its upstream refuses) left the dial pending for ever: destroying the
    // socket cleared its idle timer, and a member's peer was never dialled again.
    const closing = createServer((client) => client.once("data", () => client.end()));
    const silent = createServer((client) => client.on("error", () => {}));
    const held: Socket[] = [];
    silent.on("connection", (client) => held.push(client));
    for (const server of [closing, silent]) {
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      cleanups.push(() => {
        for (const client of held) client.destroy();
        server.close();
      });
    }
    delete process.env.no_grpc_proxy;
    process.env.grpc_proxy = `http://127.0.0.1:${(closing.address() as AddressInfo).port}`;
    // A deadline far beyond the test's own: only the close can end this dial.
    await expect(
      GrpcClientConnection.connect({ host: "127.0.0.1", port: 1 }, { timeoutMs: 600_000 }),
    ).rejects.toThrow(/closed the connection before answering CONNECT 127\.0\.0\.1:1/);
    process.env.grpc_proxy = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    await expect(
      GrpcClientConnection.connect({ host: "127.0.0.1", port: 1 }, { timeoutMs: 300 }),
    ).rejects.toThrow(/timed out after 300 ms/);
  });
});
