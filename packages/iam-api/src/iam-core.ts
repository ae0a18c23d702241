import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  type CertificateIdentity,
  MtlsIdentityVerifier,
  type PrincipalStatus,
  RevocationList,
  type SigningAlg,
  SigningKeySet,
  type SigningKeyRecord,
  type IssuedToken,
  TokenService,
  type ValidatedToken,
  TokenRejectedError,
  KeyState,
} from "@photoncloud/iam-authn";
import { AuditLog } from "./audit-log.js";
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  masterKeyMissing,
  notFound,
  permissionDenied,
  unauthenticated,
} from "./errors.js";
import { SecretBox, auditHmacKey } from "./master-key.js";
import type { CredentialRow, IamStore, PrincipalRow } from "./store.js";

/** Who is calling: the admin, a principal proven by its token, or nobody. */
export type Caller = { kind: "admin" } | { kind: "principal"; principalId: string } | { kind: "anonymous" };

export interface IamCoreOptions {
  store: IamStore;
  /** 32 bytes from IAM_CRED_MASTER_KEY, or null: then credentials are refused and keys live in memory only. */
  masterKey: Buffer | null;
  issuer: string;
  audience: string;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  clockToleranceSeconds: number;
  /** PEM private key from `authn.internal_token.signing_key`; activated when no key is active. */
  signingKeyPem: string | null;
  /** Dev mode only: generate a random signing key when none is configured or stored. */
  generateSigningKey: boolean;
  nowMs?: () => number;
  /** Called with the trust roots' PEMs after every change (e.g. to refresh a TLS listener's CA list). */
  onTrustRootsChanged?: (pems: string[]) => void;
}

/** Active credentials a principal may hold at once (AWS-style overlap of old and new). */
export const activeCredentialsMax = 2;

const callerName = (c: Caller) => (c.kind === "principal" ? `principal:${c.principalId}` : c.kind);

/** The iam domain: principals, credentials, signing keys, tokens, mTLS identities, audit. */
export class IamCore {
  readonly keys: SigningKeySet;
  readonly tokens: TokenService;
  readonly mtls = new MtlsIdentityVerifier();
  readonly audit: AuditLog;
  private readonly revoked = new RevocationList();
  private readonly principals = new Map<string, PrincipalRow>();
  private readonly credentialBox: SecretBox | null;
  private readonly keyBox: SecretBox | null;
  private readonly nowMs: () => number;

  private constructor(private readonly options: IamCoreOptions) {
    const store = options.store;
    this.nowMs = options.nowMs ?? Date.now;
    this.credentialBox = options.masterKey ? new SecretBox(options.masterKey, "credential") : null;
    this.keyBox = options.masterKey ? new SecretBox(options.masterKey, "signing-key") : null;
    this.audit = new AuditLog(store, auditHmacKey(options.masterKey), this.nowMs);
    for (const p of store.principals()) this.principals.set(p.id, p);
    for (const r of store.revocations()) this.revoked.add(r.jti, r.expiresAtSeconds);
    for (const r of store.trustRoots()) this.mtls.addTrustRoot(r.id, r.pem);
    for (const m of store.mappings()) this.mtls.mapIdentity(m.uriSan, m.principalId);
    this.keys = new SigningKeySet(
      {
        maxTokenTtlSeconds: options.maxTtlSeconds,
        clockToleranceSeconds: options.clockToleranceSeconds,
        onChange: (r) => this.persistKey(r),
      },
      this.loadKeys(),
    );
    this.tokens = new TokenService({
      keys: this.keys,
      issuer: options.issuer,
      audience: options.audience,
      defaultTtlSeconds: options.defaultTtlSeconds,
      clockToleranceSeconds: options.clockToleranceSeconds,
      nowMs: this.nowMs,
      isRevoked: (jti) => this.revoked.has(jti),
      principalStatus: (id) => this.principalStatus(id),
    });
  }

  static async open(options: IamCoreOptions): Promise<IamCore> {
    const core = new IamCore(options);
    await core.ensureSigningKey();
    return core;
  }

  get credentialsEnabled(): boolean {
    return this.credentialBox !== null;
  }

  /** Drains the audit log (every record made so far is committed when this resolves). */
  close(): Promise<void> {
    return this.audit.close();
  }

  private loadKeys(): SigningKeyRecord[] {
    if (!this.keyBox) return [];
    return this.options.store.keys().map((k) => ({
      ...k.record,
      privateKeyPem: k.privateSealed
        ? this.keyBox!.open(k.privateSealed, `kid:${k.record.kid}`).toString()
        : null,
    }));
  }

