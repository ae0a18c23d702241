// Proves the seed's production bootstrap contract: each missing or unsafe item is refused with its message, a complete production config starts, and dev mode starts with a loud warning.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runIamctl } from "../src/iamctl.js";
import {
  getJson,
  type RunningIam,
  baseEnv,
  ed25519Pem,
  removeTempDirs,
  runToExit,
  startIam,
  tempDir,
} from "./harness.js";

const adminToken = "bootstrap-admin-token-6f1c2a9e8d7b";
const masterKeyHex = "a1".repeat(32);
const adminMsg = "IAM_ADMIN_TOKEN (or PHOTON_IAM_ADMIN_TOKEN) is not set";
const signingMsg = "authn.internal_token.signing_key is not set";
const masterMsg = "IAM_CRED_MASTER_KEY is not set";
const unauthMsg =
  "admin.allow_unauthenticated=true / IAM_ALLOW_UNAUTHENTICATED_ADMIN=true is allowed only in development";

const full = () =>
  baseEnv({ IAM_ADMIN_TOKEN: adminToken, IAM_SIGNING_KEY: ed25519Pem(), IAM_CRED_MASTER_KEY: masterKeyHex });
const without = (name: string) => {
  const env = full();
  delete env[name];
  return env;
};
let running: RunningIam | undefined;

afterAll(() => removeTempDirs());

afterEach(async () => {
  await running?.stop();
  running = undefined;
});

describe("bootstrap hardening", () => {
  it("refuses production start with nothing set, listing every missing item and its fix", async () => {
    const r = await runToExit(["--data-dir", tempDir()], baseEnv());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("refusing to start in production mode (3 problems)");
    for (const m of [adminMsg, signingMsg, masterMsg]) expect(r.stderr).toContain(m);
    expect(r.stderr).toContain("64 hex characters or base64");
  });

  it.each([
    ["IAM_ADMIN_TOKEN", adminMsg],
    ["IAM_SIGNING_KEY", signingMsg],
    ["IAM_CRED_MASTER_KEY", masterMsg],
  ])("refuses production start when only %s is missing", async (name, message) => {
    const r = await runToExit(["--data-dir", tempDir()], without(name));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("(1 problem)");
    expect(r.stderr).toContain(message);
  });

  it("refuses a master key that is not 32 bytes, and unauthenticated admin outside dev mode", async () => {
    const short = await runToExit(["--data-dir", tempDir()], { ...full(), IAM_CRED_MASTER_KEY: "abcd" });
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/IAM_CRED_MASTER_KEY decodes to 3 bytes.*exactly 32 bytes/);
    const viaEnv = await runToExit(["--data-dir", tempDir()], {
      ...full(),
      IAM_ALLOW_UNAUTHENTICATED_ADMIN: "true",
    });
    expect(viaEnv.code).toBe(2);
    expect(viaEnv.stderr).toContain(unauthMsg);
    const dir = tempDir();
    writeFileSync(join(dir, "iam.toml"), "[admin]\nallow_unauthenticated = true\n");
    const viaToml = await runToExit(["--data-dir", dir, "--config-file", join(dir, "iam.toml")], full());
    expect(viaToml.code).toBe(2);
    expect(viaToml.stderr).toContain(unauthMsg);
  });

  it("starts in production with PHOTON_IAM_ADMIN_TOKEN, a base64 master key and a signing key file in TOML", async () => {
    const dir = tempDir();
    const pem = ed25519Pem();
    writeFileSync(join(dir, "signing.pem"), pem, { mode: 0o600 });
    writeFileSync(
      join(dir, "iam.toml"),
      `[authn.internal_token]\nsigning_key = "${join(dir, "signing.pem")}"\n`,
    );
    const masterB64 = Buffer.alloc(32, 9).toString("base64");
    running = await startIam(
      ["--data-dir", dir, "--config-file", join(dir, "iam.toml")],
      baseEnv({ PHOTON_IAM_ADMIN_TOKEN: adminToken, IAM_CRED_MASTER_KEY: masterB64 }),
    );
    const jwks = await getJson<{ keys: { alg: string }[] }>(`${running.httpUrl}/.well-known/jwks.json`);
    expect(jwks.keys.map((k) => k.alg)).toEqual(["EdDSA"]);
    expect(running.stderr()).not.toContain("DEVELOPMENT MODE");
    // Secrets reach neither log stream.
    const logs = running.stdout() + running.stderr();
    for (const secret of [adminToken, masterB64, pem.split("\n")[1]!]) expect(logs).not.toContain(secret);
    expect(await running.stop()).toBe(0);
  });

  it("starts in dev mode with a loud warning, a random signing key and unauthenticated admin", async () => {
    running = await startIam(
      ["--dev", "--data-dir", tempDir()],
      baseEnv({ IAM_ALLOW_UNAUTHENTICATED_ADMIN: "true" }),
    );
    expect(running.stderr()).toContain("DEVELOPMENT MODE (--dev)");
    expect(running.stdout()).toContain('"devMode":true');
    const out: string[] = [];
    const endpoint = ["--endpoint", running.grpcAddress, "-w", "json"];
    expect(
      await runIamctl(["node", "iamctl", ...endpoint, "principal", "create", "dev-user"], (t) => out.push(t)),
    ).toBe(0);
    expect(await runIamctl(["node", "iamctl", ...endpoint, "key", "list"], (t) => out.push(t))).toBe(0);
    const keys = JSON.parse(out[1]!) as { keys: { state: string }[] };
    expect(keys.keys.map((k) => k.state)).toEqual(["active"]);
    // Credential issuance is refused until IAM_CRED_MASTER_KEY is set.
    const errs: string[] = [];
    expect(
      await runIamctl(
        ["node", "iamctl", ...endpoint, "credential", "create", "dev-user"],
        () => {},
        (t) => errs.push(t),
      ),
    ).toBe(1);
    expect(errs.join("")).toContain("credential issuance is disabled");
  });
});
