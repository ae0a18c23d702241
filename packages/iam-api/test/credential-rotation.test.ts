// Proves the seed's credential rotation flow over gRPC (mint second, read back secret, move client, revoke old, old rejected, new works) and that no secret reaches the database file in plain text.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, Server, ServerCredentials, credentials, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IamCore, IamStore, createIamServices, iamv1 } from "../src/index.js";

const adminToken = "admin-token-for-credential-rotation-test-0123456789";
const masterKey = Buffer.alloc(32, 7);
const dir = mkdtempSync(join(tmpdir(), "iam-api-"));
let store: IamStore;
let core: IamCore;
let server: Server;
let tokensClient: InstanceType<typeof iamv1.TokensClient>;
let credsClient: InstanceType<typeof iamv1.CredentialsClient>;
let principalsClient: InstanceType<typeof iamv1.PrincipalsClient>;

const bearer = (t: string) => {
  const m = new Metadata();
  m.set("authorization", `Bearer ${t}`);
  return m;
};
const admin = () => bearer(adminToken);

/** Promisifies a generated unary client method. */
function rpc<Req, Res>(
  fn: (req: Req, md: Metadata, cb: (err: Error | null, res: Res) => void) => unknown,
  self: unknown,
  req: Req,
  md = new Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn.call(self, req, md, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

beforeAll(async () => {
  store = new IamStore(join(dir, "iam.db"));
  core = await IamCore.open({
    store,
    masterKey,
    issuer: "photon-iam",
    audience: "photon",
    defaultTtlSeconds: 300,
    maxTtlSeconds: 3600,
    clockToleranceSeconds: 5,
    signingKeyPem: null,
    generateSigningKey: true,
  });
  server = new Server();
  for (const s of createIamServices(core, { token: adminToken, allowUnauthenticated: false }))
    server.addService(s.definition, s.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const target = `127.0.0.1:${port}`;
  tokensClient = new iamv1.TokensClient(target, credentials.createInsecure());
  credsClient = new iamv1.CredentialsClient(target, credentials.createInsecure());
  principalsClient = new iamv1.PrincipalsClient(target, credentials.createInsecure());
});

afterAll(async () => {
  tokensClient?.close();
  credsClient?.close();
  principalsClient?.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  await core.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("credential rotation", () => {
  it("mints a second credential, moves the client, revokes the old one and rejects it after", async () => {
    await rpc(
      principalsClient.createPrincipal,
      principalsClient,
      { id: "svc-flaredb", kind: "service", displayName: "" },
      admin(),
    );
    const oldCred = await rpc(
      credsClient.createCredential,
      credsClient,
      { principalId: "svc-flaredb" },
      admin(),
    );
    const issueWith = (id: string, secret: string) =>
      rpc(tokensClient.issueToken, tokensClient, {
        accessKey: { accessKeyId: id, secret },
        ttlSeconds: 0,
        audience: "",
      });
    const oldId = oldCred.credential!.accessKeyId;
    const oldToken = await issueWith(oldId, oldCred.secret);
    expect(oldToken.principalId).toBe("svc-flaredb");

    // 2. mint the new credential before revoking the old one (a third is refused: two active at most).
    const newCred = await rpc(
      credsClient.createCredential,
      credsClient,
      { principalId: "svc-flaredb" },
      admin(),
    );
    await expect(
      rpc(credsClient.createCredential, credsClient, { principalId: "svc-flaredb" }, admin()),
    ).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    const newId = newCred.credential!.accessKeyId;

    // 3. the client (as the owner, with its own token) reads its new secret back and moves over.
    const readBack = await rpc(
      credsClient.getCredentialSecret,
      credsClient,
      { accessKeyId: newId },
      bearer(oldToken.token),
    );
    expect(readBack.secret).toBe(newCred.secret);
    const newToken = await issueWith(newId, readBack.secret);
    const validated = await rpc(tokensClient.validateToken, tokensClient, { token: newToken.token });
    expect(validated.principalId).toBe("svc-flaredb");

    // 4. revoke the old credential after cutover: it no longer authenticates; the new one still does.
    await rpc(credsClient.revokeCredential, credsClient, { accessKeyId: oldId }, admin());
    await expect(issueWith(oldId, oldCred.secret)).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    expect((await issueWith(newId, newCred.secret)).principalId).toBe("svc-flaredb");
    await expect(issueWith(newId, "wrong-secret")).rejects.toMatchObject({ code: status.UNAUTHENTICATED });

    await core.audit.flush();
    const listed = await rpc(
      credsClient.listCredentials,
      credsClient,
      { principalId: "svc-flaredb" },
      admin(),
    );
    const byId = new Map(listed.credentials.map((c) => [c.accessKeyId, c]));
    expect(byId.get(oldId)?.state).toBe("revoked");
    expect(byId.get(newId)?.state).toBe("active");
    expect(byId.get(newId)?.lastUsedAt).toBeGreaterThan(0n);

    // Only the owner or the admin may read a secret back.
    await rpc(
      principalsClient.createPrincipal,
      principalsClient,
      { id: "svc-other", kind: "service", displayName: "" },
      admin(),
    );
    const other = await rpc(
      tokensClient.issueToken,
      tokensClient,
      { adminSubject: "svc-other", ttlSeconds: 0, audience: "" },
      admin(),
    );
    await expect(
      rpc(credsClient.getCredentialSecret, credsClient, { accessKeyId: newId }, bearer(other.token)),
    ).rejects.toMatchObject({ code: status.PERMISSION_DENIED });

    // No secret, token or admin token appears in any database file, even after a WAL checkpoint.
    store.db.pragma("wal_checkpoint(TRUNCATE)");
    const bytes = readdirSync(dir).map((f) => readFileSync(join(dir, f)).toString("latin1"));
    const signingKeyBody = core.keys.list()[0]!.privateKeyPem!.split("\n")[1]!;
    for (const secret of [
      oldCred.secret,
      newCred.secret,
      adminToken,
      newToken.token,
      oldToken.token,
      signingKeyBody,
    ])
      for (const b of bytes) expect(b.includes(secret)).toBe(false);
    expect(bytes.some((b) => b.includes(newId))).toBe(true); // the file is readable: ids are there
    expect(store.audit().some((e) => e.action === "authn.access-key" && e.outcome === "denied")).toBe(true);
  });
});
