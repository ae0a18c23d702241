// Differential test: the same etcdctl 3.4 command sequences against a real single-member etcd and a
// single-member chainfire test server, outputs compared after normalising IDs and timestamps.
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../src/testing/test-server.js";

const hasEtcd = ["etcd", "etcdctl"].every((bin) => spawnSync("which", [bin]).status === 0);

interface Run {
  out: string;
  code: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

function etcdctl(endpoint: string, args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      "etcdctl",
      [`--endpoints=${endpoint}`, "--dial-timeout=10s", "--command-timeout=20s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ out: `${stdout}${stderr}`, code: typeof code === "number" ? code : 1 });
      },
    );
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

async function until(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 45_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Watches until `marker` appears in the output, then stops the watch. */
async function watchUntil(endpoint: string, args: string[], marker: string): Promise<string> {
  const child = spawn("etcdctl", [`--endpoints=${endpoint}`, "watch", ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  try {
    await until(() => out.includes(`${marker}\n`), `watch output containing ${marker}`);
  } finally {
    child.kill("SIGKILL");
  }
  return out;
}

/** Replaces what legitimately differs between two servers: IDs, terms, remaining TTLs. */
function normalise(text: string, leaseIds: string[]): string {
  // etcdctl's own retry warnings carry timestamps, client UUIDs and ports: not server behaviour.
  let out = text
    .split("\n")
    .filter((line) => !line.startsWith('{"level":"warn"') && !line.startsWith('{"level":"info"'))
    .join("\n")
    .replace(/127\.0\.0\.1:\d+/g, "<endpoint>");
  leaseIds.forEach((id, i) => {
    out = out.split(id).join(`<lease${i}>`);
    out = out.split(String(BigInt(`0x${id}`))).join(`<lease${i}>`);
  });
  return out
    .replace(/"cluster_id":\d+/g, '"cluster_id":<c>')
    .replace(/"member_id":\d+/g, '"member_id":<m>')
    .replace(/"raft_term":\d+/g, '"raft_term":<t>')
    .replace(/remaining\(\d+s\)/g, "remaining(<n>s)");
}

/** One full etcdctl session against an endpoint; returns every command's normalised output. */
async function session(endpoint: string, snapshotDir: string): Promise<string[]> {
  const outputs: string[] = [];
  const leaseIds: string[] = [];
  const run = async (args: string[], stdin?: string) => {
    const r = await etcdctl(endpoint, args, stdin);
    const lease = /lease ([0-9a-f]+) granted/.exec(r.out);
    if (lease && !leaseIds.includes(lease[1]!)) leaseIds.push(lease[1]!);
    const command = normalise(args.join(" "), leaseIds);
    outputs.push(`$ etcdctl ${command}\n[exit ${r.code}]\n${normalise(r.out, leaseIds)}`);
    return r;
  };
  for (const [k, v] of [
    ["foo", "bar"],
    ["foo/a", "1"],
    ["foo/b", "3"],
    ["foo/c", "2"],
    ["zoo", "z"],
  ]) {
    await run(["put", k!, v!]);
  }
  await run(["put", "foo/a", "1b", "--prev-kv"]);
  await run(["get", "foo", "--prefix"]);
  await run(["get", "foo/b", "--from-key"]);
  await run(["get", "foo", "--prefix", "--limit=2", "-w", "json"]);
  await run(["get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"]);
  await run(["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=ASCEND", "--limit=3"]);
  await run(["get", "foo", "--prefix", "--keys-only"]);
  await run(["get", "foo", "--prefix", "--count-only", "-w", "json"]);
  await run(["get", "foo/a", "--rev=3"]);
  await run(["get", "foo/a", "--rev=100"]);
  await run(["get", "", "--from-key", "--keys-only"]);
  await run(["get", "foo", "--prefix", "--consistency=s", "--print-value-only"]);
  await run(["get", "foo/a", "foo/c", "-w", "json"]);
  await run(["del", "foo/c"]);
  await run(["del", "nothing"]);
  await run(["put", "foo/marker", "m1"]);
  outputs.push(await watchUntil(endpoint, ["--rev=2", "--prev-kv", "--prefix", "foo"], "m1"));
  await run(["txn"], 'mod("zoo") > "0"\n\nput zoo z2\nget zoo\n\nput zoo fail\n\n');
  await run(["txn"], 'value("zoo") = "nope"\n\nput zoo never\n\nget foo --prefix --keys-only\n\n');
  await run(["txn", "-w", "json"], 'version("foo") = "1"\n\ndel foo --prev-kv\n\n\n');
  await run(["del", "foo", "--prefix", "--prev-kv"]);
  const grant = await run(["lease", "grant", "100"]);
  const id = /lease ([0-9a-f]+) granted/.exec(grant.out)![1]!;
  await run(["put", "leased", "v", `--lease=${id}`]);
  await run(["put", "leased2", "v", `--lease=${id}`]);
  await run(["lease", "timetolive", id, "--keys"]);
  await run(["lease", "keep-alive", "--once", id]);
  await run(["lease", "list"]);
  await run(["put", "leased", "--ignore-value"]);
  await run(["get", "leased", "-w", "json"]);
  await run(["lease", "revoke", id]);
  await run(["get", "leased", "--prefix"]);
  await run(["lease", "timetolive", id]);
  await run(["lease", "revoke", id]);
  await run(["put", "x", "y", "--lease=1234"]);
  await run(["compaction", "5"]);
  await run(["get", "foo/a", "--rev=4"]);
  await run(["get", "foo/a", "--rev=5"]);
  await run(["compaction", "4"]);
  await run(["watch", "--rev=2", "foo/a"]);
  await run(["alarm", "list"]);
  await run(["defrag"]);
  await run(["snapshot", "save", join(snapshotDir, "snap.db")]);
  await run(["get", "zoo", "-w", "json"]);
  await run(["del", "a", "--from-key", "--prev-kv"]);
  await run(["get", "", "--from-key", "-w", "json"]);
  return outputs;
}

describe.runIf(hasEtcd)("etcdctl 3.4 against etcd and chainfire", () => {
  let etcd: ChildProcess | null = null;
  let etcdDir = "";
  let etcdEndpoint = "";
  let chainfire: TestServer;

  beforeAll(async () => {
    etcdDir = mkdtempSync(join(tmpdir(), "etcd-diff-"));
    const [client, peer] = [await freePort(), await freePort()];
    etcdEndpoint = `127.0.0.1:${client}`;
    etcd = spawn(
      "etcd",
      [
        "--name=diff",
        `--data-dir=${join(etcdDir, "data")}`,
        `--listen-client-urls=http://127.0.0.1:${client}`,
        `--advertise-client-urls=http://127.0.0.1:${client}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-cluster=diff=http://127.0.0.1:${peer}`,
        "--log-level=error",
      ],
      { stdio: "ignore" },
    );
    await until(async () => (await etcdctl(etcdEndpoint, ["endpoint", "health"])).code === 0, "etcd health");
    chainfire = await startTestServer();
  }, 90_000);

  afterAll(async () => {
    etcd?.kill("SIGKILL");
    await chainfire?.stop();
    rmSync(etcdDir, { recursive: true, force: true });
  });

  it("gives the same outputs for KV, txn, watch, lease and compaction sequences", async () => {
    // Proves wire and semantic compatibility with etcd as etcdctl users see it.
    const expected = await session(etcdEndpoint, etcdDir);
    const actual = await session(chainfire.endpoint, etcdDir);
    expect(actual.join("\n")).toBe(expected.join("\n"));
  }, 180_000);
});
