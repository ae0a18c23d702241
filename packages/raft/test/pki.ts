// A throwaway PKI for the TLS tests: a CA and leaf certificates for 127.0.0.1/localhost usable as
// both server and client certificates. node:crypto makes the keys; node-forge builds and signs
// the certificates.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import forge from "node-forge";

export interface PemPair {
  cert: string;
  key: string;
}

export interface TestAuthority extends PemPair {
  issue(commonName: string): PemPair;
}

function rsaKey(): { key: forge.pki.rsa.PrivateKey; pem: string } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return { key: forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey, pem };
}

function certificate(key: forge.pki.rsa.PrivateKey, subject: string): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = `01${randomBytes(8).toString("hex")}`;
  cert.validity.notBefore = new Date(Date.now() - 3600_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
  cert.setSubject([{ name: "commonName", value: subject }]);
  return cert;
}

export function createAuthority(name: string): TestAuthority {
  const ca = rsaKey();
  const caCert = certificate(ca.key, name);
  caCert.setIssuer(caCert.subject.attributes);
  caCert.setExtensions([
    { name: "basicConstraints", cA: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true },
  ]);
  caCert.sign(ca.key, forge.md.sha256.create());
  return {
    cert: forge.pki.certificateToPem(caCert),
    key: ca.pem,
    issue(commonName) {
      const leafKey = rsaKey();
      const leaf = certificate(leafKey.key, commonName);
      leaf.setIssuer(caCert.subject.attributes);
      leaf.setExtensions([
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
        { name: "extKeyUsage", serverAuth: true, clientAuth: true },
        {
          name: "subjectAltName",
          altNames: [
            { type: 7, ip: "127.0.0.1" },
            { type: 2, value: "localhost" },
          ],
        },
      ]);
      leaf.sign(ca.key, forge.md.sha256.create());
      return { cert: forge.pki.certificateToPem(leaf), key: leafKey.pem };
    },
  };
}

/** Writes `files` (name → PEM text) into `dir` with owner-only permissions; returns their paths. */
export function writePems(dir: string, files: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    out[name] = join(dir, name);
    writeFileSync(out[name], text, { mode: 0o600 });
  }
  return out;
}
