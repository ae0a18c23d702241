// The flaredb program refuses bad configuration before serving anything: exit status 2 and a
// message naming the option and the fix.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { requireBuilt } from "./cluster-harness.js";

const bin = join(import.meta.dirname, "..", "bin", "flaredb.js");
const dir = mkdtempSync(join(tmpdir(), "flaredb-config-"));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  requireBuilt();
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "" },
    timeout: 30_000,
  });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe("flaredb configuration", () => {
  it("refuses bad values with exit status 2 and a message naming the option and the fix", () => {
    // Proves config errors exit 2 with a message naming the key, for kit and flaredb options alike.
    const timing = run("--data-dir", join(dir, "a"), "--election-timeout", "100");
    expect(timing.status).toBe(2);
    expect(timing.stderr).toMatch(/--election-timeout: 100 ms is less than 5 × --heartbeat-interval/);
    const sync = run("--data-dir", join(dir, "b"), "--db-synchronous", "off");
    expect(sync.status).toBe(2);
    expect(sync.stderr).toMatch(/--db-synchronous/);
    expect(sync.stderr).toMatch(/normal|full/);
    const missing = run();
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--data-dir: required/);
  });

  it("prints its version and its flags", () => {
    // Proves --version and --help work without a data directory.
    expect(run("--version").stdout).toMatch(/^flaredb 0\.1\.0/);
    const help = run("--help").stdout;
    for (const flag of [
      "--initial-cluster",
      "--listen-metrics-urls",
      "--db-synchronous",
      "--max-restore-bytes",
      "--config-file",
    ]) {
      expect(help).toContain(flag);
    }
  });
});
