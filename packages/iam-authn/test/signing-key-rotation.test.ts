// Proves the seed's signing-key rotation flow: add, overlap, issue from new key, old tokens still valid, revoke old population or wait the TTL, retire, purge; old tokens rejected after.
import { describe, expect, it } from "vitest";
import { KeyState, KeyStateError, SigningKeySet, TokenRejectedError, TokenService } from "../src/index.js";

function setup(startMs = 1_700_000_000_000) {
  const clock = { nowMs: startMs };
  const changes: string[] = [];
  const keys = new SigningKeySet({
    maxTokenTtlSeconds: 600,
    clockToleranceSeconds: 5,
    onChange: (r) => changes.push(`${r.kid}:${r.state}`),
  });
  const tokens = new TokenService({
    keys,
    issuer: "photon-iam",
    audience: "photon",
    defaultTtlSeconds: 300,
    clockToleranceSeconds: 5,
    nowMs: () => clock.nowMs,
  });
  return { clock, keys, tokens, changes };
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof TokenRejectedError) return err.code;
    throw err;
  }
  throw new Error("token was accepted");
}

describe("signing-key rotation", () => {
  it("rotates by waiting for the maximum token TTL, then retires and purges the old key", async () => {
    const { clock, keys, tokens, changes } = setup();
    const oldKey = await keys.generate("EdDSA", clock.nowMs);
    expect(oldKey.state).toBe(KeyState.Staged);
    expect(keys.jwks().keys.map((k) => k.kid)).toEqual([oldKey.kid]); // published before it signs
    keys.activate(oldKey.kid, clock.nowMs);
    const oldToken = await tokens.issue({ subject: "svc-a" });

    // 1. add the new key: published in JWKS while the old one keeps signing.
    const newKey = await keys.generate("ES256", clock.nowMs);
    expect(
      keys
        .jwks()
        .keys.map((k) => k.kid)
        .sort(),
    ).toEqual([oldKey.kid, newKey.kid].sort());
    expect((await tokens.issue({ subject: "svc-a" })).kid).toBe(oldKey.kid);

    // 2. issue from the new key; the old key verifies during the overlap.
    clock.nowMs += 1_000;
    keys.activate(newKey.kid, clock.nowMs);
    const newToken = await tokens.issue({ subject: "svc-a" });
    expect(newToken.kid).toBe(newKey.kid);
    expect((await tokens.validate(oldToken.token)).kid).toBe(oldKey.kid);
    expect((await tokens.validate(newToken.token)).kid).toBe(newKey.kid);
    expect(keys.list().find((k) => k.kid === oldKey.kid)?.state).toBe(KeyState.VerifyOnly);

    // 3. retiring is refused while unexpired old tokens may exist; allowed after max TTL + tolerance.
    expect(() => keys.retire(oldKey.kid, clock.nowMs)).toThrow(KeyStateError);
    expect(() => keys.purge(oldKey.kid, clock.nowMs)).toThrow(/only a retired key can be purged/);
    clock.nowMs += 605_000;
    keys.retire(oldKey.kid, clock.nowMs);
    expect(keys.jwks().keys.map((k) => k.kid)).toEqual([newKey.kid]);

    // 4. purge deletes the material, irreversibly.
    const purged = keys.purge(oldKey.kid, clock.nowMs);
    expect(purged.privateKeyPem).toBeNull();
    expect(() => keys.activate(oldKey.kid, clock.nowMs)).toThrow(KeyStateError);
    expect(() => keys.purge(oldKey.kid, clock.nowMs)).toThrow(KeyStateError);
    expect(changes).toContain(`${oldKey.kid}:purged`);

    // old tokens rejected after; new ones still valid (issue a fresh one: the first has expired).
    expect(await rejection(tokens.validate(oldToken.token))).toBe("TOKEN_KID_RETIRED");
    const fresh = await tokens.issue({ subject: "svc-a" });
    expect((await tokens.validate(fresh.token)).subject).toBe("svc-a");
  });

  it("rotates early by revoking the old key's token population, even for cached tokens", async () => {
    const { clock, keys, tokens } = setup();
    const oldKey = await keys.generate("EdDSA", clock.nowMs);
    keys.activate(oldKey.kid, clock.nowMs);
    const oldToken = await tokens.issue({ subject: "svc-b" });
    await tokens.validate(oldToken.token); // now in the verified cache
    const newKey = await keys.generate("EdDSA", clock.nowMs);
    keys.activate(newKey.kid, clock.nowMs);
    expect(() => keys.revokePopulation(newKey.kid, clock.nowMs)).toThrow(/only a verify-only key/);
    expect(() => keys.retire(oldKey.kid, clock.nowMs)).toThrow(/wait for the maximum token TTL or revoke/);

    keys.revokePopulation(oldKey.kid, clock.nowMs);
    expect(await rejection(tokens.validate(oldToken.token))).toBe("TOKEN_KEY_POPULATION_REVOKED");
    keys.retire(oldKey.kid, clock.nowMs);
    keys.purge(oldKey.kid, clock.nowMs);
    expect(await rejection(tokens.validate(oldToken.token))).toBe("TOKEN_KID_RETIRED");
    const t = await tokens.issue({ subject: "svc-b" });
    expect((await tokens.validate(t.token)).kid).toBe(newKey.kid);
  });

  it("keeps exactly one active signer and restores key state from records", async () => {
    const { clock, keys } = setup();
    const a = await keys.generate("EdDSA", clock.nowMs);
    const b = await keys.generate("EdDSA", clock.nowMs);
    keys.activate(a.kid, clock.nowMs);
    keys.activate(b.kid, clock.nowMs);
    expect(
      keys
        .list()
        .filter((k) => k.state === KeyState.Active)
        .map((k) => k.kid),
    ).toEqual([b.kid]);
    const restored = new SigningKeySet({ maxTokenTtlSeconds: 600, clockToleranceSeconds: 5 }, keys.list());
    expect(restored.signer().kid).toBe(b.kid);
    expect(restored.list().find((k) => k.kid === a.kid)?.state).toBe(KeyState.VerifyOnly);
  });
});
