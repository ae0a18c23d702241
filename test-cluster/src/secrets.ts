// Development secrets for the dev cluster's iam: generated once, kept in files readable only by the
// owner (directory 0700, files 0600), and handed to the daemon through its environment or as a
// file path, never on a command line (which `ps` would show).
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface DevSecrets {
  readonly dir: string;
  readonly adminTokenFile: string;
  readonly masterKeyFile: string;
  readonly signingKeyFile: string;
}

function writeSecret(path: string, make: () => string): void {
  if (!existsSync(path)) writeFileSync(path, make(), { mode: 0o600, flag: "wx" });
  // A file copied in by hand may have wider permissions: narrow them rather than trust them.
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
}

/** Creates any missing secret under `dir` and returns their paths. Existing secrets are kept. */
export function ensureDevSecrets(dir: string): DevSecrets {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const secrets = {
    dir,
    adminTokenFile: join(dir, "iam-admin-token"),
    masterKeyFile: join(dir, "iam-cred-master-key"),
    signingKeyFile: join(dir, "iam-signing-key.pem"),
  };
  writeSecret(secrets.adminTokenFile, () => randomBytes(32).toString("base64url"));
  writeSecret(secrets.masterKeyFile, () => randomBytes(32).toString("hex"));
  writeSecret(secrets.signingKeyFile, () =>
    generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  );
  return secrets;
}

/** The environment iam reads its secrets from (values from the files; the signing key as a path). */
export function iamSecretEnv(secrets: DevSecrets): Record<string, string> {
  return {
    IAM_ADMIN_TOKEN: readFileSync(secrets.adminTokenFile, "utf8").trim(),
    IAM_CRED_MASTER_KEY: readFileSync(secrets.masterKeyFile, "utf8").trim(),
    IAM_SIGNING_KEY: secrets.signingKeyFile,
  };
}