  private persistKey(r: SigningKeyRecord): void {
    // Without a master key there is nowhere safe to put private material: keys stay in memory (dev only).
    if (!this.keyBox) return;
    const { privateKeyPem, ...record } = r;
    const sealed = privateKeyPem ? this.keyBox.seal(privateKeyPem, `kid:${r.kid}`) : null;
    this.options.store.upsertKey({ record, privateSealed: sealed });
  }

  private async ensureSigningKey(): Promise<void> {
    const hasActive = this.keys.list().some((k) => k.state === KeyState.Active);
    if (this.options.signingKeyPem) {
      const rec = await this.keys.importPem(this.options.signingKeyPem, this.nowMs());
      if (!hasActive && rec.state === KeyState.Staged) this.keys.activate(rec.kid, this.nowMs());
      return;
    }
    if (!hasActive && this.options.generateSigningKey) {
      const rec = await this.keys.generate("EdDSA", this.nowMs());
      this.keys.activate(rec.kid, this.nowMs());
    }
  }

  // ---------------------------------------------------------------- principals

  principalStatus(id: string): PrincipalStatus | undefined {
    return this.principals.get(id);
  }

  createPrincipal(caller: Caller, id: string, kind: string, displayName: string): PrincipalRow {
    this.requireAdmin(caller, "CreatePrincipal");
    if (!/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/.test(id))
      throw invalidArgument("id", "use 1-128 characters: letters, digits and . _ : @ -");
    if (kind !== "user" && kind !== "service") throw invalidArgument("kind", 'must be "user" or "service"');
    if (this.principals.has(id)) throw alreadyExists(`principal ${id}`);
    const row: PrincipalRow = {
      id,
      kind,
      displayName,
      enabled: true,
      notBeforeEpochSeconds: 0,
      createdAtMs: this.nowMs(),
    };
    this.options.store.insertPrincipal(row);
    this.principals.set(id, row);
    this.audit.record(callerName(caller), "principal.create", id, "ok");
    return { ...row };
  }

  principal(id: string): PrincipalRow {
    const p = this.principals.get(id);
    if (!p) throw notFound(`principal ${id}`);
    return { ...p };
  }

  listPrincipals(): PrincipalRow[] {
    return [...this.principals.values()].map((p) => ({ ...p }));
  }

  setPrincipalEnabled(caller: Caller, id: string, enabled: boolean): PrincipalRow {
    this.requireAdmin(caller, "SetPrincipalEnabled");
    const p = this.principals.get(id);
    if (!p) throw notFound(`principal ${id}`);
    p.enabled = enabled;
    this.options.store.updatePrincipal(p);
    this.audit.record(callerName(caller), enabled ? "principal.enable" : "principal.disable", id, "ok");
    return { ...p };
  }

  /** Refuses every token issued before now (whole seconds: tokens issued in this second are refused too). */
  bumpNotBefore(caller: Caller, id: string): PrincipalRow {
    this.requireAdmin(caller, "BumpNotBefore");
    const p = this.principals.get(id);
    if (!p) throw notFound(`principal ${id}`);
    p.notBeforeEpochSeconds = Math.floor(this.nowMs() / 1000) + 1;
    this.options.store.updatePrincipal(p);
    this.audit.record(callerName(caller), "principal.bump-not-before", id, "ok");
    return { ...p };
  }

  // ---------------------------------------------------------------- credentials

  createCredential(caller: Caller, principalId: string): { credential: CredentialRow; secret: string } {
    this.requireAdmin(caller, "CreateCredential");
    if (!this.credentialBox) throw masterKeyMissing();
    this.principal(principalId);
    if (this.options.store.activeCredentialCount(principalId) >= activeCredentialsMax)
      throw failedPrecondition(
        `principal ${principalId} already has ${activeCredentialsMax} active credentials; revoke one before minting another`,
      );
    const accessKeyId = `PCAK${randomBytes(10).toString("hex").toUpperCase()}`;
    const secret = randomBytes(30).toString("base64url");
    const row: CredentialRow = {
      accessKeyId,
      principalId,
      secretSealed: this.credentialBox.seal(secret, credentialAad(accessKeyId, principalId)),
      state: "active",
      createdAtMs: this.nowMs(),
      lastUsedAtMs: null,
      revokedAtMs: null,
    };
    this.options.store.insertCredential(row);
    this.audit.record(callerName(caller), "credential.create", accessKeyId, "ok", { principalId });
    return { credential: row, secret };
  }

