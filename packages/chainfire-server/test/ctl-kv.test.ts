// chainfirectl's put/get/del/watch and endpoint commands against a single-member chainfire server.
import { Server, ServerCredentials, type ServerDuplexStream, status } from "@grpc/grpc-js";
import { etcd } from "@photoncloud/chainfire-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../src/testing/test-server.js";
import { runCtl } from "../src/ctl/program.js";
import { ctl, until } from "../src/ctl/testing.js";

let server: TestServer;
let ep: string[];

beforeAll(async () => {
  server = await startTestServer();
  ep = [`--endpoints=${server.endpoint}`];
  for (const [k, v] of [
    ["a/1", "x"],
    ["a/2", "z"],
    ["a/3", "y"],
    ["b", "w"],
  ]) {
    expect((await ctl([...ep, "put", k!, v!])).out).toBe("OK\n");
  }
});

afterAll(async () => {
  await server.stop();
});

describe("chainfirectl kv", () => {
  it("gets by prefix, from-key, limit, sort and keys-only like etcdctl", async () => {
    // Proves the range flags map to the RangeRequest fields an etcd user expects.
    expect((await ctl([...ep, "get", "a/", "--prefix"])).out).toBe("a/1\nx\na/2\nz\na/3\ny\n");
    // --keys-only prints each key then an empty value line, as etcdctl does.
    expect((await ctl([...ep, "get", "a/3", "--from-key", "--keys-only"])).out).toBe("a/3\n\nb\n\n");
    expect((await ctl([...ep, "get", "a/", "--prefix", "--limit=1", "--print-value-only"])).out).toBe("x\n");
    const sorted = await ctl([
      ...ep,
      "get",
      "a/",
      "--prefix",
      "--sort-by=VALUE",
      "--order=DESCEND",
      "--keys-only",
    ]);
    expect(sorted.out).toBe("a/2\n\na/3\n\na/1\n\n");
    expect((await ctl([...ep, "get", "a/", "--prefix", "--count-only"])).out).toBe("3\n");
    expect((await ctl([...ep, "get", "a/1", "a/3", "--consistency=s", "--keys-only"])).out).toBe(
      "a/1\n\na/2\n\n",
    );
  });

  it("prints keys and values as \\x bytes with --hex, as etcdctl", async () => {
    // Proves --hex (and ETCDCTL_HEX) reach every printed key and value, prev_kv included.
    expect((await ctl([...ep, "--hex", "get", "a/1"])).out).toBe("\\x61\\x2f\\x31\n\\x78\n");
    expect((await ctl([...ep, "--hex=true", "get", "b", "--print-value-only"])).out).toBe("\\x77\n");
    expect((await ctl([...ep, "--hex=false", "get", "b", "--print-value-only"])).out).toBe("w\n");
    const put = await ctl([...ep, "--hex", "put", "hx", "\u00ff", "--prev-kv"]);
    expect(put.out).toBe("OK\n");
    const again = await ctl([...ep, "--hex", "put", "hx", "v", "--prev-kv"]);
    expect(again.out).toBe("OK\n\\x68\\x78\n\\xc3\\xbf\n");
    try {
      process.env.ETCDCTL_HEX = "true";
      expect((await ctl([...ep, "get", "hx", "--print-value-only"])).out).toBe("\\x76\n");
      process.env.ETCDCTL_HEX = "maybe";
      const bad = await ctl([...ep, "get", "hx"]);
      expect([bad.code, bad.err]).toEqual([128, 'Error: ETCDCTL_HEX: "maybe" is not true or false\n']);
    } finally {
      delete process.env.ETCDCTL_HEX;
    }
    const badFlag = await ctl([...ep, "--hex=yes", "get", "hx"]);
    expect([badFlag.code, badFlag.err]).toEqual([128, 'Error: --hex: "yes" is not true or false\n']);
  });

  it("accepts --user, going on without a token since the server has no authentication", async () => {
    // Proves an etcdctl habit (scripts that always pass a user) works: Authenticate answers that
    // authentication is not enabled, and the command runs. As with etcdctl, a --password without
    // --user is ignored, and with --password a colon in --user is part of the name.
    for (const user of [
      ["--user=root:secret"],
      ["--user=root", "--password=secret"],
      ["--user=root"],
      ["--password=secret"],
      ["--user=root:x", "--password=y"],
    ]) {
      const run = await ctl([...ep, ...user, "get", "b", "--print-value-only"]);
      expect([run.code, run.out, run.err]).toEqual([0, "w\n", ""]);
    }
    const watched = new AbortController();
    const lines: string[] = [];
    const watching = runCtl([...ep, "--user=root:secret", "watch", "b", "--rev=1"], {
      out: (t) => lines.push(t),
      err: (t) => lines.push(`ERR ${t}`),
      stderrIsTty: false,
      signal: watched.signal,
    });
    await until(() => lines.length >= 3, "the watched key's history");
    watched.abort();
    expect(await watching).toBe(0);
    expect(lines.slice(0, 3)).toEqual(["PUT", "b", "w"]);
  });

  it("reads an old revision and prints JSON with exact 64-bit fields and base64 keys", async () => {
    // Proves --rev reaches history and -w json carries revisions as exact integers.
    const put = await ctl([...ep, "put", "a/1", "x2", "--prev-kv"]);
    expect(put.out).toBe("OK\na/1\nx\n");
    const json = JSON.parse((await ctl([...ep, "get", "a/1", "-w", "json"])).out);
    expect(json.kvs[0].key).toBe(Buffer.from("a/1").toString("base64"));
    expect(json.kvs[0].version).toBe(2);
    const modRevision = json.kvs[0].mod_revision as number;
    expect((await ctl([...ep, "get", "a/1", `--rev=${modRevision - 1}`, "--print-value-only"])).out).toBe(
      "x\n",
    );
  });

  it("deletes a prefix printing the count and previous values, and reads put values from stdin", async () => {
    // Proves del --prev-kv and put without a value argument.
    expect((await ctl([...ep, "put", "c/1"], { stdin: "from-stdin" })).code).toBe(0);
    expect((await ctl([...ep, "get", "c/1", "--print-value-only"])).out).toBe("from-stdin\n");
    expect((await ctl([...ep, "del", "c/", "--prefix", "--prev-kv"])).out).toBe("1\nc/1\nfrom-stdin\n");
    // As etcdctl: stdin's bytes are the value as they are, binary ones too, and printed unchanged.
    const binary = Buffer.from([0x0a, 0x00, 0xff, 0xfe, 0x6b, 0x0a]);
    expect((await ctl([...ep, "put", "c/bin"], { stdin: binary })).code).toBe(0);
    const got = await ctl([...ep, "get", "c/bin", "--print-value-only"]);
    expect(got.outBytes).toEqual(Buffer.concat([binary, Buffer.from("\n")]));
    const empty = await ctl([...ep, "put", "c/none"], { stdin: "" });
    expect([empty.code, empty.err]).toEqual([
      128,
      "Error: put needs a value: none given and stdin is empty\n",
    ]);
    expect((await ctl([...ep, "del", "nothing"])).out).toBe("0\n");
  });

  it("watches from a past revision with previous values until interrupted", async () => {
    // Proves watch --rev catches up history, streams live events and stops cleanly on Ctrl-C.
    const first = JSON.parse((await ctl([...ep, "put", "w/k", "v1", "-w", "json"])).out).header
      .revision as number;
    const controller = new AbortController();
    const lines: string[] = [];
    const running = runCtl([...ep, "watch", "w/", "--prefix", `--rev=${first}`, "--prev-kv"], {
      out: (t) => lines.push(t),
      err: (t) => lines.push(`ERR ${t}`),
      stderrIsTty: false,
      signal: controller.signal,
    });
    await until(() => lines.length >= 3, "the historical event");
    await ctl([...ep, "put", "w/k", "v2"]);
    await until(() => lines.length >= 8, "the live event");
    controller.abort();
    expect(await running).toBe(0);
    expect(lines).toEqual(["PUT", "w/k", "v1", "PUT", "w/k", "v1", "w/k", "v2"]);
  });

  it("moves a watch on from an endpoint that refuses it, saying so once, without asking in a loop", async () => {
    // Proves a watch refused with a code etcd's client retries (here a learner's answer) goes to the
    // next endpoint after a pause, printing one line on stderr, instead of spinning on the first.
    const refusing = new Server();
    let attempts = 0;
    let refusal = "etcdserver: rpc not supported for learner";
    refusing.addService(etcd.WatchService, {
      watch: (call: ServerDuplexStream<etcd.WatchRequest, etcd.WatchResponse>) => {
        attempts++;
        call.emit("error", {
          code: status.UNAVAILABLE,
          details: refusal,
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      refusing.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    try {
      const controller = new AbortController();
      const out: string[] = [];
      const err: string[] = [];
      const running = runCtl([`--endpoints=127.0.0.1:${port},${server.endpoint}`, "watch", "b", "--rev=1"], {
        out: (t) => out.push(t),
        err: (t) => err.push(t),
        stderrIsTty: false,
        signal: controller.signal,
      });
      await until(() => out.length >= 3, "the history from the second endpoint");
      controller.abort();
      expect(await running).toBe(0);
      expect(out.slice(0, 3)).toEqual(["PUT", "b", "w"]);
      expect(err).toEqual([
        `watch on 127.0.0.1:${port} failed (etcdserver: rpc not supported for learner); trying the endpoints again`,
      ]);
      expect(attempts).toBe(1);
      // With that endpoint alone the watch keeps asking it, after pauses, and says so only once.
      const alone = new AbortController();
      const aloneErr: string[] = [];
      const waiting = runCtl([`--endpoints=127.0.0.1:${port}`, "watch", "b"], {
        out: (t) => aloneErr.push(`OUT ${t}`),
        err: (t) => aloneErr.push(t),
        stderrIsTty: false,
        signal: alone.signal,
      });
      await until(() => attempts >= 4, "the refusing endpoint asked again");
      alone.abort();
      expect(await waiting).toBe(0);
      expect(aloneErr).toEqual([
        `watch on 127.0.0.1:${port} failed (etcdserver: rpc not supported for learner); trying the endpoints again`,
      ]);
      // "no leader", the answer to the watch's hasleader, ends it, as it ends etcdctl's watch.
      refusal = "etcdserver: no leader";
      const noLeader = await ctl([`--endpoints=127.0.0.1:${port}`, "watch", "b"]);
      expect([noLeader.code, noLeader.err]).toEqual([1, "Error: etcdserver: no leader\n"]);
    } finally {
      refusing.forceShutdown();
    }
  });

  it("reports endpoint status and health per endpoint in every output format", async () => {
    // Proves the endpoint commands read each member's own Status and commit a read through it.
    const simple = (await ctl([...ep, "endpoint", "status"])).out.trim().split(", ");
    expect(simple[0]).toBe(server.endpoint);
    // etcdctl prints member IDs with %x: lower-case hex, no leading zeros.
    expect(simple[1]).toMatch(/^[1-9a-f][0-9a-f]{0,15}$/);
    expect(simple[4]).toBe("true");
    const table = (await ctl([...ep, "endpoint", "status", "-w", "table"])).out;
    expect(table).toContain("RAFT APPLIED INDEX");
    const json = JSON.parse((await ctl([...ep, "endpoint", "status", "-w", "json"])).out);
    expect(json[0].Endpoint).toBe(server.endpoint);
    // etcdctl's field names: the proto's own (camel case in StatusResponse, snake case in its header).
    expect(Object.keys(json[0].Status)).toEqual(
      expect.arrayContaining(["header", "dbSize", "raftIndex", "raftTerm"]),
    );
    expect(Object.keys(json[0].Status.header).sort()).toEqual([
      "cluster_id",
      "member_id",
      "raft_term",
      "revision",
    ]);
    const health = await ctl([...ep, "endpoint", "health"]);
    expect(health.code).toBe(0);
    expect(health.out).toMatch(
      new RegExp(`^${server.endpoint} is healthy: successfully committed proposal: took = `),
    );
    expect(JSON.parse((await ctl([...ep, "endpoint", "health", "-w", "json"])).out)[0].health).toBe(true);
  });
});

describe("chainfirectl errors", () => {
  it("moves on from an endpoint that is down, and reads etcdctl's environment variables", async () => {
    // Proves two things an etcdctl user relies on: with several --endpoints the first one that
    // connects serves the command; ETCDCTL_ENDPOINTS and ETCDCTL_WRITE_OUT work, below the flags.
    const down = "127.0.0.1:1";
    const put = await ctl([`--endpoints=${down},${server.endpoint}`, "--dial-timeout=3s", "put", "fo", "1"]);
    expect([put.code, put.out]).toEqual([0, "OK\n"]);
    try {
      process.env.ETCDCTL_ENDPOINTS = server.endpoint;
      process.env.ETCDCTL_WRITE_OUT = "json";
      const viaEnv = await ctl(["get", "fo"]);
      expect(JSON.parse(viaEnv.out).count).toBe(1);
      const flagWins = await ctl(["--write-out=simple", "get", "fo"]);
      expect(flagWins.out).toBe("fo\n1\n");
    } finally {
      delete process.env.ETCDCTL_ENDPOINTS;
      delete process.env.ETCDCTL_WRITE_OUT;
    }
  });

  it("answers bad flags, bad endpoints and unreachable servers with one clear line and a non-zero exit", async () => {
    // Proves an operator mistake is named on stderr, exits non-zero, and changes nothing.
    const sort = await ctl([...ep, "get", "a", "--sort-by=SIZE"]);
    expect(sort.code).toBe(128);
    expect(sort.err).toContain("--sort-by must be KEY, VERSION, CREATE, MODIFY or VALUE");
    const bad = await ctl(["--endpoints=not an endpoint", "get", "a"]);
    expect(bad.code).toBe(128);
    expect(bad.err).toContain('--endpoints: "not an endpoint" is not host:port');
    const down = await ctl([
      "--endpoints=127.0.0.1:1",
      "--command-timeout=3s",
      "--dial-timeout=3s",
      "get",
      "a",
    ]);
    expect(down.code).toBe(2);
    expect(down.err).toMatch(/127\.0\.0\.1:1/);
    const statusDown = await ctl([
      `--endpoints=${server.endpoint},127.0.0.1:1`,
      "--command-timeout=3s",
      "--dial-timeout=3s",
      "endpoint",
      "health",
    ]);
    expect(statusDown.code).toBe(1);
    expect(statusDown.out).toContain(`${server.endpoint} is healthy`);
    expect(statusDown.err).toContain("127.0.0.1:1 is unhealthy");
    // endpoint status, as etcdctl: the answering endpoint's row, a line for the other, exit 1.
    const oneDown = await ctl([
      `--endpoints=${server.endpoint},127.0.0.1:1`,
      "--command-timeout=3s",
      "--dial-timeout=3s",
      "endpoint",
      "status",
    ]);
    expect(oneDown.code).toBe(1);
    expect(oneDown.out).toMatch(new RegExp(`^${server.endpoint}, [0-9a-f]+, `));
    expect(oneDown.err.trim()).toMatch(/^Failed to get the status of endpoint 127\.0\.0\.1:1 \([^\n]+\)$/);
    const empty = await ctl([...ep, "put", "", "v"]);
    expect(empty.code).toBe(128);
    // Go's durations, as etcdctl takes them: a unit is needed, and units combine.
    const bare = await ctl([...ep, "--dial-timeout=5", "get", "k"]);
    expect(bare.code).toBe(128);
    expect(bare.err).toContain('--dial-timeout: "5" is not a duration with its unit (e.g. 5s, 500ms, 1m30s)');
    expect((await ctl([...ep, "--command-timeout=1m30s", "get", "k"])).code).toBe(0);
    // A missing argument is a bad argument (etcdctl's 128), as its commands check their own.
    const noKey = await ctl([...ep, "get"]);
    expect(noKey.code).toBe(128);
    expect(noKey.err).toContain("missing required argument");
    const lease = await ctl([...ep, "put", "k", "v", "--lease=zz"]);
    expect(lease.err).toContain('--lease "zz" is not a hex ID');
    const unknown = await ctl([...ep, "frobnicate"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.err).toContain("unknown command");
    expect((await ctl([...ep, "get", "k"])).out).toBe("");
  });
});
