import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * Decodes IAM_CRED_MASTER_KEY. Accepted encodings: exactly 64 hexadecimal characters, or standard /
 * URL-safe base64 (padding optional) that decodes to exactly 32 bytes. Returns null with a reason otherwise.
 */
export function decodeMasterKey(value: string): { key: Buffer } | { error: string } {
  const v = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(v)) return { key: Buffer.from(v, "hex") };
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(v)) {
    const key = Buffer.from(v.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (key.length === 32) return { key };
    return {
      error: `IAM_CRED_MASTER_KEY decodes to ${key.length} bytes as base64; it must be exactly 32 bytes`,
    };
  }
  return { error: "IAM_CRED_MASTER_KEY must be 64 hex characters or base64 of exactly 32 bytes" };
}

/** Ciphertext layout version 1: [0x01][12-byte IV][ciphertext][16-byte GCM tag]. */
const version1 = 1;

/**
 * AES-256-GCM sealing under keys derived (HKDF-SHA256) from the master key, one subkey per purpose so a
 * credential ciphertext can never be opened as signing-key material or vice versa. The AAD binds each
 * ciphertext to the record it belongs to, so swapping ciphertexts between rows fails authentication.
 */
export class SecretBox {
  private readonly key: Buffer;

  constructor(masterKey: Buffer, purpose: string) {
    if (masterKey.length !== 32) throw new Error("invariant: master key must be 32 bytes");
    this.key = Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), `photon-iam ${purpose} v1`, 32));
  }

  seal(plaintext: Buffer | string, aad: string): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.from([version1]), iv, body, cipher.getAuthTag()]);
  }

  open(sealed: Buffer, aad: string): Buffer {
    if (sealed.length < 29 || sealed[0] !== version1)
      throw new Error(`unsupported ciphertext version ${sealed[0] ?? "none"}`);
    const decipher = createDecipheriv("aes-256-gcm", this.key, sealed.subarray(1, 13));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([decipher.update(sealed.subarray(13, sealed.length - 16)), decipher.final()]);
  }
}

/** HMAC key for audit records, derived from the master key (or random per process without one). */
export function auditHmacKey(masterKey: Buffer | null): Buffer {
  if (!masterKey) return randomBytes(32);
  return Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), "photon-iam audit v1", 32));
}