  /** The secret, for the admin or the owning principal only. */
  credentialSecret(caller: Caller, accessKeyId: string): string {
    if (!this.credentialBox) throw masterKeyMissing();
    const row = this.options.store.credential(accessKeyId);
    const owner = caller.kind === "principal" && row?.principalId === caller.principalId;
    if (caller.kind !== "admin" && !owner) {
      this.audit.record(callerName(caller), "credential.get-secret", accessKeyId, "denied");
      throw permissionDenied("only the admin or the credential's owner can read its secret");
    }
    if (!row) throw notFound(`credential ${accessKeyId}`);
    if (row.state !== "active") throw failedPrecondition(`credential ${accessKeyId} is revoked`);
    this.audit.record(callerName(caller), "credential.get-secret", accessKeyId, "ok");
    return this.credentialBox
      .open(row.secretSealed, credentialAad(row.accessKeyId, row.principalId))
      .toString();
  }

  listCredentials(caller: Caller, principalId: string): CredentialRow[] {
    if (caller.kind !== "admin" && !(caller.kind === "principal" && caller.principalId === principalId))
      throw permissionDenied("only the admin or the principal itself can list its credentials");
    return this.options.store.credentials(principalId || undefined);
  }

  revokeCredential(caller: Caller, accessKeyId: string): CredentialRow {
    this.requireAdmin(caller, "RevokeCredential");
    if (!this.options.store.credential(accessKeyId)) throw notFound(`credential ${accessKeyId}`);
    this.options.store.revokeCredential(accessKeyId, this.nowMs());
    this.audit.record(callerName(caller), "credential.revoke", accessKeyId, "ok");
    return this.options.store.credential(accessKeyId)!;
  }

  /** Checks access key + secret in constant time; returns the principal id or throws UNAUTHENTICATED. */
  authenticateAccessKey(accessKeyId: string, secret: string): string {
    const fail = (reason: string): never => {
      this.audit.record(`access-key:${accessKeyId}`, "authn.access-key", accessKeyId, "denied", {
        reason,
        secretHmac: this.audit.fingerprint(secret),
      });
      throw unauthenticated("access key or secret is not valid");
    };
    if (!this.credentialBox) throw masterKeyMissing();
    const row = this.options.store.credential(accessKeyId);
    if (!row) return fail("unknown access key");
    const stored = this.credentialBox.open(row.secretSealed, credentialAad(row.accessKeyId, row.principalId));
    const given = Buffer.from(secret);
    const match = given.length === stored.length && timingSafeEqual(given, stored);
    if (!match) return fail("secret mismatch");
    if (row.state !== "active") return fail("credential revoked");
    if (!this.principals.get(row.principalId)?.enabled) return fail("principal disabled");
    this.audit.credentialUsed(accessKeyId);
    this.audit.record(`access-key:${accessKeyId}`, "authn.access-key", row.principalId, "ok");
    return row.principalId;
  }

  // ---------------------------------------------------------------- tokens

  issueToken(principalId: string, via: string, ttlSeconds: number, audience: string): IssuedToken {
    const p = this.principals.get(principalId);
    if (!p) throw notFound(`principal ${principalId}`);
    if (!p.enabled) throw failedPrecondition(`principal ${principalId} is disabled`);
    const issued = this.tokens.issue({
      subject: principalId,
      ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
      ...(audience ? { audience } : {}),
    });
    this.audit.record(via, "token.issue", principalId, "ok", { jti: issued.jti, kid: issued.kid });
    return issued;
  }

  /**
   * Validates `token`: synchronously when it was verified before (the verified-token cache; the checks
   * made on every call still run), through a signature check (a promise) when it is first seen.
   * Refusals are audited either way.
   */
  validateToken(token: string): ValidatedToken | Promise<ValidatedToken> {
    let cached: ValidatedToken | undefined;
    try {
      cached = this.tokens.validateCached(token);
    } catch (err) {
      throw this.refused(token, err);
    }
    if (cached !== undefined) return cached;
    return this.tokens.validate(token).catch((err: unknown) => {
      throw this.refused(token, err);
    });
  }

  /** Refusals are authentication decisions worth keeping; the token itself is stored only as an HMAC. */
  private refused(token: string, err: unknown): unknown {
    if (err instanceof TokenRejectedError)
      this.audit.record("anonymous", "token.validate", "-", "denied", {
        reason: err.code,
        tokenHmac: this.audit.fingerprint(token),
      });
    return err;
  }

