import { ConfigError, parseConfig } from "@photoncloud/daemon";
import { describe, expect, it } from "vitest";
import { chainfireOptions } from "./options.js";

const spec = { name: "chainfire", options: chainfireOptions, envAliasPrefix: "ETCD_" };

function parse(argv: string[], env: Record<string, string> = {}) {
  const outcome = parseConfig(spec, ["--data-dir", "/tmp/never", ...argv], env);
  if (outcome.action !== "run") throw new Error(`unexpected ${outcome.action}`);
  return outcome.config;
}

function refusal(argv: string[]): string {
  try {
    parse(argv);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error(`${argv.join(" ")} was accepted`);
}

describe("etcd 3.4 flags from an etcd unit", () => {
  it("accepts the ones whose setting chainfire always has", () => {
    // Proves a typical etcd command line starts chainfire: these flags change nothing here.
    const config = parse([
      "--logger=zap",
      "--log-outputs=default",
      "--enable-v2=false",
      "--pre-vote",
      "--strict-reconfig-check=true",
      "--metrics=basic",
      "--max-wals=5",
      "--max-snapshots=5",
      "--auto-tls=false",
      "--force-new-cluster=false",
    ]);
    expect([config.logger, config.enableV2, config.preVote, config.maxWals]).toEqual(["zap", false, true, 5]);
    expect(parse([], { ETCD_ENABLE_V2: "false", ETCD_PRE_VOTE: "true" }).preVote).toBe(true);
  });

  it("refuses a setting chainfire does not offer, naming the flag and what to do", () => {
    // Proves each unsupported setting stops the start with a clear message instead of being ignored.
    expect(refusal(["--enable-v2=true"])).toMatch(/--enable-v2: chainfire serves etcd's v3 API only/);
    expect(refusal(["--pre-vote=false"])).toMatch(/--pre-vote: chainfire always runs pre-vote/);
    expect(refusal(["--strict-reconfig-check=false"])).toMatch(
      /--strict-reconfig-check: chainfire always refuses/,
    );
    expect(refusal(["--force-new-cluster"])).toMatch(/--force-new-cluster: not offered; .*snapshot restore/);
    expect(refusal(["--auto-tls"])).toMatch(/--auto-tls: not offered; give --cert-file/);
    expect(refusal(["--peer-auto-tls"])).toMatch(/--peer-auto-tls: not offered; give --peer-cert-file/);
    expect(refusal(["--wal-dir=/var/lib/etcd/wal"])).toMatch(/--wal-dir: not offered/);
    expect(refusal(["--log-outputs=/var/log/etcd.log"])).toMatch(/--log-outputs/);
  });
});
