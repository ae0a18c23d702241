// Proves every token refusal rule with a forged or crafted token, and that the verified-token cache still enforces expiry, revocation and key state on each call.
import {
  type KeyObject,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
} from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { RevocationList, SigningKeySet, TokenRejectedError, TokenService } from "../src/index.js";

const t0 = 1_700_000_000; // seconds
const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** Builds a compact JWS by hand so the test controls every header and claim byte. */
function forge(header: object, payload: object, signer: (input: Buffer) => Buffer | string): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = signer(Buffer.from(input));
  return `${input}.${typeof sig === "string" ? sig : sig.toString("base64url")}`;
}

let keys: SigningKeySet;
let tokens: TokenService;
let kid: string;
let retiredKid: string;
let privateKey: KeyObject;
let retiredPrivateKey: KeyObject;
let publicPem: string;
const clock = { nowMs: t0 * 1000 };
const revoked = new RevocationList();
const principals = new Map([
  ["alice", { enabled: true, notBeforeEpochSeconds: 0 }],
  ["bumped", { enabled: true, notBeforeEpochSeconds: t0 - 10 }],
  ["disabled", { enabled: false, notBeforeEpochSeconds: 0 }],
]);

const goodHeader = () => ({ alg: "EdDSA", kid, typ: "at+jwt" });
const goodClaims = (over: object = {}) => ({
  iss: "photon-iam",
  aud: "photon",
  sub: "alice",
  iat: t0,
  nbf: t0,
  exp: t0 + 300,
  jti: `jti-${Math.random()}`,
  ...over,
});
const edSign = (k: KeyObject) => (input: Buffer) => sign(null, input, k);

beforeAll(async () => {
  // Two keys: the first signed an hour ago and is now retired; the second is the active signer.
  keys = new SigningKeySet({ maxTokenTtlSeconds: 600, clockToleranceSeconds: 5 });
  const retired = await keys.generate("EdDSA", clock.nowMs - 3_600_000);
  keys.activate(retired.kid, clock.nowMs - 3_600_000);
  const active = await keys.generate("EdDSA", clock.nowMs - 3_000_000);
  keys.activate(active.kid, clock.nowMs - 3_000_000);
  keys.retire(retired.kid, clock.nowMs);
  kid = active.kid;
  retiredKid = retired.kid;
  privateKey = createPrivateKey(active.privateKeyPem!);
  retiredPrivateKey = createPrivateKey(retired.privateKeyPem!);
  publicPem = createPublicKey(privateKey).export({ type: "spki", format: "pem" }).toString();
  tokens = new TokenService({
    keys,
    issuer: "photon-iam",
    audience: "photon",
    defaultTtlSeconds: 300,
    clockToleranceSeconds: 5,
    nowMs: () => clock.nowMs,
    isRevoked: (jti) => revoked.has(jti),
    principalStatus: (sub) => principals.get(sub),
  });
  revoked.add("jti-revoked", t0 + 300);
});

const cases: [string, () => string, string][] = [
  [
    "alg none",
    () => forge({ alg: "none", kid, typ: "at+jwt" }, goodClaims(), () => ""),
    "TOKEN_ALG_NOT_ALLOWED",
  ],
  [
    "HS256 signed with the public key",
    () =>
      forge({ alg: "HS256", kid, typ: "at+jwt" }, goodClaims(), (i) =>
        createHmac("sha256", publicPem).update(i).digest(),
      ),
    "TOKEN_ALG_NOT_ALLOWED",
  ],
  [
    "ES256 header on an EdDSA key",
    () => {
      const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
      return forge({ alg: "ES256", kid, typ: "at+jwt" }, goodClaims(), (i) =>
        sign("sha256", i, { key: ec.privateKey, dsaEncoding: "ieee-p1363" }),
      );
    },
    "TOKEN_ALG_NOT_ALLOWED",
  ],
  [
    "unknown kid",
    () => forge({ ...goodHeader(), kid: "no-such-kid" }, goodClaims(), edSign(privateKey)),
    "TOKEN_KID_UNKNOWN",
  ],
  [
    "missing kid",
    () => forge({ alg: "EdDSA", typ: "at+jwt" }, goodClaims(), edSign(privateKey)),
    "TOKEN_KID_MISSING",
  ],
  [
    "retired kid",
    () => forge({ ...goodHeader(), kid: retiredKid }, goodClaims(), edSign(retiredPrivateKey)),
    "TOKEN_KID_RETIRED",
  ],
  [
    "signed by an attacker's key under the real kid",
    () => forge(goodHeader(), goodClaims(), edSign(generateKeyPairSync("ed25519").privateKey)),
    "TOKEN_SIGNATURE_INVALID",
  ],
  [
    "payload tampered after signing",
    () => {
      const [h, , s] = forge(goodHeader(), goodClaims(), edSign(privateKey)).split(".");
      return `${h}.${b64(goodClaims({ sub: "root" }))}.${s}`;
    },
    "TOKEN_SIGNATURE_INVALID",
  ],
  [
    "missing exp",
    () => forge(goodHeader(), goodClaims({ exp: undefined }), edSign(privateKey)),
    "TOKEN_EXP_MISSING",
  ],
  [
    "expired exp",
    () => forge(goodHeader(), goodClaims({ exp: t0 - 60 }), edSign(privateKey)),
    "TOKEN_EXPIRED",
  ],
  [
    "future nbf",
    () => forge(goodHeader(), goodClaims({ nbf: t0 + 120 }), edSign(privateKey)),
    "TOKEN_NOT_YET_VALID",
  ],
  [
    "wrong iss",
    () => forge(goodHeader(), goodClaims({ iss: "evil-iam" }), edSign(privateKey)),
    "TOKEN_ISSUER_MISMATCH",
  ],
  [
    "wrong aud",
    () => forge(goodHeader(), goodClaims({ aud: "other" }), edSign(privateKey)),
    "TOKEN_AUDIENCE_MISMATCH",
  ],
  [
    "wrong typ",
    () => forge({ ...goodHeader(), typ: "JWT" }, goodClaims(), edSign(privateKey)),
    "TOKEN_TYP_MISMATCH",
  ],
  ["missing typ", () => forge({ alg: "EdDSA", kid }, goodClaims(), edSign(privateKey)), "TOKEN_TYP_MISMATCH"],
  [
    "unknown crit",
    () => forge({ ...goodHeader(), crit: ["x-photon"], "x-photon": 1 }, goodClaims(), edSign(privateKey)),
    "TOKEN_CRIT_UNKNOWN",
  ],
  [
    "revoked jti",
    () => forge(goodHeader(), goodClaims({ jti: "jti-revoked" }), edSign(privateKey)),
    "TOKEN_REVOKED",
  ],
  [
    "issued before the principal's not-before epoch",
    () => forge(goodHeader(), goodClaims({ sub: "bumped", iat: t0 - 20, nbf: t0 - 20 }), edSign(privateKey)),
    "TOKEN_BEFORE_PRINCIPAL_EPOCH",
  ],
  [
    "disabled principal",
    () => forge(goodHeader(), goodClaims({ sub: "disabled" }), edSign(privateKey)),
    "TOKEN_PRINCIPAL_DISABLED",
  ],
  ["not a JWS", () => "not.a-token", "TOKEN_MALFORMED"],
];

