import Database from "better-sqlite3";
import type { SigningKeyRecord } from "@photoncloud/iam-authn";

export interface PrincipalRow {
  id: string;
  kind: "user" | "service";
  displayName: string;
  enabled: boolean;
  notBeforeEpochSeconds: number;
  createdAtMs: number;
}

export interface CredentialRow {
  accessKeyId: string;
  principalId: string;
  /** Versioned AES-256-GCM ciphertext of the secret (see SecretBox). */
  secretSealed: Buffer;
  state: "active" | "revoked";
  createdAtMs: number;
  lastUsedAtMs: number | null;
  revokedAtMs: number | null;
}

/** A signing key as stored: the private key PEM is sealed, never written in clear. */
export interface StoredKey {
  record: Omit<SigningKeyRecord, "privateKeyPem">;
  privateSealed: Buffer | null;
}

export interface AuditEntry {
  seq: bigint;
  atMs: number;
  actor: string;
  action: string;
  target: string;
  outcome: string;
  detail: string;
}

const schema = `
CREATE TABLE IF NOT EXISTS principals (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, display_name TEXT NOT NULL, enabled INTEGER NOT NULL,
  not_before_s INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
  access_key_id TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id),
  secret_sealed BLOB NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL,
  last_used_ms INTEGER, revoked_ms INTEGER);
CREATE INDEX IF NOT EXISTS credentials_by_principal ON credentials(principal_id, state);
CREATE TABLE IF NOT EXISTS signing_keys (
  kid TEXT PRIMARY KEY, record_json TEXT NOT NULL, private_sealed BLOB);
CREATE TABLE IF NOT EXISTS revocations (jti TEXT PRIMARY KEY, expires_s INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trust_roots (id TEXT PRIMARY KEY, pem TEXT NOT NULL, added_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity_mappings (
  uri_san TEXT PRIMARY KEY, principal_id TEXT NOT NULL, added_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
`;

const num = (v: unknown): number => Number(v as bigint);
const numOrNull = (v: unknown): number | null => (v === null ? null : Number(v as bigint));

