// Proves the seed's mTLS overlap-and-cutover rotation over real TLS connections: both certificates authenticate during the overlap, the old one is refused once its root and mapping are removed, with no restart.
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CertificateRejectedError,
  MtlsIdentityVerifier,
  createDevCa,
  issueDevCertificate,
} from "../src/index.js";

const verifier = new MtlsIdentityVerifier();
const serverCa = createDevCa("server CA");
const serverCert = issueDevCertificate(serverCa, {
  commonName: "iam",
  dnsNames: ["localhost"],
  ipAddresses: ["127.0.0.1"],
});
const oldCa = createDevCa("old client CA");
const newCa = createDevCa("new client CA");
const oldId = "spiffe://photon.local/ns/core/sa/chainfire-v1";
const newId = "spiffe://photon.local/ns/core/sa/chainfire-v2";
let server: tls.Server;
let port: number;

// The server asks for a client certificate but judges it itself, against the verifier's current state,
// so trust roots and mappings change without restarting the listener.
beforeAll(async () => {
  server = tls.createServer(
    { cert: serverCert.certPem, key: serverCert.keyPem, requestCert: true, rejectUnauthorized: false },
    (socket) => {
      const peer = socket.getPeerCertificate(true);
      let answer: string;
      try {
        answer = `OK ${verifier.authenticate(peer.raw).principalId}`;
      } catch (err) {
        answer = err instanceof CertificateRejectedError ? `DENY ${err.code}` : "DENY no certificate";
      }
      socket.end(answer);
    },
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
});

afterAll(() => {
  server.close();
});

async function call(client: { certPem: string; keyPem: string }): Promise<string> {
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    ca: serverCa.certPem,
    cert: client.certPem,
    key: client.keyPem,
  });
  let data = "";
  socket.setEncoding("utf8");
  socket.on("data", (d: string) => (data += d));
  await once(socket, "end");
  socket.destroy();
  return data;
}

describe("mTLS overlap-and-cutover rotation", () => {
  it("authenticates both certificates during overlap and rejects the old one after cutover", async () => {
    const oldCert = issueDevCertificate(oldCa, { commonName: "chainfire", uriSan: oldId });
    const newCert = issueDevCertificate(newCa, { commonName: "chainfire", uriSan: newId });
    verifier.addTrustRoot("old", oldCa.certPem);
    verifier.mapIdentity(oldId, "svc-chainfire");
    expect(await call(oldCert)).toBe("OK svc-chainfire");
    expect(await call(newCert)).toBe("DENY CERT_UNTRUSTED");

    // 1. trust both old and new roots and mappings during the overlap window.
    verifier.addTrustRoot("new", newCa.certPem);
    verifier.mapIdentity(newId, "svc-chainfire");
    // 2. the new certificate serves traffic while the old one still works.
    expect(await call(newCert)).toBe("OK svc-chainfire");
    expect(await call(oldCert)).toBe("OK svc-chainfire");

    // 3. remove the old mapping: the old certificate is refused at once.
    verifier.unmapIdentity(oldId);
    expect(await call(oldCert)).toBe("DENY CERT_IDENTITY_UNMAPPED");
    // 4. remove the old root: refused on trust grounds even if the mapping came back.
    verifier.mapIdentity(oldId, "svc-chainfire");
    verifier.removeTrustRoot("old");
    expect(await call(oldCert)).toBe("DENY CERT_UNTRUSTED");
    expect(await call(newCert)).toBe("OK svc-chainfire");
  });

  it("accepts exactly one URI SAN and refuses CA and expired certificates", async () => {
    verifier.addTrustRoot("new", newCa.certPem);
    const noUri = issueDevCertificate(newCa, { commonName: "no-uri", dnsNames: ["x.local"] });
    expect(await call(noUri)).toBe("DENY CERT_URI_SAN_COUNT");
    const twoUris = issueDevCertificate(newCa, { commonName: "two", uriSan: newId, extraUriSans: [oldId] });
    expect(await call(twoUris)).toBe("DENY CERT_URI_SAN_COUNT");
    const expired = issueDevCertificate(newCa, {
      commonName: "old",
      uriSan: newId,
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      validDays: 1,
    });
    expect(await call(expired)).toBe("DENY CERT_EXPIRED");
    expect(() => verifier.authenticate(newCa.certPem)).toThrow(CertificateRejectedError);
    expect(() => verifier.addTrustRoot("leaf", noUri.certPem)).toThrow(/not a CA/);
  });
});
