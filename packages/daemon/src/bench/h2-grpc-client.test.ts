import {
  Metadata,
  Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  ServerCredentials,
  status,
} from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { closedLoop } from "./closed-loop.js";
import { cpuMicrosPerOp, processCpuMicros, sampleCpu, selfCpuMicros } from "./cpu-time.js";
import { GrpcCallError, type GrpcMethod, H2GrpcClient, methodOf } from "./h2-grpc-client.js";

// Messages are JSON in this test service: the client only needs the method's two conversions.
interface Msg {
  text: string;
  count?: number;
}
const json = (m: Msg) => Buffer.from(JSON.stringify(m));
const parse = (b: Buffer) => JSON.parse(b.toString()) as Msg;

const definition = {
  say: {
    path: "/test.v1.Echo/Say",
    requestStream: false,
    responseStream: false,
    requestSerialize: json,
    requestDeserialize: parse,
    responseSerialize: json,
    responseDeserialize: parse,
  },
  repeat: {
    path: "/test.v1.Echo/Repeat",
    requestStream: false,
    responseStream: true,
    requestSerialize: json,
    requestDeserialize: parse,
    responseSerialize: json,
    responseDeserialize: parse,
  },
} as const;

const say: GrpcMethod<Msg, Msg> = definition.say;
const repeat: GrpcMethod<Msg, Msg> = definition.repeat;

let server: Server | undefined;
let client: H2GrpcClient | undefined;

afterEach(async () => {
  await client?.close();
  client = undefined;
  if (server !== undefined) await new Promise<void>((resolve) => server!.tryShutdown(() => resolve()));
  server = undefined;
});

/** A grpc-js server: Say echoes (or fails on request), Repeat streams `count` copies, "hang" never answers. */
async function startServer(): Promise<string> {
  const s = new Server();
  s.addService(definition, {
    say: (call: ServerUnaryCall<Msg, Msg>, cb: sendUnaryData<Msg>) => {
      const text = call.request.text;
      if (text === "hang") return;
      if (text === "fail") {
        const md = new Metadata();
        md.set("x-photon-error-code", "TEST_REFUSED");
        cb({ code: status.FAILED_PRECONDITION, details: "refused: 100% sure, naïve", metadata: md });
        return;
      }
      const auth = call.metadata.get("authorization")[0];
      cb(null, { text: auth === undefined ? text : `${text} as ${String(auth)}` });
    },
    repeat: (call: ServerWritableStream<Msg, Msg>) => {
      for (let i = 0; i < (call.request.count ?? 0); i++) call.write({ text: `${call.request.text} ${i}` });
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    s.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  server = s;
  return `127.0.0.1:${port}`;
}

async function failureOf(p: Promise<unknown>): Promise<GrpcCallError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof GrpcCallError)) throw new Error(`expected a GrpcCallError, got ${String(err)}`);
  return err;
}

describe("H2GrpcClient", () => {
  it("answers many concurrent unary calls on one session, each with its own reply", async () => {
    client = new H2GrpcClient(await startServer());
    const call = client.unary(say);
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => call({ text: `m${i}` })));
    expect(replies.map((r) => r.text)).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`));
  });

  it("sends client and per-method metadata (authorization)", async () => {
    const address = await startServer();
    client = new H2GrpcClient(`http://${address}`, { metadata: { authorization: "Bearer a" } });
    expect(await client.unary(say)({ text: "hi" })).toEqual({ text: "hi as Bearer a" });
    const overridden = client.unary(say, { metadata: { authorization: "Bearer b" } });
    expect(await overridden({ text: "hi" })).toEqual({ text: "hi as Bearer b" });
  });

  it("reports a non-OK status with its decoded message and the trailing metadata", async () => {
    client = new H2GrpcClient(await startServer());
    const err = await failureOf(client.unary(say)({ text: "fail" }));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toBe("refused: 100% sure, naïve");
    expect(err.metadata["x-photon-error-code"]).toBe("TEST_REFUSED");
  });

  it("collects every message of a server stream, and none of an empty one", async () => {
    client = new H2GrpcClient(await startServer());
    const call = client.serverStream(repeat);
    expect((await call({ text: "r", count: 3 })).map((m) => m.text)).toEqual(["r 0", "r 1", "r 2"]);
    expect(await call({ text: "r", count: 0 })).toEqual([]);
    // A unary call must answer exactly one message.
    const err = await failureOf(client.unary(repeat)({ text: "r", count: 2 }));
    expect(err.code).toBe(status.INTERNAL);
  });

  it("fails a call that outlives its deadline with DEADLINE_EXCEEDED", async () => {
    client = new H2GrpcClient(await startServer());
    const err = await failureOf(client.unary(say, { deadlineMs: 100 })({ text: "hang" }));
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
  });

  it("fails calls with UNAVAILABLE when nothing listens", async () => {
    const address = await startServer();
    await new Promise<void>((resolve) => server!.tryShutdown(() => resolve()));
    server = undefined;
    client = new H2GrpcClient(address);
    const err = await failureOf(client.unary(say)({ text: "x" }));
    expect(err.code).toBe(status.UNAVAILABLE);
  });

  it("builds a method from message codecs and refuses a malformed path or reserved metadata", async () => {
    const codec = {
      encode: (m: Msg) => ({ finish: () => json(m) }),
      decode: (b: Uint8Array) => parse(Buffer.from(b)),
    };
    client = new H2GrpcClient(await startServer());
    expect(await client.unary(methodOf("/test.v1.Echo/Say", codec, codec))({ text: "c" })).toEqual({
      text: "c",
    });
    expect(() => methodOf("test.v1.Echo/Say", codec, codec)).toThrow(/must look like/);
    expect(() => client!.unary(say, { metadata: { "grpc-status": "0" } })).toThrow(/reserved/);
    expect(() => client!.unary(say, { metadata: { Authorization: "x" } })).toThrow(/lower-case/);
  });
});

describe("closedLoop and CPU time", () => {
  it("runs every operation with the requested concurrency and reports percentiles", async () => {
    let active = 0;
    let peak = 0;
    const seen = new Set<number>();
    const r = await closedLoop(100, 8, async (i) => {
      seen.add(i);
      peak = Math.max(peak, ++active);
      await new Promise<void>((resolve) => setImmediate(resolve));
      active--;
    });
    expect(seen.size).toBe(100);
    expect(peak).toBe(8);
    expect(r.ops).toBe(100);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  });

  it("fails the run when an operation fails", async () => {
    await expect(
      closedLoop(50, 4, async (i) => {
        if (i === 10) throw new Error("op 10 failed");
      }),
    ).rejects.toThrow("op 10 failed");
  });

  it("reads CPU time of this process from process.cpuUsage and from /proc", () => {
    const before = sampleCpu({ self: "self", proc: process.pid });
    // Burn 100 ms of CPU so both counters move (/proc counts in clock ticks, usually 10 ms).
    const until = selfCpuMicros() + 100_000;
    let x = 0;
    while (selfCpuMicros() < until) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    const after = sampleCpu({ self: "self", proc: process.pid });
    const perOp = cpuMicrosPerOp(before, after, 1);
    expect(perOp.self).toBeGreaterThanOrEqual(100_000);
    expect(perOp.proc).toBeGreaterThan(0);
    expect(() => processCpuMicros(2 ** 22 + 12_345)).toThrow();
  });
});
