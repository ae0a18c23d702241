// Option groups every daemon repeats: logging and etcd-style TLS flags (client and peer).

import { LOG_LEVELS } from "../logging.js";
import type { TlsFiles } from "../grpc/tls.js";
import { defineOptions } from "./option-types.js";

/** `--log-level` and `--log-file`; pass `logLevelOption: "logLevel", logFileOption: "logFile"` to runDaemon. */
export function logOptions(envPrefix?: string) {
  return defineOptions({
    logLevel: {
      flag: "log-level",
      env: envPrefix ? `${envPrefix}LOG_LEVEL` : undefined,
      type: "enum",
      values: LOG_LEVELS,
      default: "info",
      description: "log level",
    },
    logFile: {
      flag: "log-file",
      env: envPrefix ? `${envPrefix}LOG_FILE` : undefined,
      type: "path",
      description: "write JSON logs to this file instead of stdout",
    },
  });
}

/** etcd's client TLS flags: `--cert-file --key-file --trusted-ca-file --client-cert-auth`. */
export function clientTlsOptions(envPrefix?: string) {
  const env = (name: string) => (envPrefix ? `${envPrefix}${name}` : undefined);
  return defineOptions({
    certFile: {
      flag: "cert-file",
      env: env("CERT_FILE"),
      type: "path",
      description: "TLS certificate (PEM) for https:// client URLs",
    },
    keyFile: {
      flag: "key-file",
      env: env("KEY_FILE"),
      type: "path",
      description: "TLS private key (PEM) for https:// client URLs",
    },
    trustedCaFile: {
      flag: "trusted-ca-file",
      env: env("TRUSTED_CA_FILE"),
      type: "path",
      description: "CA bundle (PEM) client certificates must chain to; giving it requires them, as etcd does",
    },
    clientCertAuth: {
      flag: "client-cert-auth",
      env: env("CLIENT_CERT_AUTH"),
      type: "bool",
      description: "require a client certificate signed by --trusted-ca-file",
    },
  });
}

/** etcd's peer TLS flags: `--peer-cert-file --peer-key-file --peer-trusted-ca-file --peer-client-cert-auth`. */
export function peerTlsOptions(envPrefix?: string) {
  const env = (name: string) => (envPrefix ? `${envPrefix}${name}` : undefined);
  return defineOptions({
    peerCertFile: {
      flag: "peer-cert-file",
      env: env("PEER_CERT_FILE"),
      type: "path",
      description: "TLS certificate (PEM) for https:// peer URLs",
    },
    peerKeyFile: {
      flag: "peer-key-file",
      env: env("PEER_KEY_FILE"),
      type: "path",
      description: "TLS private key (PEM) for https:// peer URLs",
    },
    peerTrustedCaFile: {
      flag: "peer-trusted-ca-file",
      env: env("PEER_TRUSTED_CA_FILE"),
      type: "path",
      description: "CA bundle (PEM) peer certificates must chain to; giving it requires them, as etcd does",
    },
    peerClientCertAuth: {
      flag: "peer-client-cert-auth",
      env: env("PEER_CLIENT_CERT_AUTH"),
      type: "bool",
      description: "require a peer certificate signed by --peer-trusted-ca-file",
    },
  });
}

/** TlsFiles from the client TLS options of a parsed config. */
export function clientTlsFiles(config: {
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly trustedCaFile: string | undefined;
  readonly clientCertAuth: boolean;
}): TlsFiles {
  return {
    certFile: config.certFile,
    keyFile: config.keyFile,
    trustedCaFile: config.trustedCaFile,
    clientCertAuth: config.clientCertAuth,
  };
}

/** TlsFiles from the peer TLS options of a parsed config, with the peer flag names in messages. */
export function peerTlsFiles(config: {
  readonly peerCertFile: string | undefined;
  readonly peerKeyFile: string | undefined;
  readonly peerTrustedCaFile: string | undefined;
  readonly peerClientCertAuth: boolean;
}): TlsFiles {
  return {
    certFile: config.peerCertFile,
    keyFile: config.peerKeyFile,
    trustedCaFile: config.peerTrustedCaFile,
    clientCertAuth: config.peerClientCertAuth,
    flagNames: {
      certFile: "--peer-cert-file",
      keyFile: "--peer-key-file",
      trustedCaFile: "--peer-trusted-ca-file",
      clientCertAuth: "--peer-client-cert-auth",
    },
  };
}
