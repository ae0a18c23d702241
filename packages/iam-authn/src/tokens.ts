import { randomFillSync } from "node:crypto";
import { type JWTPayload, decodeProtectedHeader, errors as joseErrors, jwtVerify } from "jose";
import { TokenRejectedError, TokenRejection } from "./errors.js";
import { encodeProtectedHeader, signCompactJws } from "./jws-sign.js";
import { KeyState, type Signer, type SigningKeySet } from "./signing-keys.js";

/** What the validator needs to know about a principal on every call (not cached). */
export interface PrincipalStatus {
  enabled: boolean;
  /** Tokens issued (iat) before this many seconds since the epoch are refused. */
  notBeforeEpochSeconds: number;
}

export interface TokenServiceOptions {
  keys: SigningKeySet;
  issuer: string;
  audience: string;
  /** The JWT `typ` header every token carries and every validation demands. */
  typ?: string;
  defaultTtlSeconds: number;
  clockToleranceSeconds: number;
  /** Bound on the verified-token cache (entries); oldest are evicted first. */
  verifiedCacheEntriesMax?: number;
  nowMs?: () => number;
  isRevoked?: (jti: string) => boolean;
  principalStatus?: (subject: string) => PrincipalStatus | undefined;
}

export interface IssueRequest {
  subject: string;
  ttlSeconds?: number;
  audience?: string;
  /** Extra private claims; registered claim names are refused so they cannot be overridden. */
  claims?: Record<string, string | number | boolean | string[]>;
}

export interface IssuedToken {
  token: string;
  jti: string;
  kid: string;
  issuedAtSeconds: number;
  expiresAtSeconds: number;
}

export interface ValidatedToken {
  subject: string;
  jti: string;
  kid: string;
  issuedAtSeconds: number;
  expiresAtSeconds: number;
  claims: JWTPayload;
}

