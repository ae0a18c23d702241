// Proves that audit records made on the request path are committed by the writer thread in the order they were made, that durable(seq) and flush wait for the commit (and fail when it cannot be made), and that close drains every record.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AuditLog, IamStore } from "../src/index.js";

const dirs: string[] = [];
const hmacKey = Buffer.alloc(32, 3);

function openStore(): { store: IamStore; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "iam-audit-"));
  dirs.push(dir);
  const path = join(dir, "iam.db");
  return { store: new IamStore(path), path };
}

afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("audit log", () => {
  it("flush resolves once every record made before it is committed, as seen by another connection", async () => {
    const { store, path } = openStore();
    const audit = new AuditLog(store, hmacKey, Date.now);
    audit.record("admin", "principal.create", "svc-a", "ok");
    audit.record("anonymous", "token.validate", "-", "denied", { tokenHmac: audit.fingerprint("t") });
    await audit.flush();
    const reader = new IamStore(path);
    expect(reader.audit().map((e) => e.action)).toEqual(["token.validate", "principal.create"]);
    reader.close();
    await audit.close();
    store.close();
  });

  it("close drains every record, in order, across many batches", async () => {
    const { store, path } = openStore();
    const audit = new AuditLog(store, hmacKey, Date.now);
    const n = 5000;
    for (let i = 0; i < n; i++) audit.record("admin", "token.issue", `p${i}`, "ok", { i });
    await audit.close();
    store.close();
    const reader = new IamStore(path);
    const targets = reader
      .audit(n + 1)
      .reverse()
      .map((e) => e.target);
    reader.close();
    expect(targets).toEqual(Array.from({ length: n }, (_, i) => `p${i}`));
  });

  it("writes an in-memory database's records on the main thread", async () => {
    const store = new IamStore(":memory:");
    const audit = new AuditLog(store, hmacKey, Date.now);
    audit.record("admin", "key.add", "kid-1", "ok");
    await audit.flush();
    expect(store.audit().map((e) => e.target)).toEqual(["kid-1"]);
    await audit.close();
    store.close();
  });

  it("durable(seq) resolves once that record is visible to another connection, and rejects when it cannot be written", async () => {
    const { store, path } = openStore();
    const audit = new AuditLog(store, hmacKey, Date.now);
    const seq = audit.record("admin", "token.issue", "svc-a", "ok", { jti: "j1" });
    expect(audit.recorded).toBe(seq);
    await audit.durable(seq);
    const reader = new IamStore(path);
    expect(reader.audit().map((e) => e.target)).toEqual(["svc-a"]);
    // From now on every insert fails, in the writer and on the main thread alike.
    reader.db.exec(
      "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit disk refused'); END",
    );
    reader.close();
    const lost = audit.record("admin", "token.issue", "svc-b", "ok", { jti: "j2" });
    await expect(audit.durable(lost)).rejects.toThrow(
      /audit records could not be written.*audit disk refused/,
    );
    await expect(audit.close()).rejects.toThrow(/audit disk refused/);
    store.close();
  });
});
