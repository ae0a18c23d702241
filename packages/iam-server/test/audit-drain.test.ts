// Proves that an answered request has a durable audit record: after a SIGTERM (drain) and after a SIGKILL (no drain) every token a client received has its audit record in the database, and a request whose record cannot be written is refused (UNAVAILABLE) instead of answered.
import { join } from "node:path";
import { Metadata, credentials, status } from "@grpc/grpc-js";
import { IamStore, iamv1 } from "@photoncloud/iam-api";
import { afterAll, describe, expect, it } from "vitest";
import { type RunningIam, baseEnv, ed25519Pem, removeTempDirs, startIam, tempDir } from "./harness.js";

const adminToken = "audit-drain-admin-token-7d41c9";

function unary<Req, Res>(client: object, method: string, md: Metadata): (req: Req) => Promise<Res> {
  type Call = (req: Req, md: Metadata, cb: (err: Error | null, res: Res) => void) => void;
  const fn = (client as Record<string, Call>)[method]!.bind(client);
  return (req) =>
    new Promise((resolve, reject) => fn(req, md, (err, res) => (err ? reject(err) : resolve(res))));
}

afterAll(() => removeTempDirs());

/** A production-mode daemon on a fresh data directory, admin metadata and its two clients. */
async function startWithClients() {
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
  return { dataDir, iam, md, principals, tokens };
}

describe("audit log at shutdown", () => {
  it("has the audit record of every issued token after SIGTERM", async () => {
    const { dataDir, iam, md, principals, tokens } = await startWithClients();
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

    const audited = auditedJtis(join(dataDir, "iam.db"));
    expect(jtis.length).toBeGreaterThanOrEqual(2000);
    expect(jtis.filter((jti) => !audited.has(jti))).toEqual([]);
  });
});

/** The jtis of every token.issue record in the database. */
function auditedJtis(dbPath: string): Set<string> {
  const store = new IamStore(dbPath);
  try {
    return new Set(
      store
        .audit(1_000_000)
        .filter((e) => e.action === "token.issue" && e.outcome === "ok")
        .map((e) => (JSON.parse(e.detail) as { jti: string }).jti),
    );
  } finally {
    store.close();
  }
}

/** Resolves with the child's exit signal, or fails after `deadlineMs`. */
function exitOf(iam: RunningIam, deadlineMs: number): Promise<string | null> {
  const { child } = iam;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`iam did not exit within ${deadlineMs} ms`)), deadlineMs);
    child.once("exit", (_code, signal) => {
      clearTimeout(timer);
      resolve(signal);
    });
  });
}

describe("audit before answer", () => {
  it("has the audit record of every token a client received after a SIGKILL during 64 concurrent IssueToken calls", async () => {
    const { dataDir, iam, md, principals, tokens } = await startWithClients();
    const jtis: string[] = [];
    let killed = false;
    try {
      await unary(principals, "createPrincipal", md)({ id: "svc-kill", kind: "service", displayName: "" });
      const issue = unary<object, { jti: string }>(tokens, "issueToken", md);
      // 64 callers issue tokens without pause; the daemon is killed (no drain, no shutdown hook) while
      // calls are in flight. Every token a caller received counts; callers stop at their first failure.
      const callers = Array.from({ length: 64 }, async () => {
        for (;;) {
          try {
            jtis.push((await issue({ adminSubject: "svc-kill", ttlSeconds: 0, audience: "" })).jti);
          } catch {
            return;
          }
          if (jtis.length >= 1500 && !killed) {
            killed = true;
            iam.child.kill("SIGKILL");
          }
        }
      });
      await Promise.all(callers);
    } finally {
      principals.close();
      tokens.close();
      if (!killed) iam.child.kill("SIGKILL");
    }
    expect(killed).toBe(true);
    expect(await exitOf(iam, 30_000)).toBe("SIGKILL");

    const audited = auditedJtis(join(dataDir, "iam.db"));
    expect(jtis.length).toBeGreaterThanOrEqual(1500);
    expect(jtis.filter((jti) => !audited.has(jti))).toEqual([]);
  });

  it("refuses IssueToken with UNAVAILABLE when its audit record cannot be written", async () => {
    const { dataDir, iam, md, principals, tokens } = await startWithClients();
    try {
      await unary(principals, "createPrincipal", md)({ id: "svc-noaudit", kind: "service", displayName: "" });
      const issue = unary<object, { jti: string }>(tokens, "issueToken", md);
      await issue({ adminSubject: "svc-noaudit", ttlSeconds: 0, audience: "" });
      // Another connection makes every audit insert fail, as a full or broken disk would.
      const store = new IamStore(join(dataDir, "iam.db"));
      store.db.exec(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit disk refused'); END",
      );
      store.close();
      const err = await issue({ adminSubject: "svc-noaudit", ttlSeconds: 0, audience: "" }).then(
        () => null,
        (e: { code: number; details: string }) => e,
      );
      expect(err?.code).toBe(status.UNAVAILABLE);
      expect(err?.details).toMatch(/audit log could not record this request.*audit disk refused/);
    } finally {
      principals.close();
      tokens.close();
      expect(await iam.stop()).not.toBeUndefined();
    }
  });
});
