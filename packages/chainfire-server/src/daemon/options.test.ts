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

  it("takes every other flag of etcd 3.4's --help, at etcd's defaults, and the ones it honours beyond them", () => {
    // Proves an etcd unit that spells out its defaults starts chainfire (before, each of these
    // stopped it as an unknown option), in Go's duration syntax too; the keepalive, stream limit
    // and progress interval are read for use.
    const defaults = parse([
      "--grpc-keepalive-min-time=5s",
      "--grpc-keepalive-interval=2h0m0s",
      "--grpc-keepalive-timeout=20s",
      "--max-concurrent-streams=4294967295",
      "--experimental-watch-progress-notify-interval=10m0s",
      "--initial-election-tick-advance=true",
      "--experimental-enable-lease-checkpoint=false",
      "--experimental-compaction-batch-limit=1000",
      "--experimental-backend-bbolt-freelist-type=array",
      "--experimental-warning-apply-duration=100ms",
      "--log-package-levels=",
      "--auth-token=simple",
      "--auth-token-ttl=300",
      "--bcrypt-cost=10",
      "--debug=false",
      "--enable-pprof=false",
      "--proxy=off",
      "--proxy-failure-wait=5000",
      "--proxy-refresh-interval=30000",
      "--proxy-dial-timeout=1000",
      "--proxy-write-timeout=5000",
      "--proxy-read-timeout=0",
      "--discovery=",
      "--discovery-srv=",
      "--discovery-srv-name=",
      "--discovery-proxy=",
      "--discovery-fallback=proxy",
      "--experimental-enable-v2v3=",
      "--client-crl-file=",
      "--peer-crl-file=",
      "--cipher-suites=",
      "--client-cert-allowed-hostname=",
      "--peer-cert-allowed-cn=",
      "--peer-cert-allowed-hostname=",
      "--experimental-peer-skip-client-san-verification=false",
      "--experimental-initial-corrupt-check=false",
      "--experimental-corrupt-check-time=0s",
      "--cors=*",
      "--host-whitelist=*",
    ]);
    expect([
      defaults.grpcKeepaliveIntervalMs,
      defaults.grpcKeepaliveTimeoutMs,
      defaults.maxConcurrentStreams,
      defaults.watchProgressNotifyIntervalMs,
    ]).toEqual([7_200_000, 20_000, 4_294_967_295, 600_000]);
    const tuned = parse([
      "--grpc-keepalive-interval=1m30s",
      "--grpc-keepalive-timeout=5s",
      "--max-concurrent-streams=100",
      "--experimental-watch-progress-notify-interval=5s",
    ]);
    expect([
      tuned.grpcKeepaliveIntervalMs,
      tuned.grpcKeepaliveTimeoutMs,
      tuned.maxConcurrentStreams,
      tuned.watchProgressNotifyIntervalMs,
    ]).toEqual([90_000, 5000, 100, 5000]);
    // A bare 0 needs no unit (Go's durations take it so).
    const zero = parse(["--grpc-keepalive-interval=0", "--experimental-corrupt-check-time", "0"]);
    expect([zero.grpcKeepaliveIntervalMs, zero.corruptCheckTimeMs]).toEqual([0, 0]);
    const checked = parse(["--experimental-initial-corrupt-check", "--experimental-corrupt-check-time=1m"]);
    expect([checked.initialCorruptCheck, checked.corruptCheckTimeMs]).toEqual([true, 60_000]);
    const guarded = parse([
      "--cors=http://a.example:8080,https://[::1]:443",
      "--host-whitelist=localhost,example.com",
    ]);
    expect([guarded.cors, guarded.hostWhitelist]).toEqual([
      ["http://a.example:8080", "https://[::1]:443"],
      ["localhost", "example.com"],
    ]);
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
    expect(refusal(["--debug"])).toMatch(/--debug: give --log-level debug instead/);
    expect(refusal(["--enable-pprof"])).toMatch(/--enable-pprof: not offered: profile a member/);
    expect(refusal(["--proxy=on"])).toMatch(/--proxy: not offered: run a member/);
    expect(refusal(["--discovery=https://discovery.etcd.io/x"])).toMatch(
      /--discovery: not offered: list the members in --initial-cluster/,
    );
    expect(refusal(["--experimental-corrupt-check-time=60"])).toMatch(/--experimental-corrupt-check-time/);
    expect(refusal(["--max-concurrent-streams=0"])).toMatch(/--max-concurrent-streams/);
    expect(refusal(["--cors=http://good.example"])).toMatch(
      /--cors: "http:\/\/good.example" is not an origin of the form scheme:\/\/host:port/,
    );
    expect(refusal(["--grpc-keepalive-interval=2d"])).toMatch(/--grpc-keepalive-interval/);
    // etcd's keepalive flags are Go durations: a bare number is refused (Go: "missing unit"), not
    // read as milliseconds; and a Node.js timer cannot wait beyond 2^31-1 ms.
    expect(refusal(["--grpc-keepalive-timeout=20"])).toMatch(
      /--grpc-keepalive-timeout: .*a duration with its unit/,
    );
    expect(refusal(["--grpc-keepalive-timeout=833h"])).toMatch(/--grpc-keepalive-timeout/);
    expect(refusal(["--experimental-watch-progress-notify-interval=600000"])).toMatch(
      /--experimental-watch-progress-notify-interval/,
    );
  });
});
