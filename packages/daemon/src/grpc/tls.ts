// TLS inputs in etcd's shape (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth) turned
// into grpc-js server credentials and node:https options.

import { readFileSync, statSync } from "node:fs";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { checkServerIdentity, createSecureContext, type DetailedPeerCertificate } from "node:tls";
import forge from "node-forge";
import { ServerCredentials } from "@grpc/grpc-js";
import { ConfigError, ConfigErrorCode, configError } from "../config/config-error.js";

export interface TlsFiles {
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** CA bundle that client certificates must chain to. Giving it requires them, as etcd does. */
  readonly trustedCaFile?: string | undefined;
  /** Require and verify a client certificate (mTLS). Needs trustedCaFile, which implies it. */
  readonly clientCertAuth?: boolean | undefined;
  /** A certificate revocation list (PEM or DER): a client certificate chain it lists is refused (etcd's --client-crl-file). */
  readonly crlFile?: string | undefined;
  /** TLS 1.2 cipher suites allowed, by their IANA/Go names (etcd's --cipher-suites); TLS 1.3 keeps its own. */
  readonly cipherSuites?: readonly string[] | undefined;
  /** Only a client certificate with this subject CN is accepted (etcd's --peer-cert-allowed-cn). */
  readonly allowedCn?: string | undefined;
  /** Only a client certificate valid for this hostname is accepted (etcd's --…-cert-allowed-hostname). */
  readonly allowedHostname?: string | undefined;
  /** Flag names used in messages, e.g. `{ certFile: "--peer-cert-file" }`; etcd client names by default. */
  readonly flagNames?: Partial<Record<TlsField, string>>;
}

type TlsField =
  | "certFile"
  | "keyFile"
  | "trustedCaFile"
  | "clientCertAuth"
  | "crlFile"
  | "cipherSuites"
  | "allowedCn"
  | "allowedHostname";

/** PEM material read from TlsFiles. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  readonly clientCertAuth: boolean;
  /** The revocation list file, read again whenever it changes (see clientCertificateCheck). */
  readonly crlFile?: string | undefined;
  /** OpenSSL's names for the allowed TLS 1.2 suites, colon-separated. */
  readonly ciphers?: string | undefined;
  readonly allowedCn?: string | undefined;
  readonly allowedHostname?: string | undefined;
}

/** etcd's cipher suite names (Go's crypto/tls, as etcd 3.4 lists them) → OpenSSL's. */
const CIPHER_SUITES: Readonly<Record<string, string>> = {
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: "DES-CBC3-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA: "AES128-SHA",
  TLS_RSA_WITH_AES_256_CBC_SHA: "AES256-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA256: "AES128-SHA256",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: "ECDHE-RSA-DES-CBC3-SHA",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: "ECDHE-RSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305",
};

/** OpenSSL's cipher list for etcd's suite names; throws ConfigError naming the flag for an unknown one. */
function opensslCiphers(names: readonly string[], flag: string): string | undefined {
  if (names.length === 0) return undefined;
  return names
    .map((name) => {
      const openssl = CIPHER_SUITES[name];
      if (openssl === undefined)
        throw configError(
          ConfigErrorCode.InvalidValue,
          flag,
          `${flag}: unknown cipher suite ${JSON.stringify(name)} (give etcd's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256; RC4 suites are not offered)`,
        );
      return openssl;
    })
    .join(":");
}

function flagName(tls: TlsFiles, field: TlsField): string {
  const defaults: Record<TlsField, string> = {
    certFile: "--cert-file",
    keyFile: "--key-file",
    trustedCaFile: "--trusted-ca-file",
    clientCertAuth: "--client-cert-auth",
    crlFile: "--client-crl-file",
    cipherSuites: "--cipher-suites",
    allowedCn: "--client-cert-allowed-cn",
    allowedHostname: "--client-cert-allowed-hostname",
  };
  return tls.flagNames?.[field] ?? defaults[field];
}