describe("JWT attack table", () => {
  it.each(cases)("refuses %s", async (_name, make, code) => {
    const err = await tokens.validate(make()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenRejectedError);
    expect((err as TokenRejectedError).code).toBe(code);
  });

  it("accepts a correctly forged-by-the-issuer token within clock tolerance", async () => {
    const ok = forge(goodHeader(), goodClaims({ nbf: t0 + 3 }), edSign(privateKey));
    expect((await tokens.validate(ok)).subject).toBe("alice");
  });

  it("verifies a signature once, then still checks expiry and revocation on every call", async () => {
    const issued = await tokens.issue({ subject: "alice", ttlSeconds: 60 });
    const before = tokens.signatureVerifications;
    for (let i = 0; i < 5; i += 1) await tokens.validate(issued.token);
    expect(tokens.signatureVerifications - before).toBe(1);
    revoked.add(issued.jti, issued.expiresAtSeconds);
    await expect(tokens.validate(issued.token)).rejects.toMatchObject({ code: "TOKEN_REVOKED" });
    const other = await tokens.issue({ subject: "alice", ttlSeconds: 60 });
    await tokens.validate(other.token);
    clock.nowMs += 66_000;
    await expect(tokens.validate(other.token)).rejects.toMatchObject({ code: "TOKEN_EXPIRED" });
    clock.nowMs -= 66_000;
  });

  it("refuses a remembered token once its principal, epoch or key changes, without verifying it again", async () => {
    // Proves a cache hit re-reads principal state and key state: each change refuses the same token.
    const own = { nowMs: t0 * 1000 };
    const status = { enabled: true, notBeforeEpochSeconds: 0 };
    const ownKeys = new SigningKeySet({ maxTokenTtlSeconds: 600, clockToleranceSeconds: 5 });
    const first = await ownKeys.generate("EdDSA", own.nowMs);
    ownKeys.activate(first.kid, own.nowMs);
    const service = new TokenService({
      keys: ownKeys,
      issuer: "photon-iam",
      audience: "photon",
      defaultTtlSeconds: 300,
      clockToleranceSeconds: 5,
      nowMs: () => own.nowMs,
      principalStatus: () => status,
    });
    const { token } = await service.issue({ subject: "carol" });
    await service.validate(token);
    const refusal = () => service.validate(token).catch((e: TokenRejectedError) => e.code);
    status.enabled = false;
    expect(await refusal()).toBe("TOKEN_PRINCIPAL_DISABLED");
    status.enabled = true;
    status.notBeforeEpochSeconds = t0 + 1;
    expect(await refusal()).toBe("TOKEN_BEFORE_PRINCIPAL_EPOCH");
    status.notBeforeEpochSeconds = 0;
    expect((await service.validate(token)).subject).toBe("carol");
    const second = await ownKeys.generate("EdDSA", own.nowMs);
    ownKeys.activate(second.kid, own.nowMs);
    ownKeys.revokePopulation(first.kid, own.nowMs);
    expect(await refusal()).toBe("TOKEN_KEY_POPULATION_REVOKED");
    ownKeys.retire(first.kid, own.nowMs);
    expect(await refusal()).toBe("TOKEN_KID_RETIRED");
    ownKeys.purge(first.kid, own.nowMs);
    expect(await refusal()).toBe("TOKEN_KID_RETIRED");
    expect(service.signatureVerifications).toBe(1);
  });
});