  async revokeToken(caller: Caller, token: string, jti: string, expiresAtSeconds: number): Promise<string> {
    this.requireAdmin(caller, "RevokeToken");
    if (token) {
      const v = await this.tokens.validate(token);
      jti = v.jti;
      expiresAtSeconds = v.expiresAtSeconds;
    }
    if (!jti) throw invalidArgument("token", "give the token, or jti with expires_at_seconds");
    if (expiresAtSeconds <= 0)
      expiresAtSeconds = Math.floor(this.nowMs() / 1000) + this.options.maxTtlSeconds;
    this.options.store.insertRevocation(jti, expiresAtSeconds);
    this.revoked.add(jti, expiresAtSeconds);
    this.audit.record(callerName(caller), "token.revoke", jti, "ok");
    return jti;
  }

  // ---------------------------------------------------------------- signing keys

  async addKey(caller: Caller, alg: string, pem: string): Promise<SigningKeyRecord> {
    this.requireAdmin(caller, "AddKey");
    const rec = pem
      ? await this.keys.importPem(pem, this.nowMs())
      : await this.keys.generate((alg || "EdDSA") as SigningAlg, this.nowMs());
    this.audit.record(callerName(caller), "key.add", rec.kid, "ok", { alg: rec.alg });
    return rec;
  }

  keyTransition(caller: Caller, action: "activate" | "revoke-population" | "retire" | "purge", kid: string) {
    this.requireAdmin(caller, `key ${action}`);
    const now = this.nowMs();
    try {
      const rec =
        action === "activate"
          ? this.keys.activate(kid, now)
          : action === "revoke-population"
            ? this.keys.revokePopulation(kid, now)
            : action === "retire"
              ? this.keys.retire(kid, now)
              : this.keys.purge(kid, now);
      this.audit.record(callerName(caller), `key.${action}`, kid, "ok");
      return rec;
    } catch (err) {
      this.audit.record(callerName(caller), `key.${action}`, kid, "refused", {
        reason: (err as Error).message,
      });
      throw err;
    }
  }

  // ---------------------------------------------------------------- mTLS

  addTrustRoot(caller: Caller, id: string, pem: string) {
    this.requireAdmin(caller, "AddTrustRoot");
    if (!id) throw invalidArgument("id", "name the trust root");
    const info = this.mtls.addTrustRoot(id, pem);
    this.options.store.upsertTrustRoot(id, pem, this.nowMs());
    this.audit.record(callerName(caller), "trust-root.add", id, "ok", { fingerprint: info.fingerprint256 });
    this.trustRootsChanged();
    return info;
  }

  removeTrustRoot(caller: Caller, id: string): boolean {
    this.requireAdmin(caller, "RemoveTrustRoot");
    this.options.store.deleteTrustRoot(id);
    const removed = this.mtls.removeTrustRoot(id);
    this.audit.record(callerName(caller), "trust-root.remove", id, removed ? "ok" : "absent");
    this.trustRootsChanged();
    return removed;
  }

  mapIdentity(caller: Caller, uriSan: string, principalId: string): void {
    this.requireAdmin(caller, "MapIdentity");
    this.principal(principalId);
    this.mtls.mapIdentity(uriSan, principalId);
    this.options.store.upsertMapping(uriSan, principalId, this.nowMs());
    this.audit.record(callerName(caller), "identity.map", uriSan, "ok", { principalId });
  }

  unmapIdentity(caller: Caller, uriSan: string): boolean {
    this.requireAdmin(caller, "UnmapIdentity");
    this.options.store.deleteMapping(uriSan);
    const removed = this.mtls.unmapIdentity(uriSan);
    this.audit.record(callerName(caller), "identity.unmap", uriSan, removed ? "ok" : "absent");
    return removed;
  }

  authenticateCertificate(der: Buffer): CertificateIdentity {
    try {
      const id = this.mtls.authenticate(der, [], this.nowMs());
      this.audit.record(`mtls:${id.uriSan}`, "authn.mtls", id.principalId, "ok", {
        fingerprint: id.fingerprint256,
      });
      return id;
    } catch (err) {
      this.audit.record("mtls", "authn.mtls", "-", "denied", {
        reason: (err as { code?: string }).code ?? "error",
      });
      throw err;
    }
  }

  private trustRootsChanged(): void {
    this.options.onTrustRootsChanged?.(this.mtls.trustRoots().map((r) => r.pem));
  }

  private requireAdmin(caller: Caller, what: string): void {
    if (caller.kind !== "admin") {
      this.audit.record(callerName(caller), what, "-", "denied");
      throw caller.kind === "anonymous"
        ? unauthenticated(`${what} needs the admin token (authorization: Bearer <IAM_ADMIN_TOKEN>)`)
        : permissionDenied(`${what} is an admin operation`);
    }
  }
}

/** AAD binding a credential ciphertext to its access key id and principal. */
function credentialAad(accessKeyId: string, principalId: string): string {
  return `photon-iam/credential/v1|${accessKeyId}|${principalId}`;
}
