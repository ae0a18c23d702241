import { writeFileSync } from "node:fs";
import { request } from "node:https";
import type { ConnectionOptions } from "node:tls";
import { credentials, status } from "@grpc/grpc-js";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../config/config-error.js";
import { ECHO_PROTO, echoImplementation, echoServiceDefinition } from "../example/echo-daemon.js";
import { startHttpServer } from "../http-server.js";
import { createLogger } from "../logging.js";
import { parseUrlList } from "../urls.js";
import { startGrpcServer } from "./grpc-server.js";
import { checkListenerTls, loadTlsMaterial } from "./tls.js";
import { checkHealth } from "./probe-clients.js";
import { h2OverTlsAnswers } from "../testing/h2-over-tls.js";
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

/** A TLS echo server behind the kit's front (a lean method makes it fronted), with extra TLS settings. */
async function startFrontedTlsServer(extra: object): Promise<number> {
  const grpc = await startGrpcServer({
    urls: parseUrlList("https://127.0.0.1:0"),
    tls: {
      certFile: files["server.pem"],
      keyFile: files["server-key.pem"],
      trustedCaFile: files["ca.pem"],
      ...extra,
    },
    services: [
      { definition: echoServiceDefinition(), implementation: echoImplementation, leanUnaryMethods: ["Say"] },
    ],
    protoFiles: [ECHO_PROTO],
    logger,
    shutdownTimeoutMs: 1000,
  });
  cleanups.push(() => grpc.shutdown());
  return grpc.urls[0]!.port;
}

