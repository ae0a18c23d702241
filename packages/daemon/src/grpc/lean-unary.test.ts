// The lean unary path answers exactly as grpc-js does: every case runs against one server whose
// methods are all on the lean path and one where grpc-js serves them, and the answers are compared.
import { connect } from "node:http2";
import { Writable } from "node:stream";
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { domainErrors } from "../errors.js";
import { createLogger } from "../logging.js";
import { createMetrics } from "../metrics.js";
import { parseUrlList } from "../urls.js";
import { startGrpcServer } from "./grpc-server.js";
import { createTestCa, removePemFiles, writePemFiles } from "./test-pki.js";
import type { TlsFiles } from "./tls.js";

interface Msg {
  text: string;
}
const json = (m: Msg) => Buffer.from(JSON.stringify(m));
const parse = (b: Buffer): Msg => {
  const m = JSON.parse(b.toString()) as Msg;
  if (typeof m.text !== "string") throw new Error("text must be a string");
  return m;
};
const unaryMethod = (name: string) => ({
  path: `/test.v1.Lean/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: json,
  requestDeserialize: parse,
  responseSerialize: json,
  responseDeserialize: parse,
  originalName: name,
});
const definition = {
  Say: unaryMethod("Say"),
  Hang: unaryMethod("Hang"),
  Fail: unaryMethod("Fail"),
  Meta: unaryMethod("Meta"),
  Throw: unaryMethod("Throw"),
};
const methods = Object.keys(definition);

/** What the handlers saw, per server. */
interface Seen {
  cancelled: string[];
  calls: number;
}

/** The TLS peer as a handler sees it: "ssl:<client CN>" over mTLS, "none" otherwise. */
function authContext(call: ServerUnaryCall<Msg, Msg>): string {
  const ctx = call.getAuthContext() as {
    transportSecurityType?: string;
    sslPeerCertificate?: { subject?: { CN?: string } };
  };
  return ctx.transportSecurityType === undefined
    ? "none"
    : `${ctx.transportSecurityType}:${ctx.sslPeerCertificate?.subject?.CN}`;
}

function implementation(seen: Seen) {
  return {
    Say: (call: ServerUnaryCall<Msg, Msg>, cb: sendUnaryData<Msg>) => {
      seen.calls += 1;
      const auth = call.metadata.get("authorization")[0];
      const transport = ["te", "content-type", "grpc-timeout", "grpc-encoding"].filter(
        (h) => call.metadata.get(h).length > 0,
      );
      cb(null, {
        text: [
          call.request.text,
          `auth=${String(auth)}`,
          `path=${call.getPath()}`,
          `peer=${/^127\.0\.0\.1:\d+$/.test(call.getPeer())}`,
          `deadline=${Number.isFinite(call.getDeadline() as number)}`,
          `transport=${transport.join(",")}`,
          `auth-context=${authContext(call)}`,
        ].join(" "),
      });
    },
    Hang: (call: ServerUnaryCall<Msg, Msg>, _cb: sendUnaryData<Msg>) => {
      seen.calls += 1;
      call.once("cancelled", () => seen.cancelled.push(call.request.text));
    },
    Fail: (_call: ServerUnaryCall<Msg, Msg>, cb: sendUnaryData<Msg>) => {
      // A DomainError handed to the callback as it is: the kit maps it to its status as it maps a thrown one.
      cb(
        domainErrors.failedPrecondition(
          "TEST_REFUSED",
          "refused: 100% sure, naïve",
        ) as unknown as ServiceError,
        null,
      );
    },
    Meta: (call: ServerUnaryCall<Msg, Msg>, cb: sendUnaryData<Msg>) => {
      const header = new Metadata();
      header.set("x-header", "h1");
      call.sendMetadata(header);
      const trailer = new Metadata();
      trailer.set("x-trailer", "t1");
      cb(null, { text: "meta" }, trailer);
    },
    Throw: () => {
      throw new Error("handler exploded at /var/lib/secret-path");
    },
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quietLogger = () =>
  createLogger({
    name: "test",
    destination: new Writable({ write: (_c, _e, done) => done() }) as never,
  });

async function startPair(maxReceiveMessageBytes?: number, tls?: TlsFiles) {
  const servers = [];
  for (const lean of [false, true]) {
    const seen: Seen = { cancelled: [], calls: 0 };
    const metrics = createMetrics({ withoutDefaultMetrics: true });
    const grpc = await startGrpcServer({
      urls: parseUrlList(tls === undefined ? "http://127.0.0.1:0" : "https://127.0.0.1:0"),
      tls,
      services: [{ definition, implementation: implementation(seen), leanUnaryMethods: lean ? methods : [] }],
      logger: quietLogger(),
      metrics,
      maxReceiveMessageBytes,
      shutdownTimeoutMs: 500,
    });
    cleanups.push(() => grpc.shutdown());
    const address = `127.0.0.1:${grpc.urls[0]!.port}`;
    servers.push({ lean, address, seen, metrics });
  }
  return servers;
}

const LeanClient = makeGenericClientConstructor(definition, "Lean");
type Stub = Record<
  string,
  (
    req: Msg,
    md: Metadata,
    opts: { deadline?: number },
    cb: (err: ServiceError | null, res?: Msg) => void,
  ) => { on(event: string, fn: (...a: unknown[]) => void): void; cancel(): void }
>;

function client(
  address: string,
  options: Record<string, unknown> = {},
  creds = credentials.createInsecure(),
): Stub {
  const c = new LeanClient(address, creds, options);
  cleanups.push(() => c.close());
  return c as unknown as Stub;
}

interface Outcome {
  code: number;
  details?: string;
  text?: string;
  header?: string;
  trailer?: string;
  errorCode?: string;
}

function callOnce(stub: Stub, method: string, req: Msg, md = new Metadata(), deadlineMs?: number) {
  return new Promise<Outcome>((resolve) => {
    const out: Outcome = { code: -1 };
    const call = stub[method]!(
      req,
      md,
      deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs },
      (err, res) => {
        if (err) {
          out.code = err.code;
          out.details = err.details;
          out.errorCode = String(err.metadata.get("x-photon-error-code")[0] ?? "");
        } else {
          out.code = status.OK;
          out.text = res?.text;
        }
      },
    );
    call.on("metadata", (m) => {
      out.header = String((m as Metadata).get("x-header")[0] ?? "");
    });
    call.on("status", (s) => {
      out.trailer = String((s as { metadata: Metadata }).metadata.get("x-trailer")[0] ?? "");
      // The callback runs before "status"; resolve after both.
      setImmediate(() => resolve(out));
    });
  });
}

/** One raw HTTP/2 request: the response headers' :status/content-type/grpc-status/grpc-message and body. */
async function raw(address: string, path: string, body: Buffer, extra: Record<string, string> = {}) {
  const session = connect(`http://${address}`);
  cleanups.push(() => {
    session.close();
  });
  return new Promise<Record<string, string>>((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...extra,
    });
    const out: Record<string, string> = {};
    const chunks: Buffer[] = [];
    const take = (h: Record<string, unknown>) => {
      for (const k of [":status", "content-type", "grpc-status", "grpc-message"])
        if (h[k] !== undefined) out[k] = String(h[k]);
    };
    req.on("response", take);
    req.on("trailers", take);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      out.body = Buffer.concat(chunks).toString("hex");
      resolve(out);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function frame(payload: Buffer, compressed = 0): Buffer {
  const f = Buffer.alloc(5 + payload.length);
  f[0] = compressed;
  f.writeUInt32BE(payload.length, 1);
  payload.copy(f, 5);
  return f;
}

describe("lean unary path", () => {
  it("answers calls, errors, metadata and thrown handlers as grpc-js does", async () => {
    const servers = await startPair();
    const results = [];
    for (const s of servers) {
      const stub = client(s.address);
      const md = new Metadata();
      md.set("authorization", "Bearer abc");
      results.push({
        say: await callOnce(stub, "Say", { text: "hi" }, md, 5000),
        fail: await callOnce(stub, "Fail", { text: "" }),
        meta: await callOnce(stub, "Meta", { text: "" }),
        thrown: await callOnce(stub, "Throw", { text: "" }),
      });
    }
    // Internal errors carry a random error id; everything else must be identical.
    for (const r of results) r.thrown.details = r.thrown.details?.replace(/id [0-9a-f-]{36}/, "id <uuid>");
    const [grpcJs, lean] = results;
    expect(lean).toEqual(grpcJs);
    expect(lean!.say).toMatchObject({
      code: status.OK,
      text: "hi auth=Bearer abc path=/test.v1.Lean/Say peer=true deadline=true transport= auth-context=none",
    });
    expect(lean!.fail).toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: "refused: 100% sure, naïve",
      errorCode: "TEST_REFUSED",
    });
    expect(lean!.meta).toMatchObject({ code: status.OK, text: "meta", header: "h1", trailer: "t1" });
    expect(lean!.thrown).toMatchObject({ code: status.INTERNAL, details: "internal error (id <uuid>)" });
  });

  it("gives handlers the verified client certificate over mTLS, as grpc-js does", async () => {
    const ca = createTestCa("lean CA");
    const serverPem = ca.issue("server");
    const clientPem = ca.issue("lean-client");
    const files = writePemFiles({ "ca.pem": ca.cert, "s.pem": serverPem.cert, "s-key.pem": serverPem.key });
    cleanups.push(removePemFiles);
    const servers = await startPair(undefined, {
      certFile: files["s.pem"],
      keyFile: files["s-key.pem"],
      trustedCaFile: files["ca.pem"],
      clientCertAuth: true,
    });
    const creds = credentials.createSsl(
      Buffer.from(ca.cert),
      Buffer.from(clientPem.key),
      Buffer.from(clientPem.cert),
    );
    const texts = [];
    for (const s of servers)
      texts.push((await callOnce(client(s.address, {}, creds), "Say", { text: "tls" })).text);
    expect(texts[1]).toEqual(texts[0]);
    expect(texts[1]).toContain("auth-context=ssl:lean-client");
  });

  it("counts lean calls in the kit's metrics like grpc-js calls", async () => {
    const servers = await startPair();
    const texts = [];
    for (const s of servers) {
      const stub = client(s.address);
      await callOnce(stub, "Say", { text: "a" });
      await callOnce(stub, "Fail", { text: "" });
      const text = await s.metrics.registry.metrics();
      texts.push(
        text
          .split("\n")
          .filter(
            (l) => l.startsWith("grpc_server_handled_total") || l.startsWith("grpc_server_started_total"),
          )
          .sort(),
      );
    }
    expect(texts[1]).toEqual(texts[0]);
    expect(texts[1]!.join("\n")).toContain(
      'grpc_method="Fail",grpc_type="unary",grpc_code="FAILED_PRECONDITION"} 1',
    );
  });

  it("ends a call at its deadline with DEADLINE_EXCEEDED and tells the handler, as on cancellation", async () => {
    const servers = await startPair();
    for (const s of servers) {
      const stub = client(s.address);
      const timedOut = await callOnce(stub, "Hang", { text: "deadline" }, new Metadata(), 200);
      expect(timedOut.code, `lean=${s.lean}`).toBe(status.DEADLINE_EXCEEDED);
      const cancelled = new Promise<Outcome>((resolve) => {
        const call = stub.Hang!({ text: "cancel" }, new Metadata(), {}, (err) =>
          resolve({ code: err?.code ?? status.OK }),
        );
        const started = Date.now();
        const poll = setInterval(() => {
          if (s.seen.calls >= 2 || Date.now() - started > 10_000) {
            clearInterval(poll);
            call.cancel();
          }
        }, 5);
      });
      expect((await cancelled).code).toBe(status.CANCELLED);
      const deadline = Date.now() + 10_000;
      while (s.seen.cancelled.length < 2 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      expect(s.seen.cancelled.sort(), `lean=${s.lean}`).toEqual(["cancel", "deadline"]);
    }
  });

  it("gives malformed and oversized requests the answers grpc-js gives, without calling the handler", async () => {
    const servers = await startPair(64);
    const ok = frame(json({ text: "x" }));
    const cases: [string, Buffer, Record<string, string>?][] = [
      ["valid", ok],
      ["no message", Buffer.alloc(0)],
      ["two messages", Buffer.concat([ok, ok])],
      ["truncated message", ok.subarray(0, ok.length - 2)],
      ["compressed flag with identity encoding", frame(json({ text: "x" }), 1)],
      ["undecodable message", frame(Buffer.from("{not json"))],
      ["oversized message", frame(json({ text: "y".repeat(100) }))],
      ["malformed grpc-timeout", ok, { "grpc-timeout": "soon" }],
      ["other content type", ok, { "content-type": "application/json" }],
    ];
    const answers: Record<string, string>[][] = [[], []];
    for (const [i, s] of servers.entries())
      for (const [, body, extra] of cases)
        answers[i]!.push(await raw(s.address, "/test.v1.Lean/Say", body, extra));
    for (const [i, [name]] of cases.entries()) {
      const [g, l] = [answers[0]![i]!, answers[1]![i]!];
      expect({ case: name, ...l }).toEqual({ case: name, ...g });
    }
    expect(answers[1]!.map((a) => a["grpc-status"] ?? `HTTP ${a[":status"]}`)).toEqual([
      "0", // valid
      "12", // no message: UNIMPLEMENTED
      "12", // two messages
      "12", // truncated
      "0", // the flag is not read under identity encoding (grpc-js reads the message as it stands)
      "13", // undecodable: INTERNAL
      "8", // oversized: RESOURCE_EXHAUSTED
      "13", // malformed grpc-timeout: INTERNAL
      "HTTP 415", // not gRPC
    ]);
    // Only the two calls answered OK reached a handler (on each server).
    expect(servers.map((s) => s.seen.calls)).toEqual([2, 2]);
  });

  it("leaves compressed calls to grpc-js, which answers them", async () => {
    const servers = await startPair();
    for (const s of servers) {
      const stub = client(s.address, { "grpc.default_compression_algorithm": 2 /* gzip */ });
      expect((await callOnce(stub, "Say", { text: "zip" })).text).toMatch(/^zip auth=undefined/);
    }
  });

  it("bounds the request bytes one connection's calls hold: the call that would go over fails, the rest go on", async () => {
    // Both lean paths: the kit's own front, and grpc-js's http2 server (PHOTON_GRPC_FRONT=0).
    for (const front of ["1", "0"]) {
      const before = process.env.PHOTON_GRPC_FRONT;
      process.env.PHOTON_GRPC_FRONT = front;
      const seen: Seen = { cancelled: [], calls: 0 };
      const grpc = await startGrpcServer({
        urls: parseUrlList("http://127.0.0.1:0"),
        services: [{ definition, implementation: implementation(seen), leanUnaryMethods: methods }],
        logger: quietLogger(),
        maxReceiveMessageBytes: 64 << 10,
        maxConnectionRequestBytes: 4096,
        shutdownTimeoutMs: 500,
      }).finally(() => {
        if (before === undefined) delete process.env.PHOTON_GRPC_FRONT;
        else process.env.PHOTON_GRPC_FRONT = before;
      });
      cleanups.push(() => grpc.shutdown());
      const session = connect(`http://127.0.0.1:${grpc.urls[0]!.port}`);
      cleanups.push(() => {
        session.close();
      });
      // A message of about 3,000 bytes: one fits in the 4,096-byte budget, two at once do not.
      const message = (tag: string) => frame(json({ text: tag + "x".repeat(2980) }));
      const open = () => {
        const req = session.request({
          ":method": "POST",
          ":path": "/test.v1.Lean/Say",
          "content-type": "application/grpc",
          te: "trailers",
        });
        const answer = new Promise<Record<string, string>>((resolve) => {
          const out: Record<string, string> = {};
          // The status ends the call (a trailers-only answer may come while the request is still
          // being sent): the client then closes its side, as a gRPC client does.
          const take = (h: Record<string, unknown>) => {
            for (const k of ["grpc-status", "grpc-message"]) if (h[k] !== undefined) out[k] = String(h[k]);
            if (out["grpc-status"] !== undefined) {
              req.close();
              resolve(out);
            }
          };
          req.on("response", take);
          req.on("trailers", take);
          req.on("data", (c: Buffer) => {
            out.text = (out.text ?? "") + c.toString();
          });
          req.on("error", () => {});
        });
        return { req, answer };
      };
      // Two calls send most of their message and wait: the one whose data arrives second goes over.
      const calls = [
        { ...open(), body: message("a") },
        { ...open(), body: message("b") },
      ];
      for (const c of calls) c.req.write(c.body.subarray(0, 2500));
      const failed = await Promise.race(calls.map((c, i) => c.answer.then(() => i)));
      const other = calls[1 - failed]!;
      expect(await calls[failed]!.answer).toEqual({
        "grpc-status": String(status.RESOURCE_EXHAUSTED),
        "grpc-message": encodeURI("Request data held for this connection's calls would exceed 4096 bytes"),
      });
      // The other call completes; so does a new one once the failed call's bytes were let go.
      other.req.end(other.body.subarray(2500));
      const ok = await other.answer;
      expect(ok["grpc-status"]).toBe("0");
      expect(ok.text).toContain(failed === 0 ? "bxxx" : "axxx");
      const next = open();
      next.req.end(message("c"));
      const third = await next.answer;
      expect(third["grpc-status"]).toBe("0");
      expect(third.text).toContain("cxxx");
      // Only the two completed calls reached the handler.
      expect(seen.calls).toBe(2);
    }
    await expect(
      startGrpcServer({
        urls: parseUrlList("http://127.0.0.1:0"),
        services: [{ definition, implementation: {}, leanUnaryMethods: methods }],
        logger: quietLogger(),
        maxConnectionRequestBytes: 0,
      }),
    ).rejects.toThrow("maxConnectionRequestBytes must be a positive whole number of bytes, got 0");
  });

  it("refuses to name a method that does not exist or is not of the listed kind", async () => {
    // Proves both lists are checked against the definition before anything listens.
    const streaming = {
      ...definition,
      Watch: { ...unaryMethod("Watch"), responseStream: true },
      Upload: { ...unaryMethod("Upload"), requestStream: true },
    };
    const start = (lists: { leanUnaryMethods?: string[]; leanClientStreamMethods?: string[] }) =>
      startGrpcServer({
        urls: parseUrlList("http://127.0.0.1:0"),
        services: [{ definition: streaming, implementation: {}, ...lists }],
        logger: quietLogger(),
      });
    await expect(start({ leanUnaryMethods: ["Nope"] })).rejects.toThrow(
      "leanUnaryMethods of test.v1.Lean: Nope is not one of its methods",
    );
    await expect(start({ leanUnaryMethods: ["Watch"] })).rejects.toThrow(
      "leanUnaryMethods of test.v1.Lean: Watch is not unary",
    );
    await expect(start({ leanUnaryMethods: ["Upload"] })).rejects.toThrow(
      "leanUnaryMethods of test.v1.Lean: Upload is not unary",
    );
    await expect(start({ leanClientStreamMethods: ["Say"] })).rejects.toThrow(
      "leanClientStreamMethods of test.v1.Lean: Say is not client-streaming",
    );
    await expect(start({ leanClientStreamMethods: ["Watch"] })).rejects.toThrow(
      "leanClientStreamMethods of test.v1.Lean: Watch is not client-streaming",
    );
  });
});