export function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw configError(
      ConfigErrorCode.FileUnreadable,
      flag,
      `${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (give a readable PEM file)`,
    );
  }
}

/** The part of an OpenSSL error worth showing (never any of the file's bytes). */
function reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/^error:[0-9A-F]+:/i, "");
}

/**
 * Parses what `loadTlsMaterial` read, so that a file that is not a certificate, a key that is
 * not a key (or is encrypted) and a key that does not belong to the certificate are configuration
 * errors naming their flag, found before anything is written or listened on. etcd reads and parses
 * its key pairs as it sets up its listeners, before its data dir is touched.
 */
function checkPem(m: { cert: Buffer; key: Buffer; ca: Buffer | undefined }, tls: TlsFiles): void {
  const bad = (field: TlsField, path: string | undefined, why: string) =>
    configError(
      ConfigErrorCode.InvalidValue,
      flagName(tls, field),
      `${flagName(tls, field)}: ${path}: ${why}`,
    );
  try {
    new X509Certificate(m.cert);
  } catch (err) {
    throw bad("certFile", tls.certFile, `not a PEM certificate (${reason(err)})`);
  }
  try {
    createPrivateKey(m.key);
  } catch (err) {
    throw bad("keyFile", tls.keyFile, `not an unencrypted PEM private key (${reason(err)})`);
  }
  try {
    createSecureContext({ cert: m.cert, key: m.key });
  } catch (err) {
    throw bad("keyFile", tls.keyFile, `does not match ${flagName(tls, "certFile")} (${reason(err)})`);
  }
  if (m.ca === undefined) return;
  try {
    new X509Certificate(m.ca);
    createSecureContext({ ca: m.ca });
  } catch (err) {
    throw bad("trustedCaFile", tls.trustedCaFile, `not a PEM certificate bundle (${reason(err)})`);
  }
}

/**
 * Read the files for an https:// listener. Throws ConfigError naming the missing flag when the
 * combination is incomplete (no cert/key, or client-cert-auth without a CA).
 */
export function loadTlsMaterial(tls: TlsFiles, forWhat: string): TlsMaterial {
  const cert = flagName(tls, "certFile");
  const key = flagName(tls, "keyFile");
  if (tls.certFile === undefined || tls.keyFile === undefined) {
    throw configError(
      ConfigErrorCode.Conflict,
      tls.certFile === undefined ? cert : key,
      `${forWhat} uses https:// but ${tls.certFile === undefined ? cert : key} is not set (give ${cert} and ${key}, or use http://)`,
    );
  }
  const ca = flagName(tls, "trustedCaFile");
  if (tls.clientCertAuth && tls.trustedCaFile === undefined) {
    const auth = flagName(tls, "clientCertAuth");
    throw configError(
      ConfigErrorCode.Conflict,
      auth,
      `${auth} needs ${ca} (the CA that client certificates must chain to)`,
    );
  }
  // What only applies to verified client certificates needs them verified.
  for (const field of ["crlFile", "allowedCn", "allowedHostname"] as const) {
    if (tls[field] === undefined || tls[field] === "" || tls.trustedCaFile !== undefined) continue;
    const flag = flagName(tls, field);
    throw configError(
      ConfigErrorCode.Conflict,
      flag,
      `${flag} applies to client certificates, which are checked only with ${ca} (give it, or leave ${flag} out)`,
    );
  }
  const allowedCn = tls.allowedCn || undefined;
  const allowedHostname = tls.allowedHostname || undefined;
  if (allowedCn !== undefined && allowedHostname !== undefined) {
    const flag = flagName(tls, "allowedHostname");
    throw configError(
      ConfigErrorCode.Conflict,
      flag,
      `${flagName(tls, "allowedCn")} and ${flag} exclude each other, as in etcd (give one)`,
    );
  }
  const material = {
    cert: readPem(tls.certFile, cert),
    key: readPem(tls.keyFile, key),
    ca: tls.trustedCaFile === undefined ? undefined : readPem(tls.trustedCaFile, ca),
  };
  checkPem(material, tls);
  return {
    ...material,
    // etcd requires and verifies client certificates once a trusted CA is given, with or without
    // --client-cert-auth: a CA on its own never leaves the listener open to any TLS client.
    clientCertAuth: (tls.clientCertAuth ?? false) || tls.trustedCaFile !== undefined,
    crlFile: tls.crlFile ? checkedCrlFile(tls.crlFile, flagName(tls, "crlFile")) : undefined,
    ciphers: opensslCiphers(tls.cipherSuites ?? [], flagName(tls, "cipherSuites")),
    allowedCn,
    allowedHostname,
  };
}

