import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { type JWK, calculateJwkThumbprint, exportJWK } from "jose";
import { KeyInputError, KeyNotFoundError, KeyStateError, NoActiveKeyError } from "./errors.js";

/** Lifecycle of a signing key. Publish before sign: every key starts staged (in JWKS, not signing). */
export const KeyState = {
  Staged: "staged",
  Active: "active",
  VerifyOnly: "verify-only",
  Retired: "retired",
  Purged: "purged",
} as const;
export type KeyState = (typeof KeyState)[keyof typeof KeyState];

/** The algorithms a key may pin. EdDSA (Ed25519) is the default; ES256 (P-256) is selectable. */
export const SigningAlgs = ["EdDSA", "ES256"] as const;
export type SigningAlg = (typeof SigningAlgs)[number];

/** The durable form of a key; `privateKeyPem` is null once purged. Persistence layers store this. */
export interface SigningKeyRecord {
  kid: string;
  alg: SigningAlg;
  state: KeyState;
  privateKeyPem: string | null;
  publicJwk: JWK | null;
  createdAtMs: number;
  activatedAtMs: number | null;
  /** When the key stopped signing: every token it signed expires by this + the maximum token TTL. */
  deactivatedAtMs: number | null;
  /** Set when every token signed by this key was revoked at once (allows early retirement). */
  populationRevokedAtMs: number | null;
  retiredAtMs: number | null;
  purgedAtMs: number | null;
}

export interface SigningKeySetOptions {
  /** Longest lifetime any token may be issued with; bounds how long a deactivated key's tokens live. */
  maxTokenTtlSeconds: number;
  clockToleranceSeconds: number;
  /** Called after every state change so the caller can persist the record. */
  onChange?: (record: SigningKeyRecord) => void;
}

interface LoadedKey {
  record: SigningKeyRecord;
  privateKey: KeyObject | null;
  publicKey: KeyObject | null;
}

/** The active signing key, as handed to the token issuer (one frozen object per activation). */
export interface Signer {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
}

function algOf(key: KeyObject): SigningAlg {
  if (key.asymmetricKeyType === "ed25519") return "EdDSA";
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ES256";
  throw new KeyInputError(
    `unsupported signing key type ${key.asymmetricKeyType ?? "unknown"}; use an Ed25519 (EdDSA) or P-256 (ES256) private key in PEM`,
  );
}

