import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logging.js";

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join("") };
}

describe("createLogger", () => {
  it("redacts secret fields at any of the first levels of nesting", () => {
    // Proves no default secret key's value reaches the output, wherever it sits in the object.
    const out = capture();
    const logger = createLogger({ name: "t", destination: out.stream as never });
    logger.info({ token: "S1-top", config: { signing_key: "S2-nested" } }, "one");
    logger.info(
      { req: { headers: { authorization: "Bearer S3-header" } }, a: { b: { password: "S4-deep" } } },
      "two",
    );
    logger.child({ component: "x" }).warn({ masterKey: "S5-child", adminToken: "S6" }, "three");
    const text = out.text();
    for (const secret of ["S1-top", "S2-nested", "S3-header", "S4-deep", "S5-child", "S6"]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain("[REDACTED]");
    expect(text).toContain('"component":"x"');
  });

  it("redacts by name suffix at any depth, inside arrays, and in child bindings", () => {
    // Proves the suffix rule catches spelling variants and deep nesting, without hiding ordinary keys.
    const out = capture();
    const logger = createLogger({ name: "t", destination: out.stream as never });
    logger.info(
      {
        a: { b: { c: { d: { e: { signingKey: "D1-deep" } } } } },
        list: [{ "x-admin-token": "D2-array" }],
        IAM_CRED_MASTER_KEY: "D3-env-style",
        key: "visible-key",
        tokenCount: 3,
        payload: Buffer.from("kept"),
      },
      "m",
    );
    logger.child({ sessionToken: "D4-binding" }).info("child");
    const text = out.text();
    for (const secret of ["D1-deep", "D2-array", "D3-env-style", "D4-binding"])
      expect(text).not.toContain(secret);
    expect(text).toContain("visible-key");
    expect(text).toContain('"tokenCount":3');
    expect(text).toContain('"payload":{"type":"Buffer"');
  });

  it("redacts extra keys and paths the daemon adds", () => {
    // Proves daemon-specific secret names are covered when declared.
    const out = capture();
    const logger = createLogger({
      name: "t",
      destination: out.stream as never,
      secretKeys: ["pin"],
      redactPaths: ["req.body"],
    });
    logger.info({ cardPin: "K1", req: { body: "K2" }, visible: "shown" }, "m");
    expect(out.text()).not.toContain("K1");
    expect(out.text()).not.toContain("K2");
    expect(out.text()).toContain("shown");
  });

  it("writes JSON lines with level names and honours the level", () => {
    // Proves the output is parseable JSON with a textual level, and debug is dropped at info.
    const out = capture();
    const logger = createLogger({ name: "svc", destination: out.stream as never, level: "info" });
    logger.debug("hidden");
    logger.info({ n: 1 }, "shown");
    const lines = out
      .text()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "info", name: "svc", n: 1, msg: "shown" });
  });
});
