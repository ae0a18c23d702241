import { existsSync, readFileSync } from "node:fs";
import { ConfigError, ConfigErrorCode, type ConfigIssue } from "@photoncloud/daemon";
import { decodeMasterKey } from "@photoncloud/iam-api";

/** The settings bootstrap hardening judges (a subset of the parsed config). */
export interface BootstrapInput {
  dev: boolean;
  adminToken: string | undefined;
  photonAdminToken: string | undefined;
  allowUnauthenticatedAdmin: boolean;
  signingKey: string | undefined;
  credMasterKey: string | undefined;
}

/** What the daemon runs with once bootstrap checks pass. */
export interface BootstrapResult {
  adminToken: string | null;
  allowUnauthenticatedAdmin: boolean;
  signingKeyPem: string | null;
  generateSigningKey: boolean;
  masterKey: Buffer | null;
  /** Dev-mode relaxations in force, for the loud warning. */
  devRelaxations: string[];
}

const fixAdminToken =
  "IAM_ADMIN_TOKEN (or PHOTON_IAM_ADMIN_TOKEN) is not set: export a long random admin token, e.g. IAM_ADMIN_TOKEN=$(openssl rand -hex 32)";
const fixSigningKey =
  "authn.internal_token.signing_key is not set: put an Ed25519 or P-256 PEM private key (inline, or a path to the file) under [authn.internal_token] signing_key in the config file, or set IAM_SIGNING_KEY; generate one with `openssl genpkey -algorithm ed25519`";
const fixMasterKey =
  "IAM_CRED_MASTER_KEY is not set: credential issuance stays refused until it is; set it to 32 bytes as 64 hex characters or base64, e.g. IAM_CRED_MASTER_KEY=$(openssl rand -hex 32)";
const fixUnauthenticated =
  "admin.allow_unauthenticated=true / IAM_ALLOW_UNAUTHENTICATED_ADMIN=true is allowed only in development: remove it, or run with --dev on a lab machine";

/** Reads `authn.internal_token.signing_key`: inline PEM, or a path to a PEM file. */
function resolveSigningKey(value: string, issues: ConfigIssue[]): string | null {
  if (value.includes("-----BEGIN")) return value;
  if (!existsSync(value)) {
    issues.push({
      code: ConfigErrorCode.FileUnreadable,
      key: "authn.internal_token.signing_key",
      message: `authn.internal_token.signing_key: ${value} is neither an inline PEM key nor an existing file; give the PEM text or its path`,
    });
    return null;
  }
  return readFileSync(value, "utf8");
}

/**
 * Production refuses to start unless the admin token, the signing key and a 32-byte credential master
 * key are all set, and refuses unauthenticated admin outright; the error lists every missing item with
 * its fix. Dev mode allows each gap and reports it for a loud warning.
 */
export function checkBootstrap(input: BootstrapInput): BootstrapResult {
  const issues: ConfigIssue[] = [];
  const relaxed: string[] = [];
  const missing = (key: string, message: string) => {
    if (input.dev) relaxed.push(message);
    else issues.push({ code: ConfigErrorCode.MissingRequired, key, message });
  };
  const adminToken = input.adminToken || input.photonAdminToken || null;
  if (adminToken === null) missing("IAM_ADMIN_TOKEN", fixAdminToken);
  const signingKeyPem = input.signingKey ? resolveSigningKey(input.signingKey, issues) : null;
  if (!input.signingKey) missing("authn.internal_token.signing_key", fixSigningKey);
  let masterKey: Buffer | null = null;
  if (input.credMasterKey) {
    const decoded = decodeMasterKey(input.credMasterKey);
    if ("key" in decoded) masterKey = decoded.key;
    else
      issues.push({ code: ConfigErrorCode.InvalidValue, key: "IAM_CRED_MASTER_KEY", message: decoded.error });
  } else missing("IAM_CRED_MASTER_KEY", fixMasterKey);
  if (input.allowUnauthenticatedAdmin) {
    if (input.dev) relaxed.push("admin calls without a token are accepted (admin.allow_unauthenticated)");
    else
      issues.push({
        code: ConfigErrorCode.Conflict,
        key: "admin.allow_unauthenticated",
        message: fixUnauthenticated,
      });
  }
  if (issues.length > 0) {
    const header: ConfigIssue = {
      code: issues[0]!.code,
      key: "bootstrap",
      message: `refusing to start in production mode (${issues.length} problem${issues.length > 1 ? "s" : ""}):`,
    };
    throw new ConfigError([header, ...issues.map((i) => ({ ...i, message: `  - ${i.message}` }))]);
  }
  return {
    adminToken,
    allowUnauthenticatedAdmin: input.allowUnauthenticatedAdmin && input.dev,
    signingKeyPem,
    generateSigningKey: input.dev && signingKeyPem === null,
    masterKey,
    devRelaxations: relaxed,
  };
}
