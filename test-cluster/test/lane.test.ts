// Proves a lane leaves one artifact per step and a result.json with the seed's fields, fails when a step fails, and always runs its cleanups.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseDuration } from "../src/cli.js";
import { type LaneDefinition, runLane, summaryTable } from "../src/lane.js";

const workDir = mkdtempSync(join(tmpdir(), "test-cluster-lane-"));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

describe("runLane", () => {
  it("records passing steps, stops at a failing one, and cleans up", async () => {
    const cleaned: string[] = [];
    const lane: LaneDefinition = {
      name: "demo-lane",
      description: "test",
      async run(ctx) {
        ctx.onCleanup("first", () => void cleaned.push("first"));
        await ctx.step("write", () => ({ wrote: 3 }));
        await ctx.step("read-back", () => {
          throw new Error("key k2 missing on node02");
        });
        await ctx.step("never", () => ({}));
      },
    };
    const result = await runLane(lane, { workDir });
    expect(result.ok).toBe(false);
    expect(cleaned).toEqual(["first"]);
    expect(result.runDir.startsWith(join(workDir, "demo-lane", ""))).toBe(true);
    expect(result.runDir).toMatch(/\d{8}T\d{6}Z$/);
    const onDisk = JSON.parse(readFileSync(join(result.runDir, "result.json"), "utf8"));
    expect(Object.keys(onDisk)).toEqual(
      expect.arrayContaining(["lane", "startedAt", "finishedAt", "ok", "steps"]),
    );
    expect(onDisk.steps.map((s: { name: string; ok: boolean }) => [s.name, s.ok])).toEqual([
      ["write", true],
      ["read-back", false],
    ]);
    expect(JSON.parse(readFileSync(join(result.runDir, "write.json"), "utf8")).result).toEqual({ wrote: 3 });
    expect(JSON.parse(readFileSync(join(result.runDir, "read-back.json"), "utf8")).error).toBe(
      "key k2 missing on node02",
    );
    expect(existsSync(join(workDir, "demo-lane", "latest", "result.json"))).toBe(true);
    expect(summaryTable(result)).toContain("demo-lane: FAILED");
  });

  it("passes when every step passes", async () => {
    const lane: LaneDefinition = {
      name: "ok-lane",
      description: "test",
      run: async (ctx) => void (await ctx.step("only", () => 1)),
    };
    expect((await runLane(lane, { workDir })).ok).toBe(true);
  });
});

describe("parseDuration", () => {
  it("reads seconds, minutes and hours, and rejects anything else", () => {
    expect(parseDuration("90")).toBe(90_000);
    expect(parseDuration("2m")).toBe(120_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(() => parseDuration("soon")).toThrow(/not a duration/);
  });
});
