// Proves the operator flows end to end through iamctl against a production-mode daemon over TLS: credentials, signing-key rotation over gRPC, mTLS identity token issue with run-time cutover, and no secret in the logs or the database files.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runIamctl } from "../src/iamctl.js";
import {
  type RunningIam,
  baseEnv,
  ed25519Pem,
  getJson,
  removeTempDirs,
  startIam,
  tempDir,
} from "./harness.js";

const adminToken = "operator-flows-admin-token-4b8e1f";
const masterKeyHex = "5c".repeat(32);
const pki = tempDir();
const dataDir = tempDir();
let iam: RunningIam;
let endpoint: string[];
const seenSecrets: string[] = [adminToken, masterKeyHex];

/** Runs iamctl in-process with JSON output; returns the parsed answer or throws with its error text. */
async function ctl(args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const saved = { ...process.env };
  Object.assign(process.env, { IAM_ADMIN_TOKEN: adminToken }, env);
  const out: string[] = [];
  const err: string[] = [];
  try {
    const code = await runIamctl(
      ["node", "iamctl", ...endpoint, "-w", "json", ...args],
      (t) => out.push(t),
      (t) => err.push(t),
    );
    if (code !== 0) throw new Error(err.join("\n"));
    return out.length > 0 && out[0]!.startsWith("{") ? JSON.parse(out[0]!) : {};
  } finally {
    process.env = saved;
  }
}

beforeAll(async () => {
  endpoint = [];
  await ctl(["pki", "init", "--dir", pki]);
  await ctl(["pki", "issue", "iam-server", "--dir", pki, "--ip", "127.0.0.1", "--dns", "localhost"]);
  const signingPem = ed25519Pem();
  seenSecrets.push(signingPem.split("\n")[1]!);
  iam = await startIam(
    [
      "--data-dir",
      dataDir,
      "--cert-file",
      join(pki, "iam-server.crt"),
      "--key-file",
      join(pki, "iam-server.key"),
    ],
    baseEnv({ IAM_ADMIN_TOKEN: adminToken, IAM_CRED_MASTER_KEY: masterKeyHex, IAM_SIGNING_KEY: signingPem }),
    "https://127.0.0.1:0",
  );
  endpoint = ["--endpoint", `https://${iam.grpcAddress}`, "--cacert", join(pki, "ca.crt")];
  await ctl(["principal", "create", "svc-a"]);
});

afterAll(async () => {
  await iam?.stop();
  removeTempDirs();
});

describe("operator flows through iamctl", () => {
  it("creates a credential, reads its secret back and issues a token with it", async () => {
    const created = await ctl(["credential", "create", "svc-a"]);
    const secret = created.secret as string;
    const id = (created.credential as { accessKeyId: string }).accessKeyId;
    seenSecrets.push(secret);
    expect((await ctl(["credential", "get-secret", id])).secret).toBe(secret);
    const token = await ctl(["token", "issue", "--access-key-id", id], { IAM_SECRET_ACCESS_KEY: secret });
    expect(token.principalId).toBe("svc-a");
    seenSecrets.push(token.token as string);
    await expect(
      ctl(["token", "issue", "--access-key-id", id], { IAM_SECRET_ACCESS_KEY: "nope" }),
    ).rejects.toThrow(/access key or secret is not valid/);
  });

  it("rotates the signing key over gRPC and rejects the old population after retirement", async () => {
    const oldKid = ((await ctl(["key", "list"])).keys as { kid: string; state: string }[])[0]!.kid;
    const oldToken = (await ctl(["token", "issue", "--subject", "svc-a"])).token as string;
    const added = await ctl(["key", "add", "--alg", "ES256"]);
    const jwks = async () =>
      (await getJson<{ keys: { kid: string }[] }>(`${iam.httpUrl}/.well-known/jwks.json`)).keys.map(
        (k) => k.kid,
      );
    expect(await jwks()).toContain(added.kid);
    // A kid is base64url and may begin with "-": after "--" it is never taken for an option.
    await ctl(["key", "activate", "--", added.kid as string]);
    const newToken = await ctl(["token", "issue", "--subject", "svc-a"]);
    expect(newToken.kid).toBe(added.kid);
    expect((await ctl(["token", "validate", oldToken])).kid).toBe(oldKid);
    await expect(ctl(["key", "retire", "--", oldKid])).rejects.toThrow(/may still have unexpired tokens/);
    await ctl(["key", "revoke-population", "--", oldKid]);
    await ctl(["key", "retire", "--", oldKid]);
    await ctl(["key", "purge", "--", oldKid]);
    await expect(ctl(["token", "validate", oldToken])).rejects.toThrow(/TOKEN_KID_RETIRED/);
    expect(await jwks()).toEqual([added.kid]);
    expect((await ctl(["token", "validate", newToken.token as string])).principalId).toBe("svc-a");
  });

  it("tells how to pass an ID that begins with a dash, and takes it after --", async () => {
    const kid = "-PMU68XpcBD6FkzIWuQee93aCO9DrJEkG5KIAdpEtj0";
    await expect(ctl(["key", "retire", kid])).rejects.toThrow(
      `unknown option '${kid}'\niamctl: an ID that begins with "-" must come after "--", for example: iamctl key retire -- ${kid}`,
    );
    await expect(ctl(["key", "retire", "--", kid])).rejects.toThrow(`signing key "${kid}" does not exist`);
  });

  it("issues tokens to an mTLS identity and cuts over at run time", async () => {
    const uri = "spiffe://photon.local/ns/core/sa/svc-a";
    await ctl(["pki", "issue", "svc-a-client", "--dir", pki, "--uri", uri]);
    const client = ["--cert", join(pki, "svc-a-client.crt"), "--key", join(pki, "svc-a-client.key")];
    const issue = () => ctl([...client, "token", "issue", "--client-certificate"]);
    await expect(issue()).rejects.toThrow(/CERT_UNTRUSTED/);
    await ctl(["trust-root", "add", "dev", join(pki, "ca.crt")]);
    await expect(issue()).rejects.toThrow(/CERT_IDENTITY_UNMAPPED/);
    await ctl(["identity", "map", uri, "svc-a"]);
    expect((await issue()).principalId).toBe("svc-a");
    // Cutover: removing the mapping, then the root, refuses the certificate with no restart.
    await ctl(["identity", "unmap", uri]);
    await expect(issue()).rejects.toThrow(/CERT_IDENTITY_UNMAPPED/);
    await ctl(["identity", "map", uri, "svc-a"]);
    await ctl(["trust-root", "remove", "dev"]);
    await expect(issue()).rejects.toThrow(/CERT_UNTRUSTED/);
  });

  it("keeps every secret out of the logs and the database files", async () => {
    expect(await iam.stop()).toBe(0);
    const logs = iam.stdout() + iam.stderr();
    const files = readdirSync(dataDir).map((f) => readFileSync(join(dataDir, f)).toString("latin1"));
    expect(files.length).toBeGreaterThan(0);
    for (const secret of seenSecrets) {
      expect(logs).not.toContain(secret);
      for (const bytes of files) expect(bytes).not.toContain(secret);
    }
  });
});
