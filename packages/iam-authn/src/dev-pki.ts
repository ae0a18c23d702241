import { randomBytes } from "node:crypto";
import forge from "node-forge";

/** A certificate and its private key, both PEM. The dev PKI is RSA because node-forge only does RSA. */
export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface IssueOptions {
  commonName: string;
  /** The one URI SAN for a client identity, e.g. spiffe://photon.local/svc/chainfire. */
  uriSan?: string;
  /** More URI SANs; only for producing certificates that must be refused (iam accepts exactly one). */
  extraUriSans?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  validDays?: number;
  /** Start of validity; defaults to one minute ago so fresh certificates work despite small clock skew. */
  notBefore?: Date;
}

function serial(): string {
  // Positive 128-bit serial: clear the top bit so DER does not read it as negative.
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString("hex");
}

function newCertificate(commonName: string, validDays: number, notBefore?: Date) {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  const start = notBefore ?? new Date(Date.now() - 60_000);
  cert.validity.notBefore = start;
  cert.validity.notAfter = new Date(start.getTime() + validDays * 86_400_000);
  cert.setSubject([{ name: "commonName", value: commonName }]);
  return { cert, keys };
}

/** Creates a self-signed development CA. */
export function createDevCa(commonName = "PhotonCloud dev CA", validDays = 365): PemPair {
  const { cert, keys } = newCertificate(commonName, validDays);
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** Issues a leaf certificate (client and server auth) signed by `ca`. */
export function issueDevCertificate(ca: PemPair, options: IssueOptions): PemPair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const { cert, keys } = newCertificate(options.commonName, options.validDays ?? 90, options.notBefore);
  cert.setIssuer(caCert.subject.attributes);
  const altNames: { type: number; value?: string; ip?: string }[] = [];
  if (options.uriSan) altNames.push({ type: 6, value: options.uriSan });
  for (const uri of options.extraUriSans ?? []) altNames.push({ type: 6, value: uri });
  for (const dns of options.dnsNames ?? []) altNames.push({ type: 2, value: dns });
  for (const ip of options.ipAddresses ?? []) altNames.push({ type: 7, ip });
  const extensions: object[] = [
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ];
  if (altNames.length > 0) extensions.push({ name: "subjectAltName", altNames });
  cert.setExtensions(extensions);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}
