// Proves that tokens signed synchronously with node:crypto are the tokens jose's SignJWT makes: byte-identical for EdDSA, and accepted by jose's jwtVerify (and by the validator) for ES256, whose signatures are randomised.
import { SignJWT, decodeProtectedHeader, decodeJwt, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { SigningKeySet, TokenService } from "../src/index.js";

const t0 = 1_700_000_000; // seconds

async function serviceWith(alg: "EdDSA" | "ES256") {
  const keys = new SigningKeySet({ maxTokenTtlSeconds: 3600, clockToleranceSeconds: 5 });
  const rec = await keys.generate(alg, t0 * 1000);
  keys.activate(rec.kid, t0 * 1000);
  const tokens = new TokenService({
    keys,
    issuer: "photon-iam",
    audience: "photon",
    defaultTtlSeconds: 900,
    clockToleranceSeconds: 5,
    nowMs: () => t0 * 1000 + 250,
  });
  return { keys, tokens, kid: rec.kid };
}

/** The token jose makes for the same header and claims as `token` (jti and times taken from it). */
function joseTwin(token: string, claims: Record<string, string | number | boolean | string[]>) {
  const header = decodeProtectedHeader(token);
  const p = decodeJwt(token);
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: header.alg!, kid: header.kid!, typ: header.typ! })
    .setIssuer(p.iss!)
    .setAudience(p.aud!)
    .setSubject(p.sub!)
    .setIssuedAt(p.iat!)
    .setNotBefore(p.nbf!)
    .setExpirationTime(p.exp!)
    .setJti(p.jti!);
}

describe("synchronous JWS signing", () => {
  it("makes EdDSA tokens byte-identical to jose's SignJWT, with and without private claims", async () => {
    const { keys, tokens, kid } = await serviceWith("EdDSA");
    const privateKey = keys.signer().privateKey;
    const cases: Record<string, string | number | boolean | string[]>[] = [
      {},
      { scope: "read write", n: 3, admin: false, groups: ["a", "b"], ünï: "cödé ✓" },
    ];
    for (const claims of cases) {
      const issued = tokens.issue({ subject: "svc-a", ttlSeconds: 600, audience: "flaredb", claims });
      expect(issued.kid).toBe(kid);
      expect(issued.token).toBe(await joseTwin(issued.token, claims).sign(privateKey));
      expect(decodeProtectedHeader(issued.token)).toEqual({ alg: "EdDSA", kid, typ: "at+jwt" });
      expect(decodeJwt(issued.token)).toMatchObject({
        iss: "photon-iam",
        aud: "flaredb",
        sub: "svc-a",
        iat: t0,
        nbf: t0,
        exp: t0 + 600,
        jti: issued.jti,
      });
    }
  });

  it("makes ES256 tokens that jose verifies, and the header follows a key rotation", async () => {
    const { keys, tokens } = await serviceWith("EdDSA");
    const first = tokens.issue({ subject: "svc-a" });
    const es = await keys.generate("ES256", t0 * 1000);
    keys.activate(es.kid, t0 * 1000);
    const issued = tokens.issue({ subject: "svc-a" });
    expect(decodeProtectedHeader(issued.token)).toEqual({ alg: "ES256", kid: es.kid, typ: "at+jwt" });
    const publicKey = keys.lookup(es.kid)!.publicKey!;
    const { payload } = await jwtVerify(issued.token, publicKey, {
      algorithms: ["ES256"],
      issuer: "photon-iam",
      audience: "photon",
      typ: "at+jwt",
      currentDate: new Date(t0 * 1000),
    });
    expect(payload).toMatchObject({ sub: "svc-a", jti: issued.jti, exp: t0 + 900 });
    // A P-256 signature in r‖s form is 64 bytes (a DER signature would be 70-72).
    expect(Buffer.from(issued.token.split(".")[2]!, "base64url")).toHaveLength(64);
    // Both tokens pass the validator: the old key is verify-only, the new one active.
    expect((await tokens.validate(first.token)).kid).not.toBe(es.kid);
    expect((await tokens.validate(issued.token)).kid).toBe(es.kid);
  });
});