const registeredClaims = new Set(["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]);

const jtiBytes = 16;
/** Token ids drawn from the CSPRNG 256 at a time: one call into OpenSSL per 256 tokens, not per token. */
const jtiPool = Buffer.alloc(jtiBytes * 256);
let jtiPoolOffset = jtiPool.length;

function newJti(): string {
  if (jtiPoolOffset === jtiPool.length) {
    randomFillSync(jtiPool);
    jtiPoolOffset = 0;
  }
  const jti = jtiPool.toString("base64url", jtiPoolOffset, jtiPoolOffset + jtiBytes);
  jtiPoolOffset += jtiBytes;
  return jti;
}

function reject(code: TokenRejection, message: string): never {
  throw new TokenRejectedError(code, message);
}

/**
 * Issues and validates internal JWTs. A token whose signature was verified once is remembered (bounded
 * cache keyed by the exact token string), so later validations skip the signature check; expiry,
 * not-before, revocation, key state and principal state are still checked on every call.
 *
 * Why skipping the signature check on a hit is safe:
 * - The key is the whole compact token (header, payload and signature), compared as a string, so a
 *   hit is byte-for-byte the token that passed; there is no hash whose collision could alias a forgery.
 * - Only tokens that passed every check are inserted, so input cannot plant an entry, and refusals are
 *   not cached: a refused token is judged again from scratch each time.
 * - What a hit skips is a pure function of those bytes and of settings fixed for the life of the
 *   service (issuer, audience, typ, the key's pinned algorithm and public key, required claims):
 *   the same bytes give the same answer. A kid names one public key (it is the key's JWK thumbprint),
 *   so a kid cannot come back with other key material.
 * - Everything that changes with time or operator action is re-evaluated on each hit by the same
 *   code a miss ends with (`checkEveryCall`): the key's state (retired, purged, staged, population
 *   revoked), exp and nbf against the current clock, the jti's revocation, the principal's enabled
 *   flag and not-before epoch, all read from in-memory state that is updated in the same call that
 *   persists an operator's change, before that call answers.
 * - Entries are frozen, so no caller can alter a remembered expiry or subject. The cache is bounded
 *   (`verifiedCacheEntriesMax`, oldest evicted first); an evicted token is simply verified again.
 */
export class TokenService {
  private readonly typ: string;
  private readonly nowMs: () => number;
  private readonly verified = new Map<string, ValidatedToken & { notBeforeSeconds: number }>();
  private readonly cacheMax: number;
  /** The signer the encoded header below was made for (the key set hands out one object per key). */
  private headerSigner: Signer | undefined;
  private encodedHeader = "";
  /** Signature checks performed so far (a cache hit performs none). */
  signatureVerifications = 0;

  constructor(private readonly options: TokenServiceOptions) {
    this.typ = options.typ ?? "at+jwt";
    this.nowMs = options.nowMs ?? Date.now;
    this.cacheMax = options.verifiedCacheEntriesMax ?? 100_000;
  }

  /**
   * Signs a token for `req.subject` with the active key, synchronously (see `signCompactJws`): the
   * header is {alg, kid, typ} and the claims are the private claims followed by iss, aud, sub, iat, nbf,
   * exp and jti, serialised exactly as jose's SignJWT would.
   */
  issue(req: IssueRequest): IssuedToken {
    const ttl = req.ttlSeconds ?? this.options.defaultTtlSeconds;
    const maxTtl = this.options.keys.maxTokenTtlSeconds;
    if (!Number.isInteger(ttl) || ttl <= 0 || ttl > maxTtl)
      throw new RangeError(
        `ttl_seconds must be an integer in 1..${maxTtl} (the configured maximum token TTL)`,
      );
    if (req.subject === "") throw new RangeError("subject must not be empty");
    if (req.claims !== undefined)
      for (const name of Object.keys(req.claims))
        if (registeredClaims.has(name))
          throw new RangeError(`claim ${name} is set by the issuer and cannot be supplied`);
    const signer = this.options.keys.signer();
    if (signer !== this.headerSigner) {
      this.encodedHeader = encodeProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: this.typ });
      this.headerSigner = signer;
    }
    const iat = Math.floor(this.nowMs() / 1000);
    const exp = iat + ttl;
    const jti = newJti();
    const claims = {
      ...req.claims,
      iss: this.options.issuer,
      aud: req.audience ?? this.options.audience,
      sub: req.subject,
      iat,
      nbf: iat,
      exp,
      jti,
    };
    const token = signCompactJws(this.encodedHeader, claims, signer.alg, signer.privateKey);
    return { token, jti, kid: signer.kid, issuedAtSeconds: iat, expiresAtSeconds: exp };
  }

  /** Validates `token`; throws TokenRejectedError naming the rule that refused it. */
  async validate(token: string): Promise<ValidatedToken> {
    return this.validateCached(token) ?? this.validateFirstSeen(token);
  }

  /**
   * Synchronous validation of a token verified before: its answer when it is in the verified-token
   * cache (after the checks made on every call, which throw TokenRejectedError), undefined when it is
   * not (then `validate` it). Lets a caller answer repeat validations without a promise.
   */
  validateCached(token: string): ValidatedToken | undefined {
    const cached = this.verified.get(token);
    if (cached === undefined) return undefined;
    this.checkEveryCall(cached, cached.notBeforeSeconds);
    return cached;
  }

  private async validateFirstSeen(token: string): Promise<ValidatedToken> {
    const result = await this.verifySignatureAndClaims(token);
    if (this.verified.size >= this.cacheMax) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    this.verified.set(token, result);
    return result;
  }

  /** Number of remembered verified tokens (observability and tests). */
  get verifiedCacheSize(): number {
    return this.verified.size;
  }

  private checkEveryCall(t: ValidatedToken, notBeforeSeconds: number): void {
    const nowSeconds = this.nowMs() / 1000;
    const tolerance = this.options.clockToleranceSeconds;
    this.checkKeyUsable(t.kid);
    if (nowSeconds - tolerance >= t.expiresAtSeconds)
      reject(TokenRejection.Expired, `token expired at ${new Date(t.expiresAtSeconds * 1000).toISOString()}`);
    if (nowSeconds + tolerance < notBeforeSeconds)
      reject(TokenRejection.NotYetValid, "token is not valid yet (nbf)");
    if (this.options.isRevoked?.(t.jti)) reject(TokenRejection.Revoked, `token ${t.jti} was revoked`);
    if (this.options.principalStatus) {
      const p = this.options.principalStatus(t.subject);
      if (!p?.enabled)
        reject(TokenRejection.PrincipalDisabled, `principal ${t.subject} is unknown or disabled`);
      if (t.issuedAtSeconds < p.notBeforeEpochSeconds)
        reject(
          TokenRejection.BeforePrincipalEpoch,
          `token was issued before principal ${t.subject}'s not-before epoch`,
        );
    }
  }

  private checkKeyUsable(kid: string): void {
    const key = this.options.keys.lookup(kid);
    if (!key) reject(TokenRejection.KidUnknown, `no signing key ${JSON.stringify(kid)}`);
    const s = key.record.state;
    if (s === KeyState.Retired || s === KeyState.Purged || s === KeyState.Staged)
      reject(TokenRejection.KidRetired, `signing key ${kid} is ${s} and no longer verifies tokens`);
    if (key.record.populationRevokedAtMs !== null)
      reject(TokenRejection.PopulationRevoked, `every token signed by key ${kid} was revoked`);
  }

  private async verifySignatureAndClaims(
    token: string,
  ): Promise<ValidatedToken & { notBeforeSeconds: number }> {
    const header = this.checkHeader(token);
    const kid = header.kid;
    this.checkKeyUsable(kid);
    const key = this.options.keys.lookup(kid)!;
    if (header.alg !== key.record.alg)
      reject(
        TokenRejection.AlgNotAllowed,
        `alg ${header.alg} is not key ${kid}'s algorithm ${key.record.alg}`,
      );
    let payload: JWTPayload;
    this.signatureVerifications += 1;
    try {
      ({ payload } = await jwtVerify(token, key.publicKey!, {
        algorithms: [key.record.alg],
        issuer: this.options.issuer,
        audience: this.options.audience,
        typ: this.typ,
        clockTolerance: this.options.clockToleranceSeconds,
        currentDate: new Date(this.nowMs()),
        requiredClaims: ["exp", "iat", "sub", "jti"],
      }));
    } catch (err) {
      throw mapJoseError(err);
    }
    const result = Object.freeze({
      subject: payload.sub!,
      jti: payload.jti!,
      kid,
      issuedAtSeconds: payload.iat!,
      expiresAtSeconds: payload.exp!,
      notBeforeSeconds: payload.nbf ?? payload.iat!,
      claims: Object.freeze(payload),
    });
    this.checkEveryCall(result, result.notBeforeSeconds);
    return result;
  }

  /** Header checks that need no key: refused before any signature work is spent on the token. */
  private checkHeader(token: string): { alg: string; kid: string } {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      reject(TokenRejection.Malformed, "token is not a compact JWS");
    }
    if (token.split(".").length !== 3) reject(TokenRejection.Malformed, "token is not a compact JWS");
    const alg = header.alg;
    if (typeof alg !== "string" || alg.toLowerCase() === "none")
      reject(TokenRejection.AlgNotAllowed, "unsigned tokens (alg none) are refused");
    if (header.crit !== undefined)
      reject(
        TokenRejection.CritUnknown,
        `critical header extensions ${JSON.stringify(header.crit)} are not understood`,
      );
    if (header.typ !== this.typ) reject(TokenRejection.TypMismatch, `typ must be ${this.typ}`);
    if (typeof header.kid !== "string" || header.kid === "")
      reject(TokenRejection.KidMissing, "token has no kid");
    return { alg, kid: header.kid };
  }
}

