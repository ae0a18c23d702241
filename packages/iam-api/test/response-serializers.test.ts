// Proves the reused-writer serialisers of IssueToken and ValidateToken answers give the generated encoders' bytes, call after call, also after an encoder refused a value half-way.
import { describe, expect, it } from "vitest";
import { iamv1, tokensDefinition } from "../src/index.js";

describe("Tokens response serialisers", () => {
  it("match the generated encoders, including after a refused value", () => {
    const issue = tokensDefinition.issueToken.responseSerialize;
    const generatedIssue = iamv1.TokensService.issueToken.responseSerialize;
    const issued = [
      {
        token: `h.${"p".repeat(400)}.s`,
        jti: "j1",
        kid: "k".repeat(43),
        principalId: "svc-a",
        expiresAtSeconds: 1n,
      },
      { token: "", jti: "", kid: "", principalId: "", expiresAtSeconds: 0n },
      { token: "ü✓", jti: "j3", kid: "k", principalId: "svc-ö", expiresAtSeconds: -5n },
      { token: "t", jti: "j4", kid: "k", principalId: "p", expiresAtSeconds: 2n ** 63n - 1n },
    ];
    for (const v of issued) expect(issue(v)).toEqual(generatedIssue(v));
    // int64 overflow is refused after token/jti/kid were already written; the next answer is clean.
    expect(() => issue({ ...issued[0]!, expiresAtSeconds: 2n ** 63n })).toThrow(/too large/);
    for (const v of issued) expect(issue(v)).toEqual(generatedIssue(v));

    const validate = tokensDefinition.validateToken.responseSerialize;
    const generatedValidate = iamv1.TokensService.validateToken.responseSerialize;
    const validated = {
      principalId: "svc-a",
      jti: "j",
      kid: "k",
      issuedAtSeconds: 10n,
      expiresAtSeconds: 20n,
    };
    expect(validate(validated)).toEqual(generatedValidate(validated));
    // Answers do not share bytes: an earlier Buffer is not overwritten by a later call.
    const first = issue(issued[0]!);
    const copy = Buffer.from(first);
    issue(issued[2]!);
    expect(first).toEqual(copy);
  });
});
