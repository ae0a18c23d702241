// Proves the dev cluster's generated secrets are readable only by their owner and stay the same across restarts.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { ensureDevSecrets, iamSecretEnv } from "../src/secrets.js";

const dir = mkdtempSync(join(tmpdir(), "test-cluster-secrets-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("writes 0600 secret files in a 0700 directory and keeps them on the next start", () => {
  const secrets = ensureDevSecrets(join(dir, "secrets"));
  expect(statSync(secrets.dir).mode & 0o777).toBe(0o700);
  for (const f of [secrets.adminTokenFile, secrets.masterKeyFile, secrets.signingKeyFile]) {
    expect(statSync(f).mode & 0o777).toBe(0o600);
  }
  const token = readFileSync(secrets.adminTokenFile, "utf8");
  ensureDevSecrets(join(dir, "secrets"));
  expect(readFileSync(secrets.adminTokenFile, "utf8")).toBe(token);
  const env = iamSecretEnv(secrets);
  expect(env.IAM_CRED_MASTER_KEY).toMatch(/^[0-9a-f]{64}$/);
  expect(env.IAM_SIGNING_KEY).toBe(secrets.signingKeyFile);
});