function mapJoseError(err: unknown): TokenRejectedError {
  if (err instanceof joseErrors.JWTExpired)
    return new TokenRejectedError(TokenRejection.Expired, "token expired");
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const byClaim: Record<string, TokenRejection> = {
      iss: TokenRejection.IssuerMismatch,
      aud: TokenRejection.AudienceMismatch,
      nbf: TokenRejection.NotYetValid,
      typ: TokenRejection.TypMismatch,
    };
    if (err.reason === "missing")
      return new TokenRejectedError(
        err.claim === "exp" ? TokenRejection.ExpMissing : TokenRejection.ClaimMissing,
        `token has no ${err.claim} claim`,
      );
    const code = byClaim[err.claim] ?? TokenRejection.Malformed;
    return new TokenRejectedError(code, `claim ${err.claim} failed validation`);
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed)
    return new TokenRejectedError(TokenRejection.SignatureInvalid, "signature verification failed");
  if (err instanceof joseErrors.JOSEAlgNotAllowed)
    return new TokenRejectedError(TokenRejection.AlgNotAllowed, "algorithm not allowed");
  if (err instanceof joseErrors.JOSENotSupported)
    return new TokenRejectedError(TokenRejection.CritUnknown, "unsupported token feature");
  return new TokenRejectedError(TokenRejection.Malformed, "token is malformed");
}

/** Revoked token ids, remembered until the token would have expired anyway. */
export class RevocationList {
  private readonly revoked = new Map<string, number>();

  add(jti: string, expiresAtSeconds: number): void {
    this.revoked.set(jti, expiresAtSeconds);
  }

  has(jti: string): boolean {
    return this.revoked.has(jti);
  }

  /** Forgets revocations whose tokens expired before `nowSeconds - toleranceSeconds`. */
  prune(nowSeconds: number, toleranceSeconds: number): number {
    let removed = 0;
    for (const [jti, exp] of this.revoked)
      if (exp + toleranceSeconds < nowSeconds) {
        this.revoked.delete(jti);
        removed += 1;
      }
    return removed;
  }
}