/**
 * The check of a verified client certificate beyond its chain, as etcd makes it: none of the
 * chain's serial numbers is in the revocation list (--…-crl-file, read again when the file changes,
 * and a file that cannot be read refuses every certificate, as etcd's check does), and the subject
 * CN equals --…-cert-allowed-cn or the certificate is valid for --…-cert-allowed-hostname.
 * Undefined when none of these is set.
 */
export function clientCertificateCheck(
  material: TlsMaterial,
): ((cert: DetailedPeerCertificate) => boolean) | undefined {
  const { allowedCn, allowedHostname, crlFile } = material;
  if (allowedCn === undefined && allowedHostname === undefined && crlFile === undefined) return undefined;
  const revoked = crlFile === undefined ? undefined : new RevocationList(crlFile);
  return (cert) => {
    if (cert.subject === undefined) return false;
    if (revoked !== undefined && chainOf(cert).some((c) => revoked.lists(c.serialNumber))) return false;
    if (allowedCn !== undefined) return cert.subject.CN === allowedCn;
    if (allowedHostname !== undefined) return checkServerIdentity(allowedHostname, cert) === undefined;
    return true;
  };
}

/** A certificate and the issuers the peer sent or the CA bundle supplied, leaf first. */
function chainOf(cert: DetailedPeerCertificate): DetailedPeerCertificate[] {
  const chain: DetailedPeerCertificate[] = [];
  for (
    let c: DetailedPeerCertificate | undefined = cert;
    c !== undefined && !chain.includes(c);
    c = c.issuerCertificate
  )
    chain.push(c);
  return chain;
}

/** A serial number as one spelling: upper-case hex without leading zeros. */
const serialKey = (hex: string) => hex.toUpperCase().replace(/^0+(?=.)/, "");

/** A CRL file's revoked serial numbers, read again when the file's size or time changes. */
class RevocationList {
  private stamp = "";
  private serials: ReadonlySet<string> | null = null;

  constructor(private readonly path: string) {}

  /** Whether the list names this serial; false for every certificate while the file is unreadable. */
  lists(serialHex: string): boolean {
    const serials = this.current();
    return serials === null || serials.has(serialKey(serialHex));
  }

  private current(): ReadonlySet<string> | null {
    try {
      const { mtimeMs, size } = statSync(this.path);
      const stamp = `${mtimeMs}:${size}`;
      if (stamp !== this.stamp || this.serials === null) {
        this.serials = revokedSerials(readFileSync(this.path));
        this.stamp = stamp;
      }
      return this.serials;
    } catch {
      this.serials = null;
      return null;
    }
  }
}

