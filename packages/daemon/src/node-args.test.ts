import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CHAINFIRE_NODE_ARGS, CHAINFIRE_TUNABLES, chainfireEnv } from "./node-args.js";

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

/** How many of a Node.js child's mappings may be backed by transparent huge pages, after it mallocs 32 MB. */
const hugePageMappings = (env: NodeJS.ProcessEnv) => {
  const script = `
    const keep = [];
    for (let i = 0; i < 2048; i++) keep.push(Buffer.alloc(16384, 1));
    const maps = require("node:fs").readFileSync("/proc/self/smaps", "utf8");
    process.stdout.write(String((maps.match(/^THPeligible:\\s+1$/gm) ?? []).length));`;
  const r = spawnSync(process.execPath, ["-e", script], { env });
  expect(r.stderr.toString()).toBe("");
  return Number(r.stdout.toString());
};

describe("chainfireEnv", () => {
  it("puts malloc's heap on huge pages where the kernel lets a process ask for them", () => {
    // Proves the tunable takes effect: with it, glibc marks its heap for THP (smaps THPeligible);
    // under THP mode "always" everything is eligible anyway, under "never" (or no THP) nothing is.
    const modeFile = "/sys/kernel/mm/transparent_hugepage/enabled";
    const mode = existsSync(modeFile)
      ? (/\[(\w+)\]/.exec(readFileSync(modeFile, "utf8"))?.[1] ?? "never")
      : "never";
    const { GLIBC_TUNABLES: _, ...plain } = process.env;
    const withTunable = hugePageMappings({ ...plain, ...chainfireEnv(plain) });
    const without = hugePageMappings(plain);
    if (mode === "never") expect(withTunable).toBe(0);
    else expect(withTunable).toBeGreaterThan(0);
    if (mode === "madvise") expect(without).toBe(0);
  });

  it("keeps the tunables already set, adding its own unless the same one is set", () => {
    expect(chainfireEnv({})).toEqual({ GLIBC_TUNABLES: CHAINFIRE_TUNABLES });
    expect(chainfireEnv({ GLIBC_TUNABLES: "glibc.malloc.arena_max=2" })).toEqual({
      GLIBC_TUNABLES: `glibc.malloc.arena_max=2:${CHAINFIRE_TUNABLES}`,
    });
    expect(chainfireEnv({ GLIBC_TUNABLES: "glibc.malloc.hugetlb=0" })).toEqual({
      GLIBC_TUNABLES: "glibc.malloc.hugetlb=0",
    });
  });

  it("is what the nix package's chainfire wrapper sets", () => {
    const nix = readFileSync(new URL("../../../nix/daemon.nix", import.meta.url), "utf8");
    expect(nix).toContain(`"--suffix GLIBC_TUNABLES : ${CHAINFIRE_TUNABLES} "`);
  });
});
