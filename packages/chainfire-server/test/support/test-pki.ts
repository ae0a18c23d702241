// A throwaway certificate authority for TLS tests: keys from node:crypto, X.509 certificates built
// and signed with node-forge, valid for 127.0.0.1 and localhost, usable as server and client certs.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import forge from "node-forge";

export interface PemFiles {
  readonly cert: string;
  readonly key: string;
}

interface KeyPair {
  readonly forgeKey: forge.pki.rsa.PrivateKey;
  readonly publicKey: forge.pki.rsa.PublicKey;
  readonly pem: string;
}

function keyPair(): KeyPair {
  const pem = generateKeyPairSync("rsa", { modulusLength: 2048 })
    .privateKey.export({ type: "pkcs8", format: "pem" })
    .toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), pem };
}

function certificate(subject: string, publicKey: forge.pki.PublicKey): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = `01${randomBytes(8).toString("hex")}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
  cert.setSubject([{ name: "commonName", value: subject }]);
  return cert;
}

/** A CA written to `<dir>/<name>-ca.pem`; `issue` writes a leaf pair signed by it. */
export function testCa(dir: string, name: string) {
  const caKeys = keyPair();
  const ca = certificate(`${name} CA`, caKeys.publicKey);
  ca.setIssuer(ca.subject.attributes);
  ca.setExtensions([
    { name: "basicConstraints", cA: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true },
  ]);
  ca.sign(caKeys.forgeKey, forge.md.sha256.create());
  const caFile = join(dir, `${name}-ca.pem`);
  writeFileSync(caFile, forge.pki.certificateToPem(ca));
  const issue = (leafName: string): PemFiles => {
    const keys = keyPair();
    const leaf = certificate(leafName, keys.publicKey);
    leaf.setIssuer(ca.subject.attributes);
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
    leaf.sign(caKeys.forgeKey, forge.md.sha256.create());
    const files = { cert: join(dir, `${leafName}.pem`), key: join(dir, `${leafName}-key.pem`) };
    writeFileSync(files.cert, forge.pki.certificateToPem(leaf));
    writeFileSync(files.key, keys.pem, { mode: 0o600 });
    return files;
  };
  return { caFile, issue };
}