/** The serial numbers an X.509 CRL (PEM or DER) lists as revoked. Throws on a malformed one. */
export function revokedSerials(file: Buffer): ReadonlySet<string> {
  const text = file.toString("latin1");
  const der = text.includes("-----BEGIN X509 CRL-----") ? forge.pem.decode(text)[0]!.body : text;
  const { asn1 } = forge;
  const list = asn1.fromDer(der);
  const tbs = (list.value as forge.asn1.Asn1[])[0]!;
  const items = tbs.value as forge.asn1.Asn1[];
  // TBSCertList: version (optional), signature, issuer, thisUpdate, nextUpdate (optional), the
  // revoked certificates (optional), extensions ([0]).
  let at = items[0]?.type === asn1.Type.INTEGER ? 4 : 3;
  const isTime = (a: forge.asn1.Asn1 | undefined) =>
    a?.tagClass === asn1.Class.UNIVERSAL &&
    (a.type === asn1.Type.UTCTIME || a.type === asn1.Type.GENERALIZEDTIME);
  if (isTime(items[at])) at++;
  const entries = items[at];
  const serials = new Set<string>();
  if (entries?.tagClass !== asn1.Class.UNIVERSAL || entries.type !== asn1.Type.SEQUENCE) return serials;
  for (const entry of entries.value as forge.asn1.Asn1[]) {
    const serial = (entry.value as forge.asn1.Asn1[])[0]!;
    serials.add(serialKey(forge.util.bytesToHex(serial.value as string)));
  }
  return serials;
}

/** A CRL file that can be read and parsed now (a config error naming the flag otherwise). */
function checkedCrlFile(path: string, flag: string): string {
  try {
    revokedSerials(readPem(path, flag));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw configError(
      ConfigErrorCode.InvalidValue,
      flag,
      `${flag}: ${path} is not an X.509 certificate revocation list (PEM or DER): ${(err as Error).message}`,
    );
  }
  return path;
}

/** grpc-js credentials for TLS, verifying client certificates when clientCertAuth is set. */
export function grpcServerCredentials(material: TlsMaterial): ServerCredentials {
  if (material.ciphers !== undefined || clientCertificateCheck(material))
    throw new Error(
      "revocation lists, cipher suites and allowed CN/hostname are enforced by the daemon kit's front only (not with PHOTON_GRPC_FRONT=0)",
    );
  return ServerCredentials.createSsl(
    material.ca ?? null,
    [{ cert_chain: material.cert, private_key: material.key }],
    material.clientCertAuth,
  );
}

/** node:https server options with the same meaning. */
export function httpsServerOptions(material: TlsMaterial): {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  ciphers?: string;
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  return {
    cert: material.cert,
    key: material.key,
    ...(material.ca ? { ca: material.ca } : {}),
    ...(material.ciphers ? { ciphers: material.ciphers } : {}),
    requestCert: material.clientCertAuth,
    rejectUnauthorized: material.clientCertAuth,
  };
}

/** The URLs of one kind of listener and the TLS settings given for them. */
export interface ListenerTls {
  readonly urls: readonly { readonly tls: boolean; readonly href: string }[];
  readonly tls: TlsFiles;
  /** The flag naming the URLs, e.g. "--listen-client-urls". */
  readonly what: string;
}

/**
 * Checks every listener's TLS settings before a daemon writes anything: the files of each https://
 * URL are read and parsed (a ConfigError names the flag), as etcd sets up its listeners before it
 * touches its data dir. An http:// URL given certificates or client-certificate checking does not
 * use them; etcd serves it as given and says so, and so does this (`warn`, once per URL and setting).
 */
export function checkListenerTls(
  groups: readonly ListenerTls[],
  warn: (fields: Record<string, unknown>, msg: string) => void,
): void {
  for (const { urls, tls, what } of groups) {
    for (const url of urls) {
      if (url.tls) {
        loadTlsMaterial(tls, `${what} (${url.href})`);
        continue;
      }
      if (tls.certFile !== undefined || tls.keyFile !== undefined)
        warn(
          { url: url.href, flag: what },
          `${url.href} is http:// while ${flagName(tls, "certFile")} or ${flagName(tls, "keyFile")} is set; this URL serves without TLS`,
        );
      if (tls.clientCertAuth || tls.trustedCaFile !== undefined)
        warn(
          { url: url.href, flag: what },
          `${url.href} is http:// while ${flagName(tls, "clientCertAuth")} or ${flagName(tls, "trustedCaFile")} is set; this URL does not check client certificates`,
        );
    }
  }
}
