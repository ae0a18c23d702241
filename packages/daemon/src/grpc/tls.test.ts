import { request } from "node:https";
import { credentials, status } from "@grpc/grpc-js";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../config/config-error.js";
import { ECHO_PROTO, echoImplementation, echoServiceDefinition } from "../example/echo-daemon.js";
import { startHttpServer } from "../http-server.js";
import { createLogger } from "../logging.js";
import { parseUrlList } from "../urls.js";
import { startGrpcServer } from "./grpc-server.js";
import { checkHealth } from "./probe-clients.js";
import { createTestCa, type Pem, removePemFiles, type TestCa, writePemFiles } from "./test-pki.js";

const logger = createLogger({
  name: "tls-test",
  destination: new Writable({ write: (_c, _e, done) => done() }) as never,
});

let ca: TestCa;
let server: Pem;
let client: Pem;
let rogueClient: Pem;
let files: Record<string, string>;

beforeAll(() => {
  ca = createTestCa("test CA");
  server = ca.issue("server");
  client = ca.issue("client");
  rogueClient = createTestCa("other CA").issue("rogue");
  files = writePemFiles({ "ca.pem": ca.cert, "server.pem": server.cert, "server-key.pem": server.key });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(removePemFiles);

/** A TLS echo server: no client certificates asked, or the trusted CA with or without client-cert-auth. */
async function startTlsServer(clients: "any" | "ca" | "ca+client-cert-auth"): Promise<string> {
  const grpc = await startGrpcServer({
    urls: parseUrlList("https://127.0.0.1:0"),
    tls: {
      certFile: files["server.pem"],
      keyFile: files["server-key.pem"],
      ...(clients === "any" ? {} : { trustedCaFile: files["ca.pem"] }),
      clientCertAuth: clients === "ca+client-cert-auth",
    },
    services: [{ definition: echoServiceDefinition(), implementation: echoImplementation }],
    protoFiles: [ECHO_PROTO],
    logger,
    shutdownTimeoutMs: 1000,
  });
  cleanups.push(() => grpc.shutdown());
  return `127.0.0.1:${grpc.urls[0]!.port}`;
}

const tlsCreds = (pem?: Pem) =>
  credentials.createSsl(
    Buffer.from(ca.cert),
    pem ? Buffer.from(pem.key) : null,
    pem ? Buffer.from(pem.cert) : null,
  );

describe("TLS listeners", () => {
  it("serves https:// with the given certificate and refuses plaintext clients", async () => {
    // Proves an https:// listen URL gets TLS with --cert-file/--key-file.
    const address = await startTlsServer("any");
    expect(await checkHealth(address, "", { credentials: tlsCreds() })).toBe("SERVING");
    await expect(checkHealth(address, "", { deadlineMs: 2000 })).rejects.toMatchObject({
      code: status.UNAVAILABLE,
    });
  });

  it.each(["ca+client-cert-auth", "ca"] as const)(
    "with %s accepts only clients whose certificate chains to the trusted CA",
    async (clients) => {
      // Proves mTLS: no certificate and a certificate from another CA are both refused. As etcd's, a
      // trusted CA alone (without --client-cert-auth) already requires client certificates.
      const address = await startTlsServer(clients);
      expect(await checkHealth(address, "", { credentials: tlsCreds(client) })).toBe("SERVING");
      await expect(
        checkHealth(address, "", { credentials: tlsCreds(), deadlineMs: 2000 }),
      ).rejects.toMatchObject({ code: status.UNAVAILABLE });
      await expect(
        checkHealth(address, "", { credentials: tlsCreds(rogueClient), deadlineMs: 2000 }),
      ).rejects.toMatchObject({ code: status.UNAVAILABLE });
    },
  );

  it("serves the HTTP endpoints over https:// with mTLS too", async () => {
    // Proves /health on an https:// HTTP listener needs a client certificate when client-cert-auth is set.
    const http = await startHttpServer({
      urls: parseUrlList("https://127.0.0.1:0"),
      tls: {
        certFile: files["server.pem"],
        keyFile: files["server-key.pem"],
        trustedCaFile: files["ca.pem"],
        clientCertAuth: true,
      },
      logger,
    });
    cleanups.push(() => http.close());
    const get = (pem?: Pem) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: "127.0.0.1", port: http.urls[0]!.port, path: "/health", ca: ca.cert, ...(pem ?? {}) },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
        req.end();
      });
    expect(await get(client)).toBe(200);
    await expect(get()).rejects.toBeInstanceOf(Error);
  });

  it("refuses https:// without a certificate, and client-cert-auth without a CA, naming the flags", async () => {
    // Proves incomplete TLS configuration is a ConfigError that says which flag to add.
    const urls = parseUrlList("https://127.0.0.1:0");
    const start = (tls: object) =>
      startGrpcServer({ urls, tls, services: [], logger, what: "--listen-client-urls" });
    await expect(start({})).rejects.toThrow(ConfigError);
    await expect(start({})).rejects.toThrow(
      "--listen-client-urls (https://127.0.0.1:0) uses https:// but --cert-file is not set (give --cert-file and --key-file, or use http://)",
    );
    await expect(
      start({ certFile: files["server.pem"], keyFile: files["server-key.pem"], clientCertAuth: true }),
    ).rejects.toThrow("--client-cert-auth needs --trusted-ca-file");
    await expect(start({ certFile: "/nonexistent.pem", keyFile: files["server-key.pem"] })).rejects.toThrow(
      "--cert-file: cannot read /nonexistent.pem: ENOENT",
    );
  });
});
