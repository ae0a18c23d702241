// chainfirectl's TLS flags (--cacert, --cert, --key) against a chainfire member that requires client
// certificates: accepted with the right CA and identity, refused clearly without them.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ctl, until } from "../src/ctl/testing.js";
import { DaemonCluster, type Member } from "./support/daemon-cluster.js";
import { testCa } from "./support/test-pki.js";

const pkiDir = mkdtempSync(join(tmpdir(), "ctl-tls-"));
const ca = testCa(pkiDir, "ctl");
const rogue = testCa(pkiDir, "ctl-rogue");
const operator = ca.issue("ctl-operator");
const stranger = rogue.issue("ctl-stranger");
const cluster = new DaemonCluster({
  token: "ctl-tls",
  tls: { caFile: ca.caFile, member: ca.issue("ctl-member"), client: operator },
});
let member: Member;
let endpoint: string;

beforeAll(async () => {
  member = await cluster.allocate("s1");
  await cluster.start("s1", { initialCluster: cluster.initialCluster(["s1"]) });
  endpoint = `--endpoints=https://127.0.0.1:${member.ports.client}`;
}, 180_000);

afterAll(async () => {
  await cluster.close();
  rmSync(pkiDir, { recursive: true, force: true });
});

describe("chainfirectl over TLS", { timeout: 120_000 }, () => {
  it("talks to an mTLS member with --cacert, --cert and --key", async () => {
    // Proves the TLS flags build a verified, client-authenticated channel like etcdctl's.
    const tls = [endpoint, `--cacert=${ca.caFile}`, `--cert=${operator.cert}`, `--key=${operator.key}`];
    expect((await ctl([...tls, "put", "tls/k", "v"])).out).toBe("OK\n");
    expect((await ctl([...tls, "get", "tls/k", "--print-value-only"])).out).toBe("v\n");
    // The member publishes its client URLs shortly after it starts: poll for them.
    const published = /, started, s1, https:\/\/127\.0\.0\.1:\d+, https:\/\/127\.0\.0\.1:\d+, false\n$/;
    let listed = "";
    await until(async () => {
      listed = (await ctl([...tls, "member", "list"])).out;
      return published.test(listed);
    }, "s1's https:// client URL").catch((err: Error) => {
      throw new Error(`${err.message}; last list: ${listed}`);
    });
    expect((await ctl([...tls, "endpoint", "health"])).code).toBe(0);
  });

  it("fails clearly without a client certificate, with a foreign one, or with half a pair", async () => {
    // Proves a refused handshake is an error naming the endpoint, and a missing --key is a usage error.
    const noCert = await ctl([
      endpoint,
      `--cacert=${ca.caFile}`,
      "--command-timeout=5s",
      "--dial-timeout=5s",
      "get",
      "tls/k",
    ]);
    expect(noCert.code).toBe(1);
    expect(noCert.out).toBe("");
    expect(noCert.err).toContain(`cannot reach 127.0.0.1:${member.ports.client}`);
    expect(noCert.err).toContain("certificate required");
    const foreign = await ctl([
      endpoint,
      `--cacert=${ca.caFile}`,
      `--cert=${stranger.cert}`,
      `--key=${stranger.key}`,
      "--command-timeout=5s",
      "--dial-timeout=5s",
      "get",
      "tls/k",
    ]);
    expect(foreign.code).toBe(1);
    const half = await ctl([endpoint, `--cacert=${ca.caFile}`, `--cert=${operator.cert}`, "get", "tls/k"]);
    expect(half.code).toBe(128);
    expect(half.err).toContain("--cert and --key go together");
    const missing = await ctl([endpoint, "--cacert=/nonexistent/ca.pem", "get", "tls/k"]);
    expect(missing.err).toContain("--cacert: cannot read /nonexistent/ca.pem");
  });

  it("checks the server's certificate unless told --insecure-skip-tls-verify, as etcdctl", async () => {
    // Proves the member's certificate (from a CA the system does not trust) is refused without
    // --cacert, and accepted unchecked with --insecure-skip-tls-verify (also given as =true).
    const identity = [endpoint, `--cert=${operator.cert}`, `--key=${operator.key}`];
    const timeouts = ["--command-timeout=5s", "--dial-timeout=5s"];
    const unverified = await ctl([...identity, ...timeouts, "get", "tls/k"]);
    expect(unverified.code).toBe(1);
    expect(unverified.err).toMatch(/certificate/i);
    const skipped = await ctl([
      ...identity,
      "--insecure-skip-tls-verify",
      "get",
      "tls/k",
      "--print-value-only",
    ]);
    expect([skipped.code, skipped.out, skipped.err]).toEqual([0, "v\n", ""]);
    const asValue = await ctl([...identity, "--insecure-skip-tls-verify=true", "get", "tls/k"]);
    expect(asValue.out).toBe("tls/k\nv\n");
    const plain = `--endpoints=127.0.0.1:${member.ports.client}`;
    // Without https:// or --cacert, --insecure-transport=false still asks for TLS (etcdctl's flag).
    const forced = await ctl([
      plain,
      "--insecure-transport=false",
      ...identity.slice(1),
      "--insecure-skip-tls-verify",
      "get",
      "tls/k",
      "--print-value-only",
    ]);
    expect([forced.code, forced.out]).toEqual([0, "v\n"]);
  });
});
