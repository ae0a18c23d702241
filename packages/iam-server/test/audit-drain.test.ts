// Proves that a SIGTERM drains the audit log: every token the daemon answered, including those answered while it was shutting down, has its audit record in the database after the daemon stopped.
import { join } from "node:path";
import { Metadata, credentials } from "@grpc/grpc-js";
import { IamStore, iamv1 } from "@photoncloud/iam-api";
import { afterAll, describe, expect, it } from "vitest";
import { baseEnv, ed25519Pem, removeTempDirs, startIam, tempDir } from "./harness.js";

const adminToken = "audit-drain-admin-token-7d41c9";

function unary<Req, Res>(client: object, method: string, md: Metadata): (req: Req) => Promise<Res> {
  type Call = (req: Req, md: Metadata, cb: (err: Error | null, res: Res) => void) => void;
  const fn = (client as Record<string, Call>)[method]!.bind(client);
  return (req) =>
    new Promise((resolve, reject) => fn(req, md, (err, res) => (err ? reject(err) : resolve(res))));
}

afterAll(() => removeTempDirs());

describe("audit log at shutdown", () => {
  it("has the audit record of every issued token after SIGTERM", async () => {
    const dataDir = tempDir();
    const iam = await startIam(
      ["--data-dir", dataDir],
      baseEnv({
        IAM_ADMIN_TOKEN: adminToken,
        IAM_CRED_MASTER_KEY: "a1".repeat(32),
        IAM_SIGNING_KEY: ed25519Pem(),
      }),
    );
    const md = new Metadata();
    md.set("authorization", `Bearer ${adminToken}`);
    const principals = new iamv1.PrincipalsClient(iam.grpcAddress, credentials.createInsecure());
    const tokens = new iamv1.TokensClient(iam.grpcAddress, credentials.createInsecure());
    const jtis: string[] = [];
    let stopped: Promise<number | null> | undefined;
    try {
      await unary(principals, "createPrincipal", md)({ id: "svc-audit", kind: "service", displayName: "" });
      const issue = unary<object, { jti: string }>(tokens, "issueToken", md);
      // 32 callers issue tokens without pause; SIGTERM arrives while calls are in flight, so the last
      // tokens are answered during the shutdown, their records not yet committed. Every answered token
      // counts; the callers stop at their first refused call (the server is going away).
      const callers = Array.from({ length: 32 }, async () => {
        for (;;) {
          try {
            jtis.push((await issue({ adminSubject: "svc-audit", ttlSeconds: 0, audience: "" })).jti);
          } catch {
            return;
          }
          if (jtis.length >= 2000 && stopped === undefined) stopped = iam.stop();
        }
      });
      await Promise.all(callers);
    } finally {
      principals.close();
      tokens.close();
    }
    expect(stopped).toBeDefined();
    expect(await stopped).toBe(0);

    const store = new IamStore(join(dataDir, "iam.db"));
    const audited = new Set(
      store
        .audit(10_000)
        .filter((e) => e.action === "token.issue" && e.outcome === "ok")
        .map((e) => (JSON.parse(e.detail) as { jti: string }).jti),
    );
    store.close();
    expect(jtis.length).toBeGreaterThanOrEqual(2000);
    expect(jtis.filter((jti) => !audited.has(jti))).toEqual([]);
  });
});