function load(record: SigningKeyRecord): LoadedKey {
  if (record.privateKeyPem === null) return { record, privateKey: null, publicKey: null };
  const privateKey = createPrivateKey(record.privateKeyPem);
  return { record, privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * The set of signing keys and their lifecycle. Exactly one key is active at a time; the transitions are
 * staged → active → verify-only → retired → purged, each guarded so that no token still in circulation
 * loses its verification key and purge is final.
 */
export class SigningKeySet {
  private readonly keys = new Map<string, LoadedKey>();
  /** The active key's signer, found once and dropped on every state change (see `changed`). */
  private cachedSigner: Signer | undefined;

  constructor(
    private readonly options: SigningKeySetOptions,
    records: SigningKeyRecord[] = [],
  ) {
    for (const r of records) this.keys.set(r.kid, load({ ...r }));
    const active = records.filter((r) => r.state === KeyState.Active);
    if (active.length > 1) throw new Error(`invariant: ${active.length} active signing keys in the store`);
  }

  get maxTokenTtlSeconds(): number {
    return this.options.maxTokenTtlSeconds;
  }

  /** Generates a new key pinned to `alg`; it starts staged (published, not signing). */
  async generate(alg: SigningAlg = "EdDSA", nowMs = Date.now()): Promise<SigningKeyRecord> {
    if (!SigningAlgs.includes(alg))
      throw new KeyInputError(`algorithm must be one of ${SigningAlgs.join(", ")}`);
    const pair =
      alg === "EdDSA"
        ? generateKeyPairSync("ed25519")
        : generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    return this.addKeyObject(pair.privateKey, nowMs);
  }

  /** Imports a PEM private key (Ed25519 or P-256); it starts staged. Importing a known key returns it. */
  async importPem(pem: string, nowMs = Date.now()): Promise<SigningKeyRecord> {
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (err) {
      throw new KeyInputError(`signing key is not a readable PEM private key: ${(err as Error).message}`);
    }
    return this.addKeyObject(key, nowMs);
  }

  private async addKeyObject(privateKey: KeyObject, nowMs: number): Promise<SigningKeyRecord> {
    const alg = algOf(privateKey);
    const publicJwk = await exportJWK(createPublicKey(privateKey));
    const kid = await calculateJwkThumbprint(publicJwk);
    const existing = this.keys.get(kid);
    if (existing) return { ...existing.record };
    const record: SigningKeyRecord = {
      kid,
      alg,
      state: KeyState.Staged,
      privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      publicJwk: { ...publicJwk, kid, alg, use: "sig" },
      createdAtMs: nowMs,
      activatedAtMs: null,
      deactivatedAtMs: null,
      populationRevokedAtMs: null,
      retiredAtMs: null,
      purgedAtMs: null,
    };
    this.keys.set(kid, load(record));
    this.changed(record);
    return { ...record };
  }

  /** Makes `kid` the one signer; the previous signer moves to verify-only (the overlap window). */
  activate(kid: string, nowMs = Date.now()): SigningKeyRecord {
    const key = this.get(kid);
    const state = key.record.state;
    if (state !== KeyState.Staged && state !== KeyState.VerifyOnly)
      throw new KeyStateError(
        kid,
        `key ${kid} is ${state}; only a staged or verify-only key can be activated`,
      );
    if (key.record.populationRevokedAtMs !== null)
      throw new KeyStateError(kid, `key ${kid} had its token population revoked; add a new key instead`);
    const previous = this.activeKey();
    if (previous && previous.record.kid !== kid) {
      previous.record.state = KeyState.VerifyOnly;
      previous.record.deactivatedAtMs = nowMs;
      this.changed(previous.record);
    }
    key.record.state = KeyState.Active;
    key.record.activatedAtMs = nowMs;
    key.record.deactivatedAtMs = null;
    this.changed(key.record);
    return { ...key.record };
  }

  /** Marks every token signed by a verify-only key as revoked, which permits retiring it early. */
  revokePopulation(kid: string, nowMs = Date.now()): SigningKeyRecord {
    const key = this.get(kid);
    if (key.record.state !== KeyState.VerifyOnly)
      throw new KeyStateError(
        kid,
        `key ${kid} is ${key.record.state}; only a verify-only key's token population can be revoked (activate another key first)`,
      );
    key.record.populationRevokedAtMs = nowMs;
    this.changed(key.record);
    return { ...key.record };
  }

  /** Stops verifying with `kid`. Refused while tokens it signed may still be unexpired and unrevoked. */
  retire(kid: string, nowMs = Date.now()): SigningKeyRecord {
    const key = this.get(kid);
    const r = key.record;
    if (r.state === KeyState.VerifyOnly && r.populationRevokedAtMs === null) {
      const safeAtMs = this.tokensExpireByMs(r);
      if (nowMs < safeAtMs)
        throw new KeyStateError(
          kid,
          `key ${kid} may still have unexpired tokens until ${new Date(safeAtMs).toISOString()}; wait for the maximum token TTL or revoke its token population first`,
        );
    } else if (r.state !== KeyState.VerifyOnly && r.state !== KeyState.Staged) {
      throw new KeyStateError(
        kid,
        `key ${kid} is ${r.state}; only a verify-only or staged key can be retired`,
      );
    }
    r.state = KeyState.Retired;
    r.retiredAtMs = nowMs;
    this.changed(r);
    return { ...r };
  }

  /** Deletes a retired key's material. Irreversible: the kid stays known only as purged. */
  purge(kid: string, nowMs = Date.now()): SigningKeyRecord {
    const key = this.get(kid);
    if (key.record.state !== KeyState.Retired)
      throw new KeyStateError(kid, `key ${kid} is ${key.record.state}; only a retired key can be purged`);
    key.record.state = KeyState.Purged;
    key.record.privateKeyPem = null;
    key.record.publicJwk = null;
    key.record.purgedAtMs = nowMs;
    key.privateKey = null;
    key.publicKey = null;
    this.changed(key.record);
    return { ...key.record };
  }

  /** When every token a deactivated key signed has expired (including clock tolerance). */
  tokensExpireByMs(r: SigningKeyRecord): number {
    const slackMs = (this.options.maxTokenTtlSeconds + this.options.clockToleranceSeconds) * 1000;
    return (r.deactivatedAtMs ?? Number.POSITIVE_INFINITY) + slackMs;
  }

  list(): SigningKeyRecord[] {
    return [...this.keys.values()].map((k) => ({ ...k.record }));
  }

  /** Public keys that verifiers should know: staged (published ahead of use), active and verify-only. */
  jwks(): { keys: JWK[] } {
    const keys: JWK[] = [];
    for (const k of this.keys.values()) {
      const s = k.record.state;
      if ((s === KeyState.Staged || s === KeyState.Active || s === KeyState.VerifyOnly) && k.record.publicJwk)
        keys.push({ ...k.record.publicJwk });
    }
    return { keys };
  }

  /**
   * The active signer, or throws NoActiveKeyError. Issuing asks for it on every token, so it is kept
   * until the next state change of any key (every change goes through `changed`, which drops it).
   */
  signer(): Signer {
    if (this.cachedSigner !== undefined) return this.cachedSigner;
    const key = this.activeKey();
    if (!key?.privateKey) throw new NoActiveKeyError();
    this.cachedSigner = Object.freeze({
      kid: key.record.kid,
      alg: key.record.alg,
      privateKey: key.privateKey,
    });
    return this.cachedSigner;
  }

  /** Looks a key up for verification without judging its state (the validator does that). */
  lookup(kid: string): { record: Readonly<SigningKeyRecord>; publicKey: KeyObject | null } | undefined {
    const key = this.keys.get(kid);
    return key ? { record: key.record, publicKey: key.publicKey } : undefined;
  }

  private activeKey(): LoadedKey | undefined {
    for (const k of this.keys.values()) if (k.record.state === KeyState.Active) return k;
    return undefined;
  }

  private get(kid: string): LoadedKey {
    const key = this.keys.get(kid);
    if (!key) throw new KeyNotFoundError(kid);
    return key;
  }

  private changed(record: SigningKeyRecord): void {
    this.cachedSigner = undefined;
    this.options.onChange?.({ ...record });
  }
}
