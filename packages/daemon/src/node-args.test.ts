import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CHAINFIRE_NODE_ARGS } from "./node-args.js";

const heapLimit = (args: readonly string[]) => {
  const script = "process.stdout.write(String(require('node:v8').getHeapStatistics().heap_size_limit))";
  const r = spawnSync(process.execPath, [...args, "-e", script]);
  expect(r.stderr.toString()).toBe("");
  return Number(r.stdout.toString());
};

describe("CHAINFIRE_NODE_ARGS", () => {
  it("are accepted by this Node.js and leave the heap's maximum as it was", () => {
    expect(heapLimit(CHAINFIRE_NODE_ARGS)).toBe(heapLimit([]));
  });

  it("are the ones the nix package's chainfire wrapper passes", () => {
    const nix = readFileSync(new URL("../../../nix/daemon.nix", import.meta.url), "utf8");
    expect(nix).toContain(`"chainfire" then "${CHAINFIRE_NODE_ARGS.join(" ")} "`);
  });
});