/** Whether the server takes a TLS connection with this client certificate (and TLS options). */
const tlsAccepted = (port: number, pem: Pem, options: ConnectionOptions = {}) =>
  h2OverTlsAnswers({ port, ca: ca.cert, cert: pem.cert, key: pem.key, ...options });

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

  it("refuses a client certificate on the revocation list (etcd's --client-crl-file), read again when it changes", async () => {
    // Proves etcd's CRL check: a listed serial is refused, another certificate of the same CA is
    // served, a certificate of a second trusted CA (which has no list) is served too, and a list
    // rewritten while the server runs takes effect on the next connection.
    const otherCa = createTestCa("second CA");
    const fromOther = otherCa.issue("other-client");
    const revoked = ca.issue("revoked");
    const later = ca.issue("revoked-later");
    const paths = writePemFiles({
      "bundle.pem": `${ca.cert}${otherCa.cert}`,
      "crl.pem": ca.revocationList([revoked]),
    });
    const port = await startFrontedTlsServer({
      trustedCaFile: paths["bundle.pem"],
      crlFile: paths["crl.pem"],
    });
    const accepted = async (pem: Pem) => tlsAccepted(port, pem, { ca: `${ca.cert}${otherCa.cert}` });
    expect([
      await accepted(client),
      await accepted(revoked),
      await accepted(fromOther),
      await accepted(later),
    ]).toEqual([true, false, true, true]);
    // Rewritten with one more entry (and a new size, so the change is seen at once).
    writeFileSync(paths["crl.pem"]!, ca.revocationList([revoked, later]));
    expect([await accepted(later), await accepted(client)]).toEqual([false, true]);
  });

  it("accepts only the allowed CN or hostname (etcd's --peer-cert-allowed-cn, --…-cert-allowed-hostname)", async () => {
    // Proves the check beyond the chain: another CN of the same CA is refused; a hostname the
    // certificate is valid for is accepted, one it is not valid for is refused.
    const member = ca.issue("member");
    const byCn = await startFrontedTlsServer({ allowedCn: "member" });
    expect([await tlsAccepted(byCn, member), await tlsAccepted(byCn, client)]).toEqual([true, false]);
    const byHost = await startFrontedTlsServer({ allowedHostname: "localhost" });
    expect(await tlsAccepted(byHost, client)).toBe(true);
    const otherHost = await startFrontedTlsServer({ allowedHostname: "member.example" });
    expect(await tlsAccepted(otherHost, client)).toBe(false);
  });

  it("allows only the given TLS 1.2 cipher suites, by etcd's names; TLS 1.3 keeps its own", async () => {
    // Proves --cipher-suites: a TLS 1.2 client offering only another suite fails its handshake,
    // one offering a listed suite is served, and TLS 1.3 is unaffected (as with Go's crypto/tls).
    const port = await startFrontedTlsServer({ cipherSuites: ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"] });
    const tls12 = (ciphers: string) => tlsAccepted(port, client, { maxVersion: "TLSv1.2", ciphers });
    expect([
      await tls12("ECDHE-RSA-AES128-GCM-SHA256"),
      await tls12("ECDHE-RSA-AES256-GCM-SHA384"),
      await tlsAccepted(port, client),
    ]).toEqual([true, false, true]);
  });

  it("refuses these settings where they cannot be enforced or do not fit together, naming the flags", async () => {
    // Proves bad TLS settings stop the start: an unknown suite, a CRL or allowed CN without client
    // certificates to check, CN and hostname together (as etcd), and a listener not behind the front.
    const urls = parseUrlList("https://127.0.0.1:0");
    const base = { certFile: files["server.pem"], keyFile: files["server-key.pem"] };
    const start = (tls: object, lean = true) =>
      startGrpcServer({
        urls,
        tls: { ...base, ...tls },
        services: [
          {
            definition: echoServiceDefinition(),
            implementation: echoImplementation,
            ...(lean ? { leanUnaryMethods: ["Say"] } : {}),
          },
        ],
        logger,
        what: "--listen-client-urls",
      });
    await expect(start({ cipherSuites: ["TLS_RSA_WITH_RC4_128_SHA"] })).rejects.toThrow(
      '--cipher-suites: unknown cipher suite "TLS_RSA_WITH_RC4_128_SHA"',
    );
    await expect(start({ crlFile: files["ca.pem"] })).rejects.toThrow(
      "--client-crl-file applies to client certificates, which are checked only with --trusted-ca-file",
    );
    await expect(
      start({ trustedCaFile: files["ca.pem"], allowedCn: "a", allowedHostname: "b" }),
    ).rejects.toThrow("exclude each other");
    await expect(start({ trustedCaFile: files["ca.pem"], allowedCn: "a" }, false)).rejects.toThrow(
      "enforced by the daemon kit's front only",
    );
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

  it("checks every https:// listener's files up front, and says when an http:// URL leaves TLS settings unused", () => {
    // Proves the start-up check: etcd serves an http:// URL given certificates as plain HTTP and
    // warns; so does this, per URL, and an https:// URL's bad files are refused before any listener.
    const warnings: string[] = [];
    const warn = (_fields: Record<string, unknown>, msg: string) => warnings.push(msg);
    const tls = {
      certFile: files["server.pem"],
      keyFile: files["server-key.pem"],
      trustedCaFile: files["ca.pem"],
      clientCertAuth: true,
    };
    checkListenerTls(
      [
        {
          urls: parseUrlList("https://127.0.0.1:2379,http://127.0.0.1:22379"),
          tls,
          what: "--listen-client-urls",
        },
      ],
      warn,
    );
    expect(warnings).toEqual([
      "http://127.0.0.1:22379 is http:// while --cert-file or --key-file is set; this URL serves without TLS",
      "http://127.0.0.1:22379 is http:// while --client-cert-auth or --trusted-ca-file is set; this URL does not check client certificates",
    ]);
    warnings.length = 0;
    checkListenerTls(
      [{ urls: parseUrlList("http://127.0.0.1:2379"), tls: {}, what: "--listen-client-urls" }],
      warn,
    );
    expect(warnings).toEqual([]);
    expect(() =>
      checkListenerTls(
        [
          {
            urls: parseUrlList("https://127.0.0.1:2380"),
            tls: { flagNames: { certFile: "--peer-cert-file" } },
            what: "--listen-peer-urls",
          },
        ],
        warn,
      ),
    ).toThrow("--listen-peer-urls (https://127.0.0.1:2380) uses https:// but --peer-cert-file is not set");
  });

  it("refuses a file that is not a certificate or key, or a key of another certificate, naming the flag", async () => {
    // Proves the PEM files are parsed while the configuration is checked, not when the first
    // listener is made (which failed with a bare OpenSSL error and no flag named).
    const bad = writePemFiles({
      "garbage.pem": "not a certificate\n",
      "other-key.pem": client.key,
      "encrypted-key.pem":
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    });
    const load = (tls: object) => () =>
      loadTlsMaterial(
        { certFile: files["server.pem"], keyFile: files["server-key.pem"], ...tls },
        "--listen-client-urls (https://127.0.0.1:2379)",
      );
    const refused = (tls: object) => {
      try {
        load(tls)();
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error("accepted");
    };
    expect(refused({ certFile: bad["garbage.pem"] })).toBeInstanceOf(ConfigError);
    expect(refused({ certFile: bad["garbage.pem"] }).message).toMatch(
      new RegExp(`^--cert-file: ${bad["garbage.pem"]}: not a PEM certificate \\(`),
    );
    expect(refused({ keyFile: bad["garbage.pem"] }).message).toMatch(
      new RegExp(`^--key-file: ${bad["garbage.pem"]}: not an unencrypted PEM private key \\(`),
    );
    expect(refused({ keyFile: bad["encrypted-key.pem"] }).message).toMatch(
      /^--key-file: .*: not an unencrypted PEM private key \(/,
    );
    expect(refused({ keyFile: bad["other-key.pem"] }).message).toMatch(
      new RegExp(`^--key-file: ${bad["other-key.pem"]}: does not match --cert-file \\(`),
    );
    expect(refused({ trustedCaFile: bad["garbage.pem"] }).message).toMatch(
      /^--trusted-ca-file: .*: not a PEM certificate bundle \(/,
    );
    // Peer flags are named as such, and no message carries a byte of the key.
    const peer = refused({
      keyFile: bad["other-key.pem"],
      flagNames: { certFile: "--peer-cert-file", keyFile: "--peer-key-file" },
    });
    expect(peer.message).toMatch(/^--peer-key-file: .*: does not match --peer-cert-file/);
    expect(peer.message).not.toContain(client.key.split("\n")[1]!.slice(0, 20));
    expect(load({})()).toMatchObject({ clientCertAuth: false });
  });
});
