import { describe, expect, it } from "vitest";
import type { EtcdApiContext } from "./context.js";
import { raiseNoSpace } from "./context.js";

describe("a write the quota cannot take", () => {
  it("is refused with NOSPACE even when raising the alarm fails, as etcd answers it", async () => {
    // Proves the answer does not depend on the alarm's proposal: with no leader to commit it (here
    // a proposal that times out) the client still reads "database space exceeded", not an error
    // it would retry. Before, the proposal's error was the answer.
    const proposed: Uint8Array[] = [];
    const ctx = {
      maxRequestBytes: 1 << 20,
      member: { memberId: 7n },
      replicated: {
        propose: (cmd: Uint8Array) => {
          proposed.push(cmd);
          return Promise.reject(new Error("request timed out"));
        },
      },
    } as unknown as EtcdApiContext;
    await expect(raiseNoSpace(ctx)).rejects.toMatchObject({
      code: "NO_SPACE",
      message: "etcdserver: mvcc: database space exceeded",
    });
    expect(proposed).toHaveLength(1);
  });
});
