import {
  credentials,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { ERROR_METADATA } from "../errors.js";
import { ECHO_PROTO, echoImplementation, echoServiceDefinition } from "../example/echo-daemon.js";
import { startHttpServer } from "../http-server.js";
import { createLogger } from "../logging.js";
import { createMetrics } from "../metrics.js";
import { parseUrlList } from "../urls.js";
import { startGrpcServer } from "./grpc-server.js";
import { checkHealth, listServices } from "./probe-clients.js";

const EchoClient = (
  loadPackageDefinition(loadSync(ECHO_PROTO)) as unknown as {
    photon: { example: { v1: { Echo: ServiceClientConstructor } } };
  }
).photon.example.v1.Echo;

type Callback = (
  err: (Error & { code: number; details: string; metadata: { get(k: string): unknown[] } }) | null,
  reply: { text: string },
) => void;

interface EchoStub {
  Say(req: { text: string }, cb: Callback): void;
  Repeat(req: { text: string; count: number }): NodeJS.EventEmitter;
  Hang(req: { text: string }): NodeJS.EventEmitter;
  close(): void;
}

function say(client: EchoStub, text: string): Promise<{ text: string }> {
  return new Promise((resolve, reject) =>
    client.Say({ text }, (err, reply) => (err ? reject(err) : resolve(reply))),
  );
}

/** The error a call fails with (the test fails if it succeeds). */
function sayError(client: EchoStub, text: string): Promise<ServiceError> {
  return say(client, text).then(
    (reply) => {
      throw new Error(`expected an error, got ${JSON.stringify(reply)}`);
    },
    (err: unknown) => err as ServiceError,
  );
}

function logSink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _e, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join("") };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startEcho(lean = false) {
  const sink = logSink();
  const logger = createLogger({ name: "test", destination: sink.stream as never });
  const metrics = createMetrics({ withoutDefaultMetrics: true });
  const grpc = await startGrpcServer({
    urls: parseUrlList("http://127.0.0.1:0"),
    services: [
      {
        definition: echoServiceDefinition(),
        implementation: echoImplementation,
        leanUnaryMethods: lean ? ["Say"] : [],
      },
    ],
    protoFiles: [ECHO_PROTO],
    logger,
    metrics,
    shutdownTimeoutMs: 500,
  });
  cleanups.push(() => grpc.shutdown());
  const address = `127.0.0.1:${grpc.urls[0]!.port}`;
  const client = new EchoClient(address, credentials.createInsecure()) as unknown as EchoStub;
  cleanups.push(() => client.close());
  return { grpc, address, client, metrics, logger, logs: sink.text };
}