/** The iam SQLite database (single node). All 64-bit columns are read with safeIntegers. */
export class IamStore {
  readonly db: Database.Database;
  /** Statements compiled once and reused: preparing costs more than running a small statement. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("foreign_keys = ON");
    this.db.exec(schema);
  }

  close(): void {
    this.db.close();
  }

  private stmt(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  // ---- principals
  insertPrincipal(p: PrincipalRow): void {
    this.stmt("INSERT INTO principals VALUES (?, ?, ?, ?, ?, ?)").run(
      p.id,
      p.kind,
      p.displayName,
      p.enabled ? 1 : 0,
      p.notBeforeEpochSeconds,
      p.createdAtMs,
    );
  }

  updatePrincipal(p: PrincipalRow): void {
    this.stmt("UPDATE principals SET enabled = ?, not_before_s = ? WHERE id = ?").run(
      p.enabled ? 1 : 0,
      p.notBeforeEpochSeconds,
      p.id,
    );
  }

  principals(): PrincipalRow[] {
    const rows = this.stmt("SELECT * FROM principals ORDER BY id").safeIntegers().all() as Record<
      string,
      unknown
    >[];
    return rows.map((r) => ({
      id: r.id as string,
      kind: r.kind as "user" | "service",
      displayName: r.display_name as string,
      enabled: num(r.enabled) === 1,
      notBeforeEpochSeconds: num(r.not_before_s),
      createdAtMs: num(r.created_ms),
    }));
  }

  // ---- credentials
  insertCredential(c: CredentialRow): void {
    this.stmt("INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?)").run(
      c.accessKeyId,
      c.principalId,
      c.secretSealed,
      c.state,
      c.createdAtMs,
      c.lastUsedAtMs,
      c.revokedAtMs,
    );
  }

  credential(accessKeyId: string): CredentialRow | undefined {
    const r = this.stmt("SELECT * FROM credentials WHERE access_key_id = ?").safeIntegers().get(accessKeyId);
    return r ? credentialRow(r as Record<string, unknown>) : undefined;
  }

  credentials(principalId?: string): CredentialRow[] {
    const rows = principalId
      ? this.stmt("SELECT * FROM credentials WHERE principal_id = ? ORDER BY created_ms")
          .safeIntegers()
          .all(principalId)
      : this.stmt("SELECT * FROM credentials ORDER BY principal_id, created_ms").safeIntegers().all();
    return (rows as Record<string, unknown>[]).map(credentialRow);
  }

  activeCredentialCount(principalId: string): number {
    const r = this.stmt("SELECT count(*) AS n FROM credentials WHERE principal_id = ? AND state = 'active'")
      .safeIntegers()
      .get(principalId) as { n: bigint };
    return Number(r.n);
  }

  touchCredential(accessKeyId: string, atMs: number): void {
    this.stmt("UPDATE credentials SET last_used_ms = ? WHERE access_key_id = ?").run(atMs, accessKeyId);
  }

  revokeCredential(accessKeyId: string, atMs: number): void {
    this.stmt(
      "UPDATE credentials SET state = 'revoked', revoked_ms = ? WHERE access_key_id = ? AND state = 'active'",
    ).run(atMs, accessKeyId);
  }

  // ---- signing keys
  upsertKey(k: StoredKey): void {
    this.stmt(
      "INSERT INTO signing_keys VALUES (?, ?, ?) ON CONFLICT(kid) DO UPDATE SET record_json = excluded.record_json, private_sealed = excluded.private_sealed",
    ).run(k.record.kid, JSON.stringify(k.record), k.privateSealed);
  }

  keys(): StoredKey[] {
    const rows = this.stmt("SELECT * FROM signing_keys").all() as {
      record_json: string;
      private_sealed: Buffer | null;
    }[];
    return rows.map((r) => ({ record: JSON.parse(r.record_json), privateSealed: r.private_sealed }));
  }

  // ---- revocations
  insertRevocation(jti: string, expiresAtSeconds: number): void {
    this.stmt("INSERT OR IGNORE INTO revocations VALUES (?, ?)").run(jti, expiresAtSeconds);
  }

  revocations(): { jti: string; expiresAtSeconds: number }[] {
    const rows = this.stmt("SELECT * FROM revocations").safeIntegers().all() as {
      jti: string;
      expires_s: bigint;
    }[];
    return rows.map((r) => ({ jti: r.jti, expiresAtSeconds: Number(r.expires_s) }));
  }

  // ---- trust roots and identity mappings
  upsertTrustRoot(id: string, pem: string, atMs: number): void {
    this.stmt("INSERT OR REPLACE INTO trust_roots VALUES (?, ?, ?)").run(id, pem, atMs);
  }

  deleteTrustRoot(id: string): boolean {
    return this.stmt("DELETE FROM trust_roots WHERE id = ?").run(id).changes > 0;
  }

  trustRoots(): { id: string; pem: string }[] {
    return this.stmt("SELECT id, pem FROM trust_roots ORDER BY id").all() as {
      id: string;
      pem: string;
    }[];
  }

  upsertMapping(uriSan: string, principalId: string, atMs: number): void {
    this.stmt("INSERT OR REPLACE INTO identity_mappings VALUES (?, ?, ?)").run(uriSan, principalId, atMs);
  }

  deleteMapping(uriSan: string): boolean {
    return this.stmt("DELETE FROM identity_mappings WHERE uri_san = ?").run(uriSan).changes > 0;
  }

  mappings(): { uriSan: string; principalId: string }[] {
    return this.stmt(
      "SELECT uri_san AS uriSan, principal_id AS principalId FROM identity_mappings",
    ).all() as {
      uriSan: string;
      principalId: string;
    }[];
  }

  // ---- audit
  appendAudit(e: Omit<AuditEntry, "seq">): void {
    this.stmt(
      "INSERT INTO audit (at_ms, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
    ).run(e.atMs, e.actor, e.action, e.target, e.outcome, e.detail);
  }

  audit(limit = 1000): AuditEntry[] {
    const rows = this.stmt("SELECT * FROM audit ORDER BY seq DESC LIMIT ?")
      .safeIntegers()
      .all(limit) as Record<string, unknown>[];
    return rows.map((r) => ({
      seq: r.seq as bigint,
      atMs: num(r.at_ms),
      actor: r.actor as string,
      action: r.action as string,
      target: r.target as string,
      outcome: r.outcome as string,
      detail: r.detail as string,
    }));
  }
}

function credentialRow(r: Record<string, unknown>): CredentialRow {
  return {
    accessKeyId: r.access_key_id as string,
    principalId: r.principal_id as string,
    secretSealed: r.secret_sealed as Buffer,
    state: r.state as "active" | "revoked",
    createdAtMs: num(r.created_ms),
    lastUsedAtMs: numOrNull(r.last_used_ms),
    revokedAtMs: numOrNull(r.revoked_ms),
  };
}
