// TLS inputs in etcd's shape (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth) turned
// into grpc-js server credentials and node:https options.

import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import { ConfigErrorCode, configError } from "../config/config-error.js";

export interface TlsFiles {
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** CA bundle that client certificates must chain to. Giving it requires them, as etcd does. */
  readonly trustedCaFile?: string | undefined;
  /** Require and verify a client certificate (mTLS). Needs trustedCaFile, which implies it. */
  readonly clientCertAuth?: boolean | undefined;
  /** Flag names used in messages, e.g. `{ certFile: "--peer-cert-file" }`; etcd client names by default. */
  readonly flagNames?: Partial<Record<"certFile" | "keyFile" | "trustedCaFile" | "clientCertAuth", string>>;
}

/** PEM material read from TlsFiles. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  readonly clientCertAuth: boolean;
}

function flagName(tls: TlsFiles, field: "certFile" | "keyFile" | "trustedCaFile" | "clientCertAuth"): string {
  const defaults = {
    certFile: "--cert-file",
    keyFile: "--key-file",
    trustedCaFile: "--trusted-ca-file",
    clientCertAuth: "--client-cert-auth",
  };
  return tls.flagNames?.[field] ?? defaults[field];
}

function readPem(path: string, flag: string): Buffer {
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
  return {
    cert: readPem(tls.certFile, cert),
    key: readPem(tls.keyFile, key),
    ca: tls.trustedCaFile === undefined ? undefined : readPem(tls.trustedCaFile, ca),
    // etcd requires and verifies client certificates once a trusted CA is given, with or without
    // --client-cert-auth: a CA on its own never leaves the listener open to any TLS client.
    clientCertAuth: (tls.clientCertAuth ?? false) || tls.trustedCaFile !== undefined,
  };
}

/** grpc-js credentials for TLS, verifying client certificates when clientCertAuth is set. */
export function grpcServerCredentials(material: TlsMaterial): ServerCredentials {
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
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  return {
    cert: material.cert,
    key: material.key,
    ...(material.ca ? { ca: material.ca } : {}),
    requestCert: material.clientCertAuth,
    rejectUnauthorized: material.clientCertAuth,
  };
}