// Every behaviour below holds whether the unary Say is served by grpc-js or by the kit's lean path.
describe.each([false, true])("startGrpcServer (Say on the lean unary path: %s)", (lean) => {
  it("binds port 0 and reports the real port, answering health and reflection", async () => {
    // Proves the standard services every daemon must expose are there on an ephemeral port.
    const { grpc, address } = await startEcho(lean);
    expect(grpc.urls[0]!.port).toBeGreaterThan(0);
    expect(grpc.urls[0]!.href).toBe(`http://${address}`);
    expect(await checkHealth(address)).toBe("SERVING");
    expect(await checkHealth(address, "photon.example.v1.Echo")).toBe("SERVING");
    const services = await listServices(address);
    expect(services).toContain("photon.example.v1.Echo");
    expect(services).toContain("grpc.health.v1.Health");
  });

  it("maps handler errors: domain errors keep their status, others become INTERNAL without leaking", async () => {
    // Proves what a client sees for each kind of failure, and that the internal text is only logged.
    const { client, logs } = await startEcho(lean);
    expect(await say(client, "hello")).toEqual({ text: "hello" });
    const notFound = await sayError(client, "missing");
    expect(notFound.code).toBe(status.NOT_FOUND);
    expect(notFound.details).toBe("nothing called missing");
    const internal = await sayError(client, "fail");
    expect(internal.code).toBe(status.INTERNAL);
    expect(internal.details).not.toContain("secret-path");
    const errorId = String(internal.metadata.get(ERROR_METADATA.errorId)[0]);
    expect(internal.details).toContain(errorId);
    expect(logs()).toContain(errorId);
    expect(logs()).toContain("secret-path");
  });

  it("streams server-streaming replies and ends the call", async () => {
    // Proves the serverStream adapter writes every item then ends with OK.
    const { client } = await startEcho(lean);
    const texts: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.Repeat({ text: "x", count: 3 });
      call.on("data", (reply: { text: string }) => texts.push(reply.text));
      call.on("end", () => resolve());
      call.on("error", reject);
    });
    expect(texts).toEqual(["x 0", "x 1", "x 2"]);
  });

  it("maps a failing server stream to INTERNAL after the items already sent, and counts both outcomes", async () => {
    // Proves streaming handlers get the same error mapping and metrics as unary ones.
    const { client, metrics } = await startEcho(lean);
    const repeat = (text: string) =>
      new Promise<{ texts: string[]; error?: ServiceError }>((resolve) => {
        const texts: string[] = [];
        const call = client.Repeat({ text, count: 3 });
        call.on("data", (reply: { text: string }) => texts.push(reply.text));
        call.on("end", () => resolve({ texts }));
        call.on("error", (error: ServiceError) => resolve({ texts, error }));
      });
    expect((await repeat("ok")).texts).toEqual(["ok 0", "ok 1", "ok 2"]);
    const failed = await repeat("fail");
    expect(failed.texts).toEqual(["fail 0"]);
    expect(failed.error?.code).toBe(status.INTERNAL);
    expect(failed.error?.details).not.toContain("secret-path");
    const text = await metrics.registry.metrics();
    expect(text).toContain('grpc_method="Repeat",grpc_type="server_stream",grpc_code="OK"} 1');
    expect(text).toContain('grpc_method="Repeat",grpc_type="server_stream",grpc_code="INTERNAL"} 1');
  });

  it("exposes gRPC counters and latency on /metrics after calls", async () => {
    // Proves an operator scraping /metrics sees calls by method and status code.
    const { client, metrics, logger } = await startEcho(lean);
    await say(client, "a");
    await say(client, "missing").catch(() => undefined);
    const http = await startHttpServer({ urls: parseUrlList("http://127.0.0.1:0"), metrics, logger });
    cleanups.push(() => http.close());
    const res = await fetch(`${http.urls[0]!.href}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(
      'grpc_server_handled_total{grpc_service="photon.example.v1.Echo",grpc_method="Say",grpc_type="unary",grpc_code="OK"} 1',
    );
    expect(text).toContain('grpc_method="Say",grpc_type="unary",grpc_code="NOT_FOUND"} 1');
    expect(text).toMatch(/grpc_server_handling_seconds_count\{[^}]*grpc_method="Say"[^}]*\} 2/);
  });

  it("reports NOT_SERVING when told and on shutdown", async () => {
    // Proves health reflects setServing, and that shutdown stops the listener.
    const { grpc, address } = await startEcho(lean);
    grpc.setServing("photon.example.v1.Echo", false);
    expect(await checkHealth(address, "photon.example.v1.Echo")).toBe("NOT_SERVING");
    await grpc.shutdown();
    await expect(checkHealth(address, "", { deadlineMs: 1000 })).rejects.toMatchObject({
      code: expect.any(Number),
    });
  });

  it("cancels calls still open at the shutdown deadline so shutdown completes", async () => {
    // Proves a never-ending stream (like a watch) cannot hold a SIGTERM hostage.
    const { grpc, client } = await startEcho(lean);
    const call = client.Hang({ text: "waiting" });
    const ended = new Promise<ServiceError | "ended">((resolve) => {
      call.on("error", (err: ServiceError) => resolve(err));
      call.on("end", () => resolve("ended"));
    });
    await new Promise((resolve) => call.once("data", resolve));
    await grpc.shutdown();
    const outcome = await ended;
    expect(outcome).not.toBe("ended");
    // The server cancels the stream; depending on timing the client sees the cancel or the closed connection.
    expect([status.CANCELLED, status.UNAVAILABLE]).toContain((outcome as ServiceError).code);
  });

  it("refuses to bind an address already in use, naming the URL", async () => {
    // Proves a second server on the same port fails with a ListenError saying where.
    const { grpc, logger } = await startEcho(lean);
    const url = grpc.urls[0]!.href;
    await expect(
      startGrpcServer({ urls: parseUrlList(url), services: [], logger, what: "--listen-client-urls" }),
    ).rejects.toThrow(`--listen-client-urls: cannot listen on ${url}`);
  });
});

describe("startHttpServer", () => {
  it("serves /health from the callback, /version, extra routes, and 404 otherwise", async () => {
    // Proves the HTTP side a daemon gets, including a daemon-registered route like iam's JWKS.
    let healthy = true;
    const logger = createLogger({ name: "t", destination: logSink().stream as never });
    const http = await startHttpServer({
      urls: parseUrlList("http://127.0.0.1:0"),
      logger,
      health: () => ({ healthy, leader: "abc" }),
      version: { name: "echo", version: "1.2.3" },
      routes: { "/.well-known/jwks.json": (_req, res) => void res.end('{"keys":[]}') },
    });
    cleanups.push(() => http.close());
    const base = http.urls[0]!.href;
    const ok = await fetch(`${base}/health`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ healthy: true, leader: "abc" });
    healthy = false;
    expect((await fetch(`${base}/health`)).status).toBe(503);
    expect(await (await fetch(`${base}/version`)).json()).toEqual({ name: "echo", version: "1.2.3" });
    expect(await (await fetch(`${base}/.well-known/jwks.json`)).json()).toEqual({ keys: [] });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});
