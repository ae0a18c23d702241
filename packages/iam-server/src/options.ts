import { clientTlsOptions, defineOptions, logOptions } from "@photoncloud/daemon";

/**
 * Every setting of the iam daemon: flag (etcd/chainfire style), environment variable and TOML key.
 * Secrets have no flag (a flag would show in `ps`) and are never printed.
 */
export const iamOptions = defineOptions({
  dataDir: {
    flag: "data-dir",
    env: "IAM_DATA_DIR",
    type: "path",
    default: "iam-data",
    description: "directory of the iam SQLite database",
  },
  listenClientUrls: {
    flag: "listen-client-urls",
    env: "IAM_LISTEN_CLIENT_URLS",
    type: "url-list",
    default: "http://127.0.0.1:8543",
    description: "gRPC listen URLs (https:// for TLS and mTLS identities)",
  },
  listenHttpUrls: {
    flag: "listen-http-urls",
    env: "IAM_LISTEN_HTTP_URLS",
    type: "url-list",
    default: "http://127.0.0.1:8544",
    description: "HTTP listen URLs: /.well-known/jwks.json, /health, /metrics, /version",
  },
  dev: {
    flag: "dev",
    env: "IAM_DEV",
    type: "bool",
    default: false,
    description:
      "development mode: allows unauthenticated admin and random signing keys (never in production)",
  },
  adminToken: {
    env: "IAM_ADMIN_TOKEN",
    toml: "admin.token",
    type: "string",
    secret: true,
    description: "admin bearer token (or PHOTON_IAM_ADMIN_TOKEN)",
  },
  photonAdminToken: {
    env: "PHOTON_IAM_ADMIN_TOKEN",
    toml: "admin.photon_token",
    type: "string",
    secret: true,
    description: "admin bearer token (alternative name of IAM_ADMIN_TOKEN)",
  },
  allowUnauthenticatedAdmin: {
    env: "IAM_ALLOW_UNAUTHENTICATED_ADMIN",
    toml: "admin.allow_unauthenticated",
    type: "bool",
    default: false,
    description: "treat callers without a token as admin (only with --dev)",
  },
  signingKey: {
    env: "IAM_SIGNING_KEY",
    toml: "authn.internal_token.signing_key",
    type: "string",
    secret: true,
    description: "token signing key: PEM Ed25519 or P-256 private key, inline or a file path",
  },
  credMasterKey: {
    env: "IAM_CRED_MASTER_KEY",
    toml: "authn.credentials.master_key",
    type: "string",
    secret: true,
    description: "32-byte credential master key: 64 hex characters or base64",
  },
  issuer: {
    env: "IAM_TOKEN_ISSUER",
    toml: "authn.internal_token.issuer",
    type: "string",
    default: "photon-iam",
    description: "iss of issued tokens",
  },
  audience: {
    env: "IAM_TOKEN_AUDIENCE",
    toml: "authn.internal_token.audience",
    type: "string",
    default: "photon",
    description: "default aud of issued tokens (the one validation demands)",
  },
  tokenTtlSeconds: {
    env: "IAM_TOKEN_TTL_SECONDS",
    toml: "authn.internal_token.ttl_seconds",
    type: "int",
    min: 1,
    default: 900,
    description: "default token lifetime",
  },
  tokenMaxTtlSeconds: {
    env: "IAM_TOKEN_MAX_TTL_SECONDS",
    toml: "authn.internal_token.max_ttl_seconds",
    type: "int",
    min: 1,
    default: 3600,
    description: "longest token lifetime; bounds when a rotated-out key may be retired",
  },
  clockToleranceSeconds: {
    env: "IAM_CLOCK_TOLERANCE_SECONDS",
    toml: "authn.internal_token.clock_tolerance_seconds",
    type: "int",
    min: 0,
    max: 300,
    default: 10,
    description: "clock skew tolerated on exp and nbf",
  },
  ...logOptions("IAM_"),
  ...clientTlsOptions("IAM_"),
});
