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

/**
 * etcd's further TLS flags, for daemons whose listeners the kit's front serves (they are enforced
 * there): `--cipher-suites` (client and peer listeners), `--client-crl-file`,
 * `--client-cert-allowed-hostname`, `--peer-crl-file`, `--peer-cert-allowed-cn`,
 * `--peer-cert-allowed-hostname`.
 */
export function tlsExtraOptions(envPrefix?: string) {
  const env = (name: string) => (envPrefix ? `${envPrefix}${name}` : undefined);
  return defineOptions({
    cipherSuites: {
      flag: "cipher-suites",
      env: env("CIPHER_SUITES"),
      type: "string-list",
      description:
        "TLS 1.2 cipher suites the client and peer listeners allow, by etcd's names (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, …; default: Node's); TLS 1.3 keeps its own suites, as in etcd",
    },
    clientCrlFile: {
      flag: "client-crl-file",
      env: env("CLIENT_CRL_FILE"),
      type: "string",
      description:
        "certificate revocation lists (PEM) of the client CA: a client certificate they list is refused (needs --trusted-ca-file)",
    },
    clientCertAllowedHostname: {
      flag: "client-cert-allowed-hostname",
      env: env("CLIENT_CERT_ALLOWED_HOSTNAME"),
      type: "string",
      description: "accept only client certificates valid for this hostname (needs --trusted-ca-file)",
    },
    peerCrlFile: {
      flag: "peer-crl-file",
      env: env("PEER_CRL_FILE"),
      type: "string",
      description:
        "certificate revocation lists (PEM) of the peer CA: a member whose certificate they list is refused (needs --peer-trusted-ca-file)",
    },
    peerCertAllowedCn: {
      flag: "peer-cert-allowed-cn",
      env: env("PEER_CERT_ALLOWED_CN"),
      type: "string",
      description: "accept only peer certificates with this subject CN (needs --peer-trusted-ca-file)",
    },
    peerCertAllowedHostname: {
      flag: "peer-cert-allowed-hostname",
      env: env("PEER_CERT_ALLOWED_HOSTNAME"),
      type: "string",
      description: "accept only peer certificates valid for this hostname (needs --peer-trusted-ca-file)",
    },
  });
}

/** TlsFiles from the client TLS options of a parsed config. */
export function clientTlsFiles(config: {
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly trustedCaFile: string | undefined;
  readonly clientCertAuth: boolean;
  readonly cipherSuites?: readonly string[] | undefined;
  readonly clientCrlFile?: string | undefined;
  readonly clientCertAllowedHostname?: string | undefined;
}): TlsFiles {
  return {
    certFile: config.certFile,
    keyFile: config.keyFile,
    trustedCaFile: config.trustedCaFile,
    clientCertAuth: config.clientCertAuth,
    crlFile: config.clientCrlFile,
    cipherSuites: config.cipherSuites,
    allowedHostname: config.clientCertAllowedHostname,
  };
}

/** TlsFiles from the peer TLS options of a parsed config, with the peer flag names in messages. */
export function peerTlsFiles(config: {
  readonly peerCertFile: string | undefined;
  readonly peerKeyFile: string | undefined;
  readonly peerTrustedCaFile: string | undefined;
  readonly peerClientCertAuth: boolean;
  readonly cipherSuites?: readonly string[] | undefined;
  readonly peerCrlFile?: string | undefined;
  readonly peerCertAllowedCn?: string | undefined;
  readonly peerCertAllowedHostname?: string | undefined;
}): TlsFiles {
  return {
    certFile: config.peerCertFile,
    keyFile: config.peerKeyFile,
    trustedCaFile: config.peerTrustedCaFile,
    clientCertAuth: config.peerClientCertAuth,
    crlFile: config.peerCrlFile,
    cipherSuites: config.cipherSuites,
    allowedCn: config.peerCertAllowedCn,
    allowedHostname: config.peerCertAllowedHostname,
    flagNames: {
      certFile: "--peer-cert-file",
      keyFile: "--peer-key-file",
      trustedCaFile: "--peer-trusted-ca-file",
      clientCertAuth: "--peer-client-cert-auth",
      crlFile: "--peer-crl-file",
      allowedCn: "--peer-cert-allowed-cn",
      allowedHostname: "--peer-cert-allowed-hostname",
    },
  };
}
