/** Every error this package throws has a stable `code`; servers map codes to gRPC status in one place. */
export abstract class IamAuthnError extends Error {
  abstract readonly code: string;
}

/** A signing-key operation was refused because of the key's state (e.g. retire while tokens may live). */
export class KeyStateError extends IamAuthnError {
  readonly code = "KEY_STATE";
  constructor(
    readonly kid: string,
    message: string,
  ) {
    super(message);
    this.name = "KeyStateError";
  }
}

/** No signing key with that kid exists (or it was purged). */
export class KeyNotFoundError extends IamAuthnError {
  readonly code = "KEY_NOT_FOUND";
  constructor(readonly kid: string) {
    super(`signing key ${JSON.stringify(kid)} does not exist; list keys with \`iamctl key list\``);
    this.name = "KeyNotFoundError";
  }
}

/** Bad input to a key operation (unsupported algorithm, unreadable PEM). */
export class KeyInputError extends IamAuthnError {
  readonly code = "KEY_INVALID";
  constructor(message: string) {
    super(message);
    this.name = "KeyInputError";
  }
}

/** No key is active, so no token can be issued. */
export class NoActiveKeyError extends IamAuthnError {
  readonly code = "NO_ACTIVE_KEY";
  constructor() {
    super("no signing key is active; add one (`iamctl key add`) and activate it (`iamctl key activate`)");
    this.name = "NoActiveKeyError";
  }
}

/** Why a token was refused. Stable strings: they appear in audit records and API answers. */
export const TokenRejection = {
  Malformed: "TOKEN_MALFORMED",
  AlgNotAllowed: "TOKEN_ALG_NOT_ALLOWED",
  KidMissing: "TOKEN_KID_MISSING",
  KidUnknown: "TOKEN_KID_UNKNOWN",
  KidRetired: "TOKEN_KID_RETIRED",
  SignatureInvalid: "TOKEN_SIGNATURE_INVALID",
  ExpMissing: "TOKEN_EXP_MISSING",
  Expired: "TOKEN_EXPIRED",
  NotYetValid: "TOKEN_NOT_YET_VALID",
  IssuerMismatch: "TOKEN_ISSUER_MISMATCH",
  AudienceMismatch: "TOKEN_AUDIENCE_MISMATCH",
  TypMismatch: "TOKEN_TYP_MISMATCH",
  CritUnknown: "TOKEN_CRIT_UNKNOWN",
  ClaimMissing: "TOKEN_CLAIM_MISSING",
  Revoked: "TOKEN_REVOKED",
  PopulationRevoked: "TOKEN_KEY_POPULATION_REVOKED",
  BeforePrincipalEpoch: "TOKEN_BEFORE_PRINCIPAL_EPOCH",
  PrincipalDisabled: "TOKEN_PRINCIPAL_DISABLED",
} as const;
export type TokenRejection = (typeof TokenRejection)[keyof typeof TokenRejection];

/** A token failed validation; `code` says which rule refused it. */
export class TokenRejectedError extends IamAuthnError {
  constructor(
    readonly code: TokenRejection,
    message: string,
  ) {
    super(message);
    this.name = "TokenRejectedError";
  }
}

/** Why a client certificate was refused. */
export const CertRejection = {
  Malformed: "CERT_MALFORMED",
  Expired: "CERT_EXPIRED",
  UntrustedIssuer: "CERT_UNTRUSTED",
  IsCa: "CERT_IS_CA",
  UriSanCount: "CERT_URI_SAN_COUNT",
  Unmapped: "CERT_IDENTITY_UNMAPPED",
} as const;
export type CertRejection = (typeof CertRejection)[keyof typeof CertRejection];

/** A client certificate did not authenticate; `code` says which rule refused it. */
export class CertificateRejectedError extends IamAuthnError {
  constructor(
    readonly code: CertRejection,
    message: string,
  ) {
    super(message);
    this.name = "CertificateRejectedError";
  }
}
