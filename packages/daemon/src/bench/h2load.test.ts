import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Server, type ServerUnaryCall, ServerCredentials, type sendUnaryData } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { grpcHandledCounts, grpcHandledTotals, h2loadAvailable, parseRun, runH2Load } from "./h2load.js";

const identity = (b: Buffer) => b;
const definition = {
  say: {
    path: "/test.v1.Echo/Say",
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} as const;

let server: Server | undefined;
let http: HttpServer | undefined;

afterEach(async () => {
  if (server !== undefined) await new Promise<void>((resolve) => server!.tryShutdown(() => resolve()));
  server = undefined;
  if (http !== undefined) await new Promise<void>((resolve) => http!.close(() => resolve()));
  http = undefined;
});

describe("runH2Load", () => {
  it("is installed (scripts/setup.mjs installs Debian's nghttp2-client)", () => {
    expect(h2loadAvailable()).toBe(true);
  });

  it("drives a unary method with the request body and metadata for the given time", async () => {
    const seen = { calls: 0, bodies: new Set<string>(), auth: new Set<string>(), maxOpen: 0 };
    let open = 0;
    const s = new Server();
    s.addService(definition, {
      say: (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
        seen.calls += 1;
        seen.bodies.add(call.request.toString());
        seen.auth.add(String(call.metadata.get("authorization")[0]));
        open += 1;
        seen.maxOpen = Math.max(seen.maxOpen, open);
        // Answer on a later turn, so calls overlap as they would on a real server.
        setImmediate(() => {
          open -= 1;
          cb(null, Buffer.from("ok"));
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      s.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    server = s;
    const r = await runH2Load({
      target: `http://127.0.0.1:${port}`,
      path: "/test.v1.Echo/Say",
      request: Buffer.from("hello"),
      metadata: { authorization: "Bearer abc" },
      inFlight: 8,
      durationMs: 500,
    });
    expect(r.failed).toBe(0);
    expect(r.succeeded).toBeGreaterThan(0);
    expect(seen.calls).toBeGreaterThanOrEqual(r.succeeded);
    expect([...seen.bodies]).toEqual(["hello"]);
    expect([...seen.auth]).toEqual(["Bearer abc"]);
    expect(seen.maxOpen).toBeGreaterThan(1);
    expect(seen.maxOpen).toBeLessThanOrEqual(8);
    expect(r.latenciesMs.length).toBe(r.succeeded);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect(r.seconds).toBeGreaterThan(0.3);
    // The kernel samples a process's CPU time per clock tick (10 ms): h2load waiting on a loaded
    // machine for half a second can be sampled at none, so only that the shell's figure was read
    // is checked here (the parse itself is checked on a known /proc line below).
    expect(Number.isFinite(r.cpuMicros) && r.cpuMicros >= 0).toBe(true);
  });

  it("refuses an in-flight count that does not split over the connections, and reserved metadata", async () => {
    const base = { target: "http://127.0.0.1:1", path: "/a.B/C", request: new Uint8Array(), durationMs: 100 };
    await expect(runH2Load({ ...base, inFlight: 3, connections: 2 })).rejects.toThrow(/multiple/);
    await expect(runH2Load({ ...base, inFlight: 1, metadata: { "grpc-timeout": "1S" } })).rejects.toThrow(
      /reserved/,
    );
  });
});

describe("parseRun", () => {
  it("reads h2load's counts and time, the logged latencies and the shell's children CPU", () => {
    const report = [
      "finished in 2.50s, 400.00 req/s, 1.00MB/s",
      "requests: 1003 total, 1003 started, 1002 done, 1000 succeeded, 2 failed, 2 errored, 0 timeout",
    ].join("\n");
    const log = [
      ...Array.from({ length: 1000 }, (_, i) => `1700000000000000\t200\t${(i + 1) * 1000}`),
      "1700000000000000\t503\t5",
      "",
    ].join("\n");
    // pid (comm with a space) state ... field 14 utime, 15 stime, 16 cutime 250, 17 cstime 50.
    const stat = "123 (s h) S 1 2 3 4 5 6 7 8 9 10 11 12 250 50 20 0 1";
    const r = parseRun(report, log, stat, 100);
    expect(r).toMatchObject({ succeeded: 1000, failed: 2, seconds: 2.5, perSecond: 400 });
    expect(r.latenciesMs.length).toBe(1000);
    expect(r.p50Ms).toBe(501);
    expect(r.p99Ms).toBe(991);
    expect(r.cpuMicros).toBe(3_000_000);
    expect(() => parseRun("no summary", "", stat, 100)).toThrow(/unexpected h2load output/);
  });
});

describe("grpcHandledCounts", () => {
  it("sums one method's handled calls by status from a /metrics page", async () => {
    const page = [
      "# TYPE grpc_server_handled_total counter",
      'grpc_server_handled_total{grpc_service="a.v1.S",grpc_method="M",grpc_type="unary",grpc_code="OK",daemon="d"} 41',
      'grpc_server_handled_total{grpc_service="a.v1.S",grpc_method="M",grpc_type="unary",grpc_code="UNAVAILABLE",daemon="d"} 2',
      'grpc_server_handled_total{grpc_service="a.v1.S",grpc_method="Other",grpc_type="unary",grpc_code="OK",daemon="d"} 7',
    ].join("\n");
    http = createServer((_req, res) => res.end(page));
    await new Promise<void>((resolve) => http!.listen(0, "127.0.0.1", resolve));
    const { port } = http.address() as AddressInfo;
    const counts = await grpcHandledCounts(`http://127.0.0.1:${port}/metrics`, "/a.v1.S/M");
    expect(Object.fromEntries(counts)).toEqual({ OK: 41, UNAVAILABLE: 2 });
    // Summed over pages (here the same page twice, as if two daemons).
    const url = `http://127.0.0.1:${port}/metrics`;
    expect(await grpcHandledTotals([url, url], "/a.v1.S/M")).toEqual({ ok: 82, all: 86 });
  });
});
