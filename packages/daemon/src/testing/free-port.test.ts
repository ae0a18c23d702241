import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { freePort } from "./free-port.js";

describe("freePort", () => {
  it("hands out distinct ports below the ephemeral range that a server can bind", async () => {
    const ports: number[] = [];
    for (let i = 0; i < 20; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(20_000);
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port: ports[0], exclusive: true }, resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });

  it("draws from a part of the range of its own in each test worker, so parallel workers never share a port", async () => {
    // Proves the per-worker slices: worker 3 of vitest's pool only hands out ports in the third
    // eighth of 10000-19999, worker 4 in the fourth.
    const saved = process.env.VITEST_POOL_ID;
    try {
      for (const [pool, low] of [
        ["3", 12_500],
        ["4", 13_750],
      ] as const) {
        process.env.VITEST_POOL_ID = pool;
        for (let i = 0; i < 10; i++) {
          const port = await freePort();
          expect(port).toBeGreaterThanOrEqual(low);
          expect(port).toBeLessThan(low + 1_250);
        }
      }
    } finally {
      if (saved === undefined) delete process.env.VITEST_POOL_ID;
      else process.env.VITEST_POOL_ID = saved;
    }
  });
});
