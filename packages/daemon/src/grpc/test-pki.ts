// A throwaway PKI for TLS tests: a CA, and leaf certificates for 127.0.0.1 / localhost signed by it.
// Keys come from node:crypto (fast); node-forge builds and signs the X.509 certificates.

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import forge from "node-forge";

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

function newKeys(): {
  privateKey: forge.pki.rsa.PrivateKey;
  publicKey: forge.pki.rsa.PublicKey;
  keyPem: string;
} {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), keyPem };
}

function baseCert(publicKey: forge.pki.PublicKey, commonName: string): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = `01${randomBytes(8).toString("hex")}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
  cert.setSubject([{ name: "commonName", value: commonName }]);
  return cert;
}

export interface TestCa extends Pem {
  /** Issue a leaf for 127.0.0.1/localhost usable as server and client certificate. */
  issue(commonName: string): Pem;
  /** A certificate revocation list (PEM, X.509 v2 CRL signed by this CA) listing these leaves. */
  revocationList(revoked: readonly Pem[]): string;
}

export function createTestCa(commonName = "test CA"): TestCa {
  const keys = newKeys();
  const cert = baseCert(keys.publicKey, commonName);
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return {
    cert: forge.pki.certificateToPem(cert),
    key: keys.keyPem,
    issue: (leafName) => {
      const leafKeys = newKeys();
      const leaf = baseCert(leafKeys.publicKey, leafName);
      leaf.setIssuer(cert.subject.attributes);
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
      leaf.sign(keys.privateKey, forge.md.sha256.create());
      return { cert: forge.pki.certificateToPem(leaf), key: leafKeys.keyPem };
    },
    revocationList: (revoked) => {
      const { asn1 } = forge;
      const seq = (items: forge.asn1.Asn1[]) =>
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
      const time = (date: Date) =>
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date));
      const sha256WithRsa = seq([
        asn1.create(
          asn1.Class.UNIVERSAL,
          asn1.Type.OID,
          false,
          asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption!).getBytes(),
        ),
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ""),
      ]);
      const now = new Date();
      const entries = revoked.map((pem) =>
        seq([
          asn1.create(
            asn1.Class.UNIVERSAL,
            asn1.Type.INTEGER,
            false,
            forge.util.hexToBytes(forge.pki.certificateFromPem(pem.cert).serialNumber),
          ),
          time(now),
        ]),
      );
      const tbs = seq([
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(1).getBytes()),
        sha256WithRsa,
        forge.pki.distinguishedNameToAsn1(cert.subject),
        time(new Date(now.getTime() - 60_000)),
        time(new Date(now.getTime() + 24 * 3600_000)),
        ...(entries.length > 0 ? [seq(entries)] : []),
      ]);
      const md = forge.md.sha256.create();
      md.update(asn1.toDer(tbs).getBytes());
      const signature = keys.privateKey.sign(md);
      const crl = seq([
        tbs,
        sha256WithRsa,
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\u0000${signature}`),
      ]);
      return forge.pem.encode({ type: "X509 CRL", body: asn1.toDer(crl).getBytes() });
    },
  };
}

const pemDirs: string[] = [];

/**
 * Write PEM strings to files in a fresh temporary directory; returns their paths by name. The test
 * removes them with `removePemFiles` when it is done.
 */
export function writePemFiles(files: Record<string, string>): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), "daemon-tls-"));
  pemDirs.push(dir);
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text, { mode: 0o600 });
  }
  return paths;
}

/** Removes every directory `writePemFiles` made in this process. */
export function removePemFiles(): void {
  for (const dir of pemDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
