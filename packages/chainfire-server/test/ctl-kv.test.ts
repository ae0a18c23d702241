// chainfirectl's put/get/del/watch and endpoint commands against a single-member chainfire server.
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, ServerCredentials, type ServerDuplexStream, status } from "@grpc/grpc-js";
import { createClients, etcd } from "@photoncloud/chainfire-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../src/testing/test-server.js";
import { argify } from "../src/ctl/commands/watch-interactive.js";
import { runCtl } from "../src/ctl/program.js";
import { goQuote } from "../src/go-quote.js";
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

  it("takes the watched range from ETCDCTL_WATCH_KEY and ETCDCTL_WATCH_RANGE_END, as etcdctl", async () => {
    // Proves the variables name the range when no key is given, and etcdctl 3.4.23's refusals
    // (same words, exit 128) when they conflict with the arguments or the key is missing.
    const first = JSON.parse((await ctl([...ep, "put", "envw/a", "1", "-w", "json"])).out).header
      .revision as number;
    await ctl([...ep, "put", "envw/b", "2"]);
    await ctl([...ep, "put", "envw/c", "3"]);
    const controller = new AbortController();
    const lines: string[] = [];
    process.env.ETCDCTL_WATCH_KEY = "envw/a";
    process.env.ETCDCTL_WATCH_RANGE_END = "envw/c";
    try {
      const running = runCtl([...ep, "watch", `--rev=${first}`], {
        out: (t) => lines.push(t),
        err: (t) => lines.push(`ERR ${t}`),
        stderrIsTty: false,
        signal: controller.signal,
      });
      await until(() => lines.length >= 6, "the events in [envw/a, envw/c)");
      controller.abort();
      expect(await running).toBe(0);
      expect(lines).toEqual(["PUT", "envw/a", "1", "PUT", "envw/b", "2"]);
      const conflict = await ctl([...ep, "watch", "envw/a"]);
      expect([conflict.code, conflict.err]).toEqual([
        128,
        "Error: bad number of arguments (found conflicting environment key)\n",
      ]);
      delete process.env.ETCDCTL_WATCH_KEY;
      const endOnly = await ctl([...ep, "watch"]);
      expect([endOnly.code, endOnly.err]).toEqual([
        128,
        'Error: ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END="envw/c"\n',
      ]);
      delete process.env.ETCDCTL_WATCH_RANGE_END;
      const none = await ctl([...ep, "watch"]);
      expect([none.code, none.err]).toEqual([128, "Error: bad number of arguments\n"]);
    } finally {
      delete process.env.ETCDCTL_WATCH_KEY;
      delete process.env.ETCDCTL_WATCH_RANGE_END;
    }
  });

  it("splits watch -i request lines into words as etcdctl does", () => {
    // Proves quoted words keep their blanks and double quotes take Go's escapes. Single quotes
    // give the word between them; etcdctl 3.4.23 slices such a word by the line's word count
    // instead (a bug: `'iw/c' x` watches "i"), which is not copied.
    expect(argify(`watch "a b\\x62\\u00e9\\t\\"" 'c \\d'  e`)).toEqual(["watch", 'a bbé\t"', "c \\d", "e"]);
    expect(argify("  ")).toEqual([]);
    expect(() => argify('watch "a\\q"')).toThrow(/invalid syntax/);
    // A key given by bytes must still be text: it is refused rather than changed.
    expect(() => argify('watch "\\xff"')).toThrow(/not UTF-8/);
  });

  it("runs watch -i as etcdctl: watches and progress requests read from standard input", async () => {
    // Proves each `watch` line starts its own watch with its own flags beside the others, a
    // `progress` right after them reaches every one (each line waits for its watch to exist, as
    // etcdctl's does), a bad line is said and skipped, and the end of input ends it with exit 3.
    const first = JSON.parse((await ctl([...ep, "put", "iw/a", "1", "-w", "json"])).out).header
      .revision as number;
    const pending: string[] = [];
    let wake: (() => void) | null = null;
    let ended = false;
    const send = (line: string | null) => {
      if (line === null) ended = true;
      else pending.push(line);
      wake?.();
    };
    async function* lines(): AsyncGenerator<string> {
      for (;;) {
        if (pending.length > 0) yield pending.shift()!;
        else if (ended) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    }
    const out: string[] = [];
    const err: string[] = [];
    const running = runCtl([...ep, "watch", "-i"], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
      stderrIsTty: false,
      readLines: lines,
    });
    send(`watch iw/a --rev=${first}`);
    send('watch "iw/\\x62" --prev-kv');
    send("watch 'iw/c' iw/e");
    send("progress");
    send("frobnicate");
    send("watch --bad-flag iw/a");
    send("watch iw/a --prefix iw/z");
    const notify = `progress notify: ${first}`;
    await until(() => out.filter((l) => l === notify).length >= 3, "a notification from each watch");
    await until(() => err.length >= 3, "the bad lines said");
    await ctl([...ep, "put", "iw/b", "2"]);
    await ctl([...ep, "put", "iw/b", "3"]);
    await ctl([...ep, "put", "iw/d", "4"]);
    await until(() => out.length >= 17, "the events");
    expect(out).toEqual([
      "PUT",
      "iw/a",
      "1",
      notify,
      notify,
      notify,
      "PUT",
      "iw/b",
      "2",
      "PUT",
      "iw/b",
      "2",
      "iw/b",
      "3",
      "PUT",
      "iw/d",
      "4",
    ]);
    expect(err).toEqual([
      "Invalid command frobnicate (only support watch)",
      "Invalid command watch --bad-flag iw/a (error: unknown option '--bad-flag')",
      "Invalid command watch iw/a --prefix iw/z (a range end cannot be combined with --prefix or --from-key)",
    ]);
    send(null);
    expect(await running).toBe(3);
    expect(err.at(-1)).toBe("Error: Error reading watch request line: EOF");
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
      // etcdctl's words and its ExitInterrupted (5).
      refusal = "etcdserver: no leader";
      const noLeader = await ctl([`--endpoints=127.0.0.1:${port}`, "watch", "b"]);
      expect([noLeader.code, noLeader.err]).toEqual([
        5,
        "watch was canceled (etcdserver: no leader)\nError: watch is canceled by the server\n",
      ]);
      // In JSON, etcdctl also prints the zero response its client makes of the ended stream.
      const noLeaderJson = await ctl([`--endpoints=127.0.0.1:${port}`, "-w", "json", "watch", "b"]);
      expect([noLeaderJson.code, noLeaderJson.out]).toEqual([
        5,
        '{"Header":{},"Events":null,"CompactRevision":0,"Canceled":true,"Created":false}\n',
      ]);
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
    // etcdctl 3.4.23 exits 1 here too ("context deadline exceeded").
    expect(down.code).toBe(1);
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
  it("takes pflag's --flag=true and --flag=false on every command's boolean flags", async () => {
    // Proves scripts written for etcdctl, which spell booleans with a value, run unchanged.
    expect((await ctl([...ep, "get", "a/", "--prefix=true", "--keys-only=true"])).out).toBe(
      "a/1\n\na/2\n\na/3\n\n",
    );
    // =false turns a flag off, also after it was given: the last one wins, as with pflag.
    expect((await ctl([...ep, "get", "b", "--prefix", "--prefix=false", "--keys-only=F"])).out).toBe(
      "b\nw\n",
    );
    const bad = await ctl([...ep, "get", "b", "--prefix=maybe"]);
    expect([bad.code, bad.err]).toEqual([128, 'Error: --prefix: "maybe" is not true or false\n']);
  });

  it("refuses values past int64, a table and JSON values only, before sending anything", async () => {
    // Proves a revision or lease that cannot go on the wire is a bad argument (it made watch retry
    // for ever), and output etcdctl's KV commands do not have is refused with its exit statuses.
    const rev = await ctl([...ep, "watch", "b", "--rev", "9223372036854775808"]);
    expect([rev.code, rev.err]).toEqual([
      128,
      'Error: --rev: "9223372036854775808" is out of range (at most 9223372036854775807)\n',
    ]);
    expect((await ctl([...ep, "get", "b", "--limit=99999999999999999999"])).code).toBe(128);
    const lease = await ctl([...ep, "put", "int64/k", "v", "--lease=8000000000000000"]);
    expect([lease.code, lease.err]).toEqual([
      128,
      'Error: --lease "8000000000000000" is out of range (at most 7fffffffffffffff)\n',
    ]);
    for (const args of [
      ["put", "int64/k", "v"],
      ["get", "b"],
      ["del", "b"],
      ["watch", "b"],
    ]) {
      const table = await ctl([...ep, "-w", "table", ...args]);
      expect([table.code, table.err]).toEqual([4, "Error: table not supported as output format\n"]);
    }
    const valuesJson = await ctl([...ep, "get", "b", "--print-value-only", "-w", "json"]);
    expect([valuesJson.code, valuesJson.err]).toEqual([
      128,
      "Error: --print-value-only is only for --write-out=simple\n",
    ]);
    // Nothing was written or deleted.
    expect((await ctl([...ep, "get", "int64/", "--prefix", "--count-only"])).out).toBe("0\n");
    expect((await ctl([...ep, "get", "b", "--print-value-only"])).out).toBe("w\n");
  });

  it("prints JSON as etcdctl does: zero fields left out, and watch responses as its Go struct", async () => {
    // Proves `-w json` output can be read with the same jq filters as etcdctl's.
    const missing = JSON.parse((await ctl([...ep, "get", "no/such/key", "-w", "json"])).out);
    expect(Object.keys(missing)).toEqual(["header"]);
    expect(Object.keys(missing.header).sort()).toEqual(["cluster_id", "member_id", "raft_term", "revision"]);
    const put = JSON.parse((await ctl([...ep, "put", "j/k", "v", "-w", "json"])).out);
    expect(Object.keys(put)).toEqual(["header"]);
    const got = JSON.parse((await ctl([...ep, "get", "j/k", "-w", "json"])).out);
    expect(got.count).toBe(1);
    expect(got.more).toBeUndefined();
    expect(got.kvs[0].lease).toBeUndefined();
    expect(got.kvs[0].value).toBe(Buffer.from("v").toString("base64"));
    const first = put.header.revision as number;
    await ctl([...ep, "del", "j/k"]);
    const controller = new AbortController();
    const lines: string[] = [];
    const running = runCtl([...ep, "-w", "json", "watch", "j/", "--prefix", `--rev=${first}`], {
      out: (t) => lines.push(t),
      err: (t) => lines.push(`ERR ${t}`),
      stderrIsTty: false,
      signal: controller.signal,
    });
    const responses = () => lines.map((line) => JSON.parse(line));
    await until(() => responses().flatMap((res) => res.Events ?? []).length >= 2, "the watch's history");
    controller.abort();
    expect(await running).toBe(0);
    const events = responses().flatMap((res) => {
      expect(Object.keys(res)).toEqual(["Header", "Events", "CompactRevision", "Canceled", "Created"]);
      expect([res.CompactRevision, res.Canceled, res.Created]).toEqual([0, false, false]);
      return res.Events;
    });
    // A PUT has no "type" (its value is the zero), a DELETE has type 1 and a key-value of its key
    // and revision only.
    expect(events[0].type).toBeUndefined();
    expect(events[0].kv.key).toBe(Buffer.from("j/k").toString("base64"));
    expect(events[1].type).toBe(1);
    expect(Object.keys(events[1].kv).sort()).toEqual(["key", "mod_revision"]);
  });

  it("runs the command after -- for each event with the event in its environment, as etcdctl", async () => {
    // Proves `watch <key> -- <command>`: one run per event, in order, with ETCD_WATCH_* set; a
    // failing command ends the watch with exit 1, and a -- with nothing after it is a bad argument.
    const dir = await mkdtemp(join(tmpdir(), "ctl-watch-exec-"));
    try {
      const file = join(dir, "events");
      const record = `printf '%s|%s|%s|%s\\n' "$ETCD_WATCH_REVISION" "$ETCD_WATCH_EVENT_TYPE" "$ETCD_WATCH_KEY" "$ETCD_WATCH_VALUE" >> ${file}`;
      const first = JSON.parse((await ctl([...ep, "put", "x/a", "one", "-w", "json"])).out).header
        .revision as number;
      await ctl([...ep, "put", "x/a", 'say "hi"\n']);
      const last = JSON.parse((await ctl([...ep, "del", "x/a", "-w", "json"])).out).header.revision as number;
      const controller = new AbortController();
      const out: string[] = [];
      const running = runCtl([...ep, "watch", "x/", "--prefix", `--rev=${first}`, "--", "sh", "-c", record], {
        out: (t) => out.push(t),
        err: (t) => out.push(`ERR ${t}`),
        stderrIsTty: false,
        signal: controller.signal,
      });
      const recorded = () => {
        try {
          return readFileSync(file, "utf8")
            .split("\n")
            .filter((l) => l !== "");
        } catch {
          return [];
        }
      };
      await until(() => recorded().length >= 3, "three runs of the watch command");
      controller.abort();
      expect(await running).toBe(0);
      const [put1, put2, del] = recorded().map((l) => l.split("|"));
      // ETCD_WATCH_REVISION is the response's revision, as etcdctl sets it: the store's revision
      // when these history events were sent.
      expect(put1).toEqual([String(last), '"PUT"', '"x/a"', '"one"']);
      expect(put2!.slice(1)).toEqual(['"PUT"', '"x/a"', '"say \\"hi\\"\\n"']);
      expect(del!.slice(1)).toEqual(['"DELETE"', '"x/a"', '""']);
      // The watch printed its events as well, and the command words were not taken as a range end.
      expect(out.slice(0, 3)).toEqual(["PUT", "x/a", "one"]);
      const failing = await ctl([...ep, "watch", "x/", "--prefix", `--rev=${first}`, "--", "false"]);
      expect([failing.code, failing.err]).toEqual([1, 'command ["false"] error (exit status 1)\n']);
      const missing = await ctl([...ep, "watch", "x/", "--"]);
      expect(missing.code).toBe(128);
      expect(missing.err).toContain("nothing follows the separator --");
      // Before the command word, -- keeps its usual meaning: what follows is operands.
      expect((await ctl([...ep, "get", "--", "-dash"])).code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("quotes keys and values for a watch command's environment as Go's %q does", () => {
    // Proves the ETCD_WATCH_KEY/VALUE spelling hooks written for etcdctl parse.
    expect(goQuote(Buffer.from('a"b\\c\n\t\x00\x7f'))).toBe('"a\\"b\\\\c\\n\\t\\x00\\x7f"');
    expect(goQuote(Buffer.from("é水😀 \u200b"))).toBe('"é水😀 \\u200b"');
    expect(goQuote(Buffer.from([0x61, 0xff, 0xc3]))).toBe('"a\\xff\\xc3"');
    // U+FEFF anywhere is a character like another (not a byte-order mark to drop).
    expect(goQuote(Buffer.from([0xef, 0xbb, 0xbf, 0x78]))).toBe('"\\ufeffx"');
  });

  it("ends a watch whose start was compacted as etcdctl does, with exit status 5", async () => {
    // Proves a server-side cancel is said on stderr in etcdctl 3.4.23's words, its JSON response
    // carries the compact revision, and the exit status is the one scripts check for etcdctl
    // (ExitInterrupted). Last in this file: it compacts the shared history.
    const clients = createClients(server.endpoint);
    try {
      const revision = JSON.parse((await ctl([...ep, "put", "compact/k", "v", "-w", "json"])).out).header
        .revision as number;
      await new Promise<void>((resolve, reject) =>
        clients.kv.compact({ revision: BigInt(revision), physical: true }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      const watched = await ctl([...ep, "watch", "compact/k", "--rev=1"]);
      expect([watched.code, watched.err]).toEqual([
        5,
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n" +
          "Error: watch is canceled by the server\n",
      ]);
      const json = await ctl([...ep, "-w", "json", "watch", "compact/k", "--rev=1"]);
      expect(json.code).toBe(5);
      const res = JSON.parse(json.out);
      expect([res.Events, res.CompactRevision, res.Canceled]).toEqual([[], revision, true]);
    } finally {
      clients.close();
    }
  });
});
