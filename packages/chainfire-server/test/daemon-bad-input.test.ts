// Proves that bad input gets a clear error and changes nothing: empty key, oversize request, too
// many txn ops, duplicate txn keys, compacted revision, unknown member, malformed URLs, a full
// backend (NOSPACE alarm), and bad flags or config (the daemon exits 2 naming the key, creating nothing).
// The limits of the first member come from a --config-file, so its keys are proven to take effect.
import { createHash } from "node:crypto";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect as http2Connect, constants as http2Constants } from "node:http2";
import { request as httpRequest } from "node:http";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import type { chainfirev1, etcd } from "@photoncloud/chainfire-api";
import { checkHealth, listServices } from "@photoncloud/daemon";
import { freePort, HTTP2_OPENING } from "@photoncloud/daemon/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dataDirLayout } from "../src/daemon/data-dir.js";
import { rangeRequest } from "../src/mvcc/messages.js";
import { MvccStore } from "../src/mvcc/store.js";
import { restoreSnapshot } from "../src/snapshot/restore.js";
import { entriesFor } from "../src/testing/commands.js";
import { call, DaemonCluster, type Member, put, runDaemonToExit, until } from "./support/daemon-cluster.js";

const cluster = new DaemonCluster({ token: "bad-input-test" });
let m: Member;
let small: Member;
const b = (s: string) => Buffer.from(s);

beforeAll(async () => {
  m = await cluster.allocate("solo");
  small = await cluster.allocate("small");
  // The limits come from a TOML config file with the flags' keys (what the KV tests below rely on).
  const soloConfig = join(cluster.root, "solo.toml");
  writeFileSync(soloConfig, 'max-request-bytes = "64KiB"\nmax-txn-ops = 4\n');
  await Promise.all([
    cluster.start("solo", {
      initialCluster: cluster.initialCluster(["solo"]),
      extraFlags: ["--config-file", soloConfig],
    }),
    cluster.start("small", {
      initialCluster: cluster.initialCluster(["small"]),
      extraFlags: ["--quota-backend-bytes", "256KiB"],
    }),
  ]);
  await Promise.all([cluster.leaderId([m]), cluster.leaderId([small])]);
  // Each member publishes its client URLs once it leads; the membership checks compare lists after that.
  await until(async () => (await members())[0]?.clientUrls.length === 1, "solo to publish its client URLs");
}, 180_000);

afterAll(() => cluster.close());

async function revision(member: Member): Promise<bigint> {
  return (await cluster.status(member)).header!.revision;
}

async function members(): Promise<chainfirev1.Member[]> {
  return (await call<chainfirev1.MemberListResponse>(m.clients.operator, "memberList", {})).members;
}

/** How many keys a lock's queue holds (the holder's and the waiters'), read through the gateway. */
async function lockersQueued(base: string, lock: string): Promise<number> {
  const res = await fetch(`${base}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({
      key: Buffer.from(`${lock}/`).toString("base64"),
      range_end: Buffer.from(`${lock}0`).toString("base64"),
      count_only: true,
    }),
  });
  return Number(((await res.json()) as { count?: string }).count ?? 0);
}

const putOp = (key: string): etcd.RequestOp => ({
  requestPut: {
    key: b(key),
    value: b("v"),
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  },
});

describe("bad requests on a running member", { timeout: 150_000 }, () => {
  it("refuses KV input with etcd's errors and consumes no revision", async () => {
    // Proves the KV input checks end to end through the daemon; the revision never moves.
    await put(m, "k", "1");
    const before = await revision(m);
    await expect(put(m, "", "x")).rejects.toMatchObject({
      code: 3,
      details: "etcdserver: key is not provided",
    });
    await expect(put(m, "big", "x".repeat(100 * 1024))).rejects.toMatchObject({
      code: 3,
      details: "etcdserver: request is too large",
    });
    // Beyond the gRPC frame limit (request limit + etcd's 512 KiB overhead) the transport refuses it.
    await expect(put(m, "huge", "x".repeat(1024 * 1024))).rejects.toMatchObject({ code: 8 });
    await expect(
      call(m.clients.kv, "txn", { compare: [], success: ["a", "b", "c", "d", "e"].map(putOp), failure: [] }),
    ).rejects.toMatchObject({ code: 3, details: "etcdserver: too many operations in txn request" });
    await expect(
      call(m.clients.kv, "txn", { compare: [], success: [putOp("dup"), putOp("dup")], failure: [] }),
    ).rejects.toMatchObject({ code: 3, details: "etcdserver: duplicate key given in txn request" });
    expect(await revision(m)).toBe(before);
  });

  it("makes its data dir readable by its own user only, as etcd does", async () => {
    // Proves the store's file (every key and value) is not left open to other users: the data dir
    // a first start creates has mode 0700 (it had the umask's 0755, and mvcc.db 0644).
    expect((statSync(m.dataDir).mode & 0o777).toString(8)).toBe("700");
    expect((statSync(small.dataDir).mode & 0o777).toString(8)).toBe("700");
  });

  it("refuses a first start that joins a cluster which has not added the member, or where no peer answers", async () => {
    // Proves etcd's check before a member's first start with --initial-cluster-state existing: the
    // running cluster's member list must have its peer URL, else exit 2 naming the fix, and no data
    // dir is left. Before, it started under the ID its name derives, was never let in, said it was
    // removed and exited 0, and its next start served an empty store.
    const [peer, client] = [await freePort(), await freePort()];
    const dir = join(cluster.root, "joiner");
    const own = `http://127.0.0.1:${peer}`;
    const args = (initialCluster: string) => [
      "--name",
      "joiner",
      "--data-dir",
      dir,
      "--initial-cluster-token",
      "bad-input-test",
      "--listen-peer-urls",
      own,
      "--initial-advertise-peer-urls",
      own,
      "--listen-client-urls",
      `http://127.0.0.1:${client}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${client}`,
      "--initial-cluster-state",
      "existing",
      "--initial-cluster",
      initialCluster,
    ];
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const [notAdded, unanswered] = await Promise.all([
      runDaemonToExit(args(`solo=${cluster.peerUrl(m)},joiner=${own}`)),
      runDaemonToExit(args(`gone=${nobody},joiner=${own}`)),
    ]);
    expect(notAdded.code).toBe(2);
    expect(notAdded.stderr).toContain(
      "--initial-cluster-state: existing joins a running cluster, but its member list has no member " +
        `with this member's peer URL (${own}): add it first (etcdctl member add joiner --peer-urls=${own}), then start it`,
    );
    expect(unanswered.code).toBe(2);
    expect(unanswered.stderr).toContain(
      `--initial-cluster: no member at its other peer URLs (${nobody}) answered within 10 s`,
    );
    expect(existsSync(dir)).toBe(false);
    expect((await members()).map((x) => x.name)).toEqual(["solo"]);
  });

  it("refuses a compacted revision with OUT_OF_RANGE", async () => {
    // Proves reads at a compacted revision fail clearly while current reads still work.
    const first = (await put(m, "c", "1")).header!.revision;
    await put(m, "c", "2");
    const last = (await put(m, "c", "3")).header!.revision;
    await call(m.clients.kv, "compact", { revision: last, physical: true });
    await expect(
      call(m.clients.kv, "range", rangeRequest({ key: b("c"), revision: first })),
    ).rejects.toMatchObject({ code: 11, details: "etcdserver: mvcc: required revision has been compacted" });
    const now = await call<etcd.RangeResponse>(m.clients.kv, "range", rangeRequest({ key: b("c") }));
    expect(now.kvs[0]!.value.toString()).toBe("3");
  });

  it("refuses unknown members and malformed URLs on both membership APIs, changing nothing", async () => {
    // Proves the membership error paths: NOT_FOUND for unknown IDs, INVALID_ARGUMENT for bad URLs.
    const before = await members();
    const unknown = 0x1234_5678n;
    await expect(call(m.clients.cluster, "memberRemove", { ID: unknown })).rejects.toMatchObject({
      code: 5,
      details: "etcdserver: member not found",
    });
    await expect(call(m.clients.cluster, "memberPromote", { ID: unknown })).rejects.toMatchObject({
      code: 5,
    });
    for (const targetID of [unknown, 0n]) {
      await expect(call(m.clients.maintenance, "moveLeader", { targetID })).rejects.toMatchObject({
        code: 9,
        details: "etcdserver: bad leader transferee",
      });
    }
    await expect(call(m.clients.operator, "memberRemove", { id: unknown })).rejects.toMatchObject({
      code: 5,
    });
    await expect(
      call(m.clients.cluster, "memberAdd", { peerURLs: ["127.0.0.1:2380"], isLearner: true }),
    ).rejects.toMatchObject({ code: 3, details: "etcdserver: given member URLs are invalid" });
    const bad = await call(m.clients.operator, "memberAdd", {
      id: 0n,
      name: "x",
      peerUrls: ["http//127.0.0.1:1"],
      clientUrls: [],
      isLearner: true,
    }).catch((err: { code: number; details: string }) => err);
    expect(bad).toMatchObject({ code: 3 });
    expect((bad as { details: string }).details).toMatch(/http\/\/127\.0\.0\.1:1/);
    expect(await members()).toEqual(before);
  });

  it("tells a client that requires a leader that a cut-off member has none, as etcd does", async () => {
    // Proves hasleader (clientv3.WithRequireLeader) on a member whose cluster never formed: unary
    // calls and watch streams are refused with "no leader"; calls that did not ask are served, a
    // serializable read-only txn among them.
    await Promise.all(["lone", "ghost1", "ghost2"].map((n) => cluster.allocate(n)));
    const lone = await cluster.start("lone", {
      initialCluster: cluster.initialCluster(["lone", "ghost1", "ghost2"]),
    });
    const st = await cluster.status(lone);
    expect([st.leader, st.errors]).toEqual([0n, ["etcdserver: no leader"]]);
    const requireLeader = new Metadata();
    requireLeader.set("hasleader", "true");
    const range = (md: Metadata) =>
      new Promise<etcd.RangeResponse>((resolve, reject) =>
        lone.clients.kv.range(
          rangeRequest({ key: Buffer.from("k"), serializable: true }),
          md,
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      );
    await expect(range(requireLeader)).rejects.toMatchObject({ code: 14, details: "etcdserver: no leader" });
    expect((await range(new Metadata())).count).toBe(0n);
    // A txn of serializable ranges only, or of none, needs no leader either (etcd serves it locally).
    const txn = (ops: etcd.RequestOp[]) =>
      new Promise<etcd.TxnResponse>((resolve, reject) =>
        lone.clients.kv.txn(
          { compare: [], success: ops, failure: [] },
          new Metadata(),
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      );
    const serializable = { requestRange: rangeRequest({ key: Buffer.from("k"), serializable: true }) };
    expect((await txn([serializable, serializable])).responses).toHaveLength(2);
    expect((await txn([])).succeeded).toBe(true);
    const watchError = await new Promise<unknown>((resolve) => {
      const stream = lone.clients.watch.watch(requireLeader);
      stream.on("error", resolve);
      stream.on("data", () => {});
    });
    expect(watchError).toMatchObject({ code: 14, details: "etcdserver: no leader" });
    const keepAliveError = await new Promise<unknown>((resolve) => {
      const stream = lone.clients.lease.leaseKeepAlive(requireLeader);
      stream.on("error", resolve);
      stream.on("data", () => {});
      // Refused when opened, as etcd's stream interceptor refuses it, before any keep-alive is sent.
    });
    expect(keepAliveError).toMatchObject({ code: 14, details: "etcdserver: no leader" });
    await cluster.stop("lone", "SIGKILL");
  });

  it("reports the committed index as Status's raftIndex, as etcd does, not entries it cannot commit", async () => {
    // Proves etcd's raftIndex on a leader that lost its quorum: a put it appends but cannot commit
    // grows its log (chainfire.v1's Status reports the last index) but not the committed index.
    const names = ["q1", "q2", "q3"];
    await Promise.all(names.map((n) => cluster.allocate(n)));
    const started = await Promise.all(
      ["q1", "q2"].map((n) => cluster.start(n, { initialCluster: cluster.initialCluster(names) })),
    );
    const leaderId = await cluster.leaderId(started);
    await put(started[0]!, "committed", "v");
    const leader = await cluster.memberNamed(leaderId);
    const follower = started.find((x) => x !== leader)!;
    const lastIndex = async () =>
      (await call<chainfirev1.StatusResponse>(leader.clients.operator, "status", {})).raftIndex;
    // Once the members' own entries (each publishing its client URLs) are committed, the leader's
    // log is quiet and its committed index is its last.
    const before = await until(async () => {
      const status = await cluster.status(leader);
      return status.raftIndex === (await lastIndex()) ? status : undefined;
    }, "the leader's last entry committed");
    await cluster.stop(follower.name, "SIGKILL");
    await expect(put(leader, "uncommitted", "v", 1500)).rejects.toMatchObject({ code: 4 });
    expect(await lastIndex()).toBeGreaterThan(before.raftIndex);
    const after = await cluster.status(leader);
    expect([after.raftIndex, after.raftAppliedIndex]).toEqual([before.raftIndex, before.raftAppliedIndex]);
    await cluster.stop(leader.name, "SIGKILL");
  });

  it("compacts the history on its own with --auto-compaction-retention, as etcd does", async () => {
    // Proves periodic auto-compaction end to end: with a 1-s retention the leader compacts through
    // the log, and a read of the first revisions then answers "compacted".
    const auto = await cluster.allocate("auto");
    await cluster.start("auto", {
      initialCluster: cluster.initialCluster(["auto"]),
      extraFlags: ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"],
    });
    await cluster.leaderId([auto]);
    for (let i = 0; i < 5; i++) await put(auto, "history", String(i));
    const firstPut = (await cluster.status(auto)).header!.revision - 4n;
    const read = () =>
      call<etcd.RangeResponse>(
        auto.clients.kv,
        "range",
        rangeRequest({ key: b("history"), revision: firstPut }),
      );
    await until(
      () =>
        read().then(
          () => undefined,
          (err: { details?: string }) => (err.details?.includes("compacted") ? true : undefined),
        ),
      "the first put's revision to be compacted",
    );
    await cluster.stop("auto");
  });

  it("logs and counts slow applies past --experimental-warning-apply-duration, naming no value", async () => {
    // Proves etcd's "apply request took too long" warning end to end: at a threshold of 0 every
    // apply is slow, the warning names the key and the value's size, the value is nowhere in the
    // log, and etcd_server_slow_apply_total counts them.
    const slow = await cluster.allocate("slow");
    await cluster.start("slow", {
      initialCluster: cluster.initialCluster(["slow"]),
      extraFlags: ["--experimental-warning-apply-duration", "0ms"],
    });
    await cluster.leaderId([slow]);
    await put(slow, "db/password", "hunter2");
    const warnings = () =>
      slow.output
        .join("")
        .split("\n")
        .filter((line) => line.includes("apply request took too long"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const warning = await until(
      () => warnings().find((w) => w.request === 'put:<key:"db/password" value_size:7>'),
      "the put's slow-apply warning",
    );
    expect(warning).toMatchObject({ level: "warn", "expected-duration": "0ms" });
    expect(slow.output.join("")).not.toContain("hunter2");
    const metrics = await (await fetch(`http://127.0.0.1:${slow.ports.client}/metrics`)).text();
    expect(Number(/^etcd_server_slow_apply_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    await cluster.stop("slow");
  });

  it("refuses to promote a learner that is not in sync with the leader, on both membership APIs", async () => {
    // Proves a learner that never ran (nothing listens at its URL) does not become a voter.
    const added = (await call(m.clients.cluster, "memberAdd", {
      peerURLs: [`http://127.0.0.1:${await freePort()}`],
      isLearner: true,
    })) as { member: { ID: bigint } };
    const id = added.member.ID;
    await expect(call(m.clients.cluster, "memberPromote", { ID: id })).rejects.toMatchObject({
      code: 9,
      details: "etcdserver: can only promote a learner member which is in sync with leader",
    });
    const viaOperator = await call(m.clients.operator, "memberAdd", {
      id,
      name: "",
      peerUrls: [],
      clientUrls: [],
      isLearner: false,
    }).catch((err: { code: number; details: string }) => err);
    expect(viaOperator).toMatchObject({ code: 9 });
    expect((viaOperator as { details: string }).details).toMatch(/not in sync with the leader/);
    const list = (await call(m.clients.cluster, "memberList", {})) as {
      members: { ID: bigint; isLearner: boolean }[];
    };
    expect(list.members.find((x) => x.ID === id)?.isLearner).toBe(true);
    await call(m.clients.cluster, "memberRemove", { ID: id });
  });

  it("raises the NOSPACE alarm when the backend outgrows --quota-backend-bytes and then refuses writes", async () => {
    // Proves the quota: writes fail with etcd's error, the alarm is listed and reported by Status, reads work.
    let refused: unknown;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      refused = await put(small, `fill/${i}`, "x".repeat(8 * 1024)).then(
        () => undefined,
        (err: unknown) => err,
      );
    }
    expect(refused).toMatchObject({ code: 8, details: "etcdserver: mvcc: database space exceeded" });
    const alarms = await call<etcd.AlarmResponse>(small.clients.maintenance, "alarm", {
      action: 0,
      memberID: 0n,
      alarm: 0,
    });
    expect(alarms.alarms.map((a) => a.alarm)).toEqual([1]);
    expect((await cluster.status(small)).errors.join()).toMatch(/NOSPACE/);
    await expect(put(small, "more", "x")).rejects.toMatchObject({ code: 8 });
    const read = await call<etcd.RangeResponse>(
      small.clients.kv,
      "range",
      rangeRequest({ key: b("fill/0"), serializable: true }),
    );
    expect(read.count).toBe(1n);
  });
});

describe("operational endpoints", { timeout: 150_000 }, () => {
  it("serves gRPC health, reflection, /health, /metrics and /version", async () => {
    // Proves the standard daemon surfaces on a running member.
    const endpoint = `127.0.0.1:${m.ports.client}`;
    expect(await checkHealth(endpoint)).toBe("SERVING");
    expect(await listServices(endpoint)).toEqual(
      expect.arrayContaining(["etcdserverpb.KV", "etcdserverpb.Cluster", "chainfire.v1.Cluster"]),
    );
    const base = `http://127.0.0.1:${m.ports.metrics}`;
    const health = await fetch(`${base}/health`);
    expect([health.status, ((await health.json()) as { healthy: boolean }).healthy]).toEqual([200, true]);
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(
      /grpc_server_handled_total\{[^}]*grpc_method="Put"/,
    );
    expect(await (await fetch(`${base}/version`)).json()).toMatchObject({ name: "chainfire" });
    // Go's answers, as etcd's metrics URL gives them.
    const missing = await fetch(`${base}/nothing`);
    expect([missing.status, await missing.text()]).toEqual([404, "404 page not found\n"]);
    const posted = await fetch(`${base}/health`, { method: "POST" });
    expect([posted.status, posted.headers.get("allow"), await posted.text()]).toEqual([
      405,
      "GET",
      "Method Not Allowed\n",
    ]);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(200);
  });

  it("refuses bad JSON on the gateway (etcd's /v3/ HTTP API) with etcd's error bodies, changing nothing", async () => {
    // Proves the gateway's input checks: what the gRPC call would refuse, a body that is not a
    // request or has a value of the wrong type, and a body over the size limit; the revision never
    // moves.
    const base = `http://127.0.0.1:${m.ports.client}`;
    const post = async (path: string, body: string) => {
      const res = await fetch(`${base}${path}`, { method: "POST", body });
      return [res.status, (await res.json()) as { code: number; error: string }] as const;
    };
    const before = await revision(m);
    const key = Buffer.from("gw-big").toString("base64");
    const value = Buffer.alloc(100 * 1024, 1).toString("base64");
    expect(await post("/v3/kv/put", JSON.stringify({ key, value }))).toEqual([
      400,
      { error: "etcdserver: request is too large", message: "etcdserver: request is too large", code: 3 },
    ]);
    const [tooBig, refused] = await post("/v3/kv/put", JSON.stringify({ key, value: value.repeat(8) }));
    expect([tooBig, refused.code, refused.error]).toEqual([429, 8, "etcdserver: request is too large"]);
    // A value of the wrong type for its field too: none is coerced into a write.
    for (const body of [
      "not json",
      "[1]",
      '"x"',
      '{"key":"YQ==",}',
      '{99999999999999999999:0,"key":"YQ=="}',
      '{"key":"YQ==","value":"Yg=="',
      '{"key":"YQ==","lease":"abc"}',
      '{"key":"YQ==","prev_kv":"yes"}',
      '{"key":["YQ=="]}',
      '{"key":"YQ","value":"Yg=="}',
    ]) {
      const [code, answer] = await post("/v3/kv/put", body);
      expect([body, code, answer.code]).toEqual([body, 400, 3]);
    }
    expect(await revision(m)).toBe(before);
  });

  it("starts members with etcd's flags alone on one host: no metrics listener of their own to clash on", async () => {
    // Proves what etcd's local-cluster examples rely on: without --listen-metrics-urls no port
    // beyond the client and peer URLs is opened (etcd opens none either), and /metrics is still
    // served on the client URL.
    const names = ["bare1", "bare2"];
    await Promise.all(names.map((n) => cluster.allocate(n)));
    // The second also turns etcd's JSON gateway off (--enable-grpc-gateway=false): /v3/ is not found.
    const started = await Promise.all(
      names.map((n) =>
        cluster.start(n, {
          initialCluster: cluster.initialCluster([n]),
          noMetricsUrl: true,
          extraFlags: n === "bare2" ? ["--enable-grpc-gateway=false"] : [],
        }),
      ),
    );
    const gateway = [];
    for (const member of started) {
      const metrics = await fetch(`http://127.0.0.1:${member.ports.client}/metrics`);
      expect([metrics.status, (await metrics.text()).includes("grpc_server_handled_total")]).toEqual([
        200,
        true,
      ]);
      const range = await fetch(`http://127.0.0.1:${member.ports.client}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: Buffer.from("a").toString("base64"), serializable: true }),
      });
      gateway.push(range.status);
      await cluster.stop(member.name, "SIGKILL");
    }
    expect(gateway).toEqual([200, 404]);
  });

  it("honours etcd's keepalive, watch progress, CORS and host whitelist flags", async () => {
    // Proves the flags reach the client listener: a connection that goes silent is pinged and then
    // closed (a vanished client's calls end), a watch asking for progress gets one at the interval
    // given, only the listed origin is named in CORS headers, and a plain-HTTP request naming a
    // host outside the whitelist is refused with 421, over HTTP/1.1 and HTTP/2 alike.
    await cluster.allocate("keepalive");
    const member = await cluster.start("keepalive", {
      initialCluster: cluster.initialCluster(["keepalive"]),
      extraFlags: [
        "--grpc-keepalive-interval=300ms",
        "--grpc-keepalive-timeout=300ms",
        "--experimental-watch-progress-notify-interval=300ms",
        "--cors=http://good.example:8080",
        "--host-whitelist=localhost,127.0.0.1",
      ],
    });
    const get = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; origin: string | undefined }>((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port: member.ports.client, path, headers }, (res) => {
          res.resume();
          const origin = res.headers["access-control-allow-origin"];
          res.on("end", () => resolve({ status: res.statusCode!, origin: origin as string | undefined }));
        });
        req.on("error", reject);
        req.end();
      });
    expect(await get("/health", { host: "evil.example:2379" })).toEqual({ status: 421, origin: undefined });
    // /health answers 503 until the member has elected itself: wait for 200.
    const listed = await until(async () => {
      const answer = await get("/health", { host: "localhost", origin: "http://good.example:8080" });
      return answer.status === 200 ? answer : undefined;
    }, "/health to answer 200");
    expect(listed.origin).toBe("http://good.example:8080");
    expect(await get("/version", { origin: "http://evil.example:8080" })).toEqual({
      status: 200,
      origin: undefined,
    });
    const h2 = http2Connect(`http://127.0.0.1:${member.ports.client}`);
    h2.on("error", () => {});
    const h2Status = (authority: string) =>
      new Promise<number>((resolve, reject) => {
        const req = h2.request({ ":path": "/health", ":authority": authority });
        req.on("response", (headers) => resolve(Number(headers[":status"])));
        req.on("error", reject);
        req.resume();
        req.end();
      });
    expect([await h2Status("evil.example:2379"), await h2Status(`127.0.0.1:${member.ports.client}`)]).toEqual(
      [421, 200],
    );
    h2.close();
    const socket = netConnect(member.ports.client, "127.0.0.1");
    const received: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.on("error", () => {});
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing, not even the SETTINGS ACK.
    socket.write(HTTP2_OPENING);
    await once(socket, "close");
    const frameTypes: number[] = [];
    const bytes = Buffer.concat(received);
    for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3))
      frameTypes.push(bytes[at + 3]!);
    expect(frameTypes).toContain(6); // PING
    const watch = member.clients.watch.watch();
    const answers: etcd.WatchResponse[] = [];
    watch.on("data", (r: etcd.WatchResponse) => answers.push(r));
    watch.on("error", () => {});
    watch.write({
      createRequest: {
        key: b("progress"),
        rangeEnd: b(""),
        startRevision: 0n,
        progressNotify: true,
        filters: [],
        prevKv: false,
        watchId: 0n,
        fragment: false,
      },
    });
    await until(
      () => (answers.some((r) => !r.created && r.events.length === 0) ? true : undefined),
      "a progress answer",
    );
    watch.cancel();
    await cluster.stop("keepalive", "SIGKILL");
  });

  it("starts a gateway watch while its request body is still being sent, as etcd does", async () => {
    // Proves a client streaming its watch requests (a chunked body it keeps open) is served as each
    // message arrives: the watch is created, and a put made meanwhile reaches it.
    const base = `http://127.0.0.1:${m.ports.client}`;
    const key = Buffer.from("streamed-body").toString("base64");
    let send!: (text: string | null) => void;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        send = (text) => (text === null ? controller.close() : controller.enqueue(Buffer.from(text)));
      },
    });
    send(JSON.stringify({ create_request: { key } }));
    const res = await fetch(`${base}/v3/watch`, {
      method: "POST",
      body,
      duplex: "half",
      signal: AbortSignal.timeout(60_000),
    } as RequestInit);
    const reader = res.body!.getReader();
    let got = "";
    const lines = async (n: number) => {
      while (got.split("\n").length <= n) {
        const chunk = await reader.read();
        if (chunk.done) break;
        got += Buffer.from(chunk.value).toString();
      }
      return got.trim().split("\n");
    };
    expect(JSON.parse((await lines(1))[0]!)).toMatchObject({ result: { created: true } });
    await fetch(`${base}/v3/kv/put`, { method: "POST", body: JSON.stringify({ key, value: key }) });
    const event = JSON.parse((await lines(2))[1]!) as { result: { events: { kv: { key: string } }[] } };
    expect(event.result.events.map((e) => e.kv.key)).toEqual([key]);
    send(null);
    await reader.cancel();
  });

  it("withdraws a gateway Lock still waiting when its HTTP/2 client resets the request", async () => {
    // Proves a client that gives up on a waiting /v3/lock/lock over HTTP/2 (curl negotiates it
    // for https) leaves the queue, as over HTTP/1 and gRPC, instead of taking the lock later.
    const base = `http://127.0.0.1:${m.ports.client}`;
    const name = Buffer.from("h2-lock").toString("base64");
    const queued = () => lockersQueued(base, "h2-lock");
    const held = await fetch(`${base}/v3/lock/lock`, { method: "POST", body: JSON.stringify({ name }) });
    expect(held.status).toBe(200);
    const session = http2Connect(base);
    try {
      const waiting = session.request({ ":method": "POST", ":path": "/v3/lock/lock" });
      waiting.on("error", () => undefined);
      waiting.end(JSON.stringify({ name }));
      await until(async () => (await queued()) === 2, "the HTTP/2 locker queued behind the holder");
      waiting.close(http2Constants.NGHTTP2_CANCEL);
      await until(async () => (await queued()) === 1, "the reset locker's key deleted");
    } finally {
      session.close();
    }
  });

  it("takes a gateway call's deadline from Grpc-Timeout, as etcd's gateway does, and refuses a malformed one", async () => {
    // Proves grpc-gateway's AnnotateContext: a Lock waiting behind a holder with "Grpc-Timeout: 1S"
    // ends with 504 and "context deadline exceeded", leaving the queue; a value that is not gRPC's
    // form is a 400. Before, the header was ignored and the Lock waited as long as the client.
    const base = `http://127.0.0.1:${m.ports.client}`;
    const name = Buffer.from("timed-lock").toString("base64");
    const queued = () => lockersQueued(base, "timed-lock");
    const held = await fetch(`${base}/v3/lock/lock`, { method: "POST", body: JSON.stringify({ name }) });
    expect(held.status).toBe(200);
    const timed = await fetch(`${base}/v3/lock/lock`, {
      method: "POST",
      headers: { "Grpc-Timeout": "1S" },
      body: JSON.stringify({ name }),
    });
    expect(timed.status).toBe(504);
    expect(await timed.json()).toEqual({
      error: "context deadline exceeded",
      message: "context deadline exceeded",
      code: 4,
    });
    await until(async () => (await queued()) === 1, "the timed-out locker's key deleted");
    const bogus = await fetch(`${base}/v3/kv/range`, {
      method: "POST",
      headers: { "Grpc-Timeout": "bogus" },
      body: JSON.stringify({ key: name }),
    });
    expect(bogus.status).toBe(400);
    expect(((await bogus.json()) as { error: string }).error).toBe("invalid grpc-timeout: bogus");
  });

  it("reads a streamed body as etcd's gateway: a bad later message half-closes, an empty body sends nothing", async () => {
    // Proves grpc-gateway's stream handlers: after the first message, one it cannot read ends the
    // client's side (what came before is still answered, with 200); an empty body only half-closes
    // (a keep-alive stream then ends with nothing to answer). Before, the bad message failed the
    // stream and the empty body was answered as one empty request.
    const base = `http://127.0.0.1:${m.ports.client}`;
    const granted = await fetch(`${base}/v3/lease/grant`, {
      method: "POST",
      body: JSON.stringify({ TTL: "60" }),
    });
    const { ID } = (await granted.json()) as { ID: string };
    const kept = await fetch(`${base}/v3/lease/keepalive`, {
      method: "POST",
      body: `{"ID":"${ID}"}{"ID":"abc"}`,
    });
    expect(kept.status).toBe(200);
    const lines = (await kept.text()).trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ result: { ID, TTL: "60" } });
    const empty = await fetch(`${base}/v3/lease/keepalive`, { method: "POST", body: "" });
    expect(empty.status).toBe(200);
    expect(await empty.text()).toBe("");
  });

  it("answers /health, /version and /metrics on the client URL too, in etcd's words, beside gRPC", async () => {
    // Proves what `curl http://<client-url>/health` gives against etcd: the same bodies on the
    // port that serves gRPC, which keeps serving it; a member with an alarm raised is unhealthy.
    const base = `http://127.0.0.1:${m.ports.client}`;
    const health = await fetch(`${base}/health`);
    expect([health.status, await health.text()]).toEqual([200, '{"health":"true"}']);
    const version = await fetch(`${base}/version`);
    expect(version.headers.get("content-type")).toBe("application/json");
    expect(await version.json()).toEqual({ etcdserver: "3.4.0", etcdcluster: "3.4.0" });
    // Unlabelled, as etcd's: `etcdctl check datascale` parses this line's value as a bare number.
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^process_resident_memory_bytes \d+$/m);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    expect(await checkHealth(`127.0.0.1:${m.ports.client}`)).toBe("SERVING");
    expect((await put(m, "after-http", "v")).header!.revision).toBeGreaterThan(0n);
    // The same alarm the quota test raises by filling the member (activating it again is harmless).
    const { memberId } = (await cluster.status(small)).header!;
    await call(small.clients.maintenance, "alarm", { action: 1, memberID: memberId, alarm: 1 });
    const alarmed = await fetch(`http://127.0.0.1:${small.ports.client}/health`);
    expect([alarmed.status, await alarmed.text()]).toEqual([503, '{"health":"false"}']);
    const detailed = await fetch(`http://127.0.0.1:${small.ports.metrics}/health`);
    expect([detailed.status, await detailed.json()]).toEqual([
      503,
      expect.objectContaining({ healthy: false, health: "false", reason: "alarms raised: NOSPACE" }),
    ]);
  });
});

describe("bad flags and config", { timeout: 150_000 }, () => {
  it("exits 2 with a message naming the key, and creates no data directory", async () => {
    // Proves start-up validation: every bad setting is reported before anything is written.
    const dir = (name: string) => join(cluster.root, `never-${name}`);
    const config = join(cluster.root, "bad.toml");
    writeFileSync(config, 'name = "x"\nlisten-client-url = "http://127.0.0.1:1"\n');
    const garbage = join(cluster.root, "garbage.pem");
    writeFileSync(garbage, "not a certificate\n");
    const cases: [string, string[], RegExp, Record<string, string>?][] = [
      [
        "election",
        ["--data-dir", dir("election"), "--heartbeat-interval", "100", "--election-timeout", "200"],
        /election-timeout/,
      ],
      [
        "unknown",
        ["--data-dir", dir("unknown"), "--listen-client-url", "http://127.0.0.1:1"],
        /listen-client-url/,
      ],
      [
        "url",
        ["--data-dir", dir("url"), "--listen-client-urls", "http//127.0.0.1:1"],
        /--listen-client-urls/,
      ],
      ["quota", ["--data-dir", dir("quota"), "--quota-backend-bytes", "lots"], /--quota-backend-bytes/],
      ["no-dir", [], /--data-dir/],
      ["config", ["--data-dir", dir("config"), "--config-file", config], /listen-client-url/],
      [
        "cluster",
        ["--data-dir", dir("cluster"), "--initial-cluster", "a=http://127.0.0.1:1"],
        /initial-cluster/,
      ],
      [
        "retention",
        [
          "--data-dir",
          dir("retention"),
          "--auto-compaction-mode",
          "revision",
          "--auto-compaction-retention",
          "1h",
        ],
        /--auto-compaction-retention: in revision mode the retention is a number of revisions/,
      ],
      // TLS settings are checked in full before the data dir is made: an https:// URL without a
      // certificate, and a certificate file that is not one (both used to bootstrap the data dir
      // first, and the second exited 1 with a bare OpenSSL error).
      [
        "https-no-cert",
        ["--data-dir", dir("https-no-cert"), "--listen-client-urls", "https://127.0.0.1:1"],
        /--listen-client-urls \(https:\/\/127\.0\.0\.1:1\) uses https:\/\/ but --cert-file is not set/,
      ],
      [
        "peer-https-no-cert",
        ["--data-dir", dir("peer-https-no-cert"), "--listen-peer-urls", "https://127.0.0.1:1"],
        /--listen-peer-urls \(https:\/\/127\.0\.0\.1:1\) uses https:\/\/ but --peer-cert-file is not set/,
      ],
      [
        "garbage-cert",
        [
          "--data-dir",
          dir("garbage-cert"),
          "--listen-client-urls",
          "https://127.0.0.1:1",
          "--cert-file",
          garbage,
          "--key-file",
          garbage,
        ],
        /--cert-file: .*garbage\.pem: not a PEM certificate/,
      ],
      [
        "missing-peer-ca",
        ["--data-dir", dir("missing-peer-ca"), "--peer-trusted-ca-file", join(cluster.root, "absent.pem")],
        /--peer-trusted-ca-file: cannot read .*absent\.pem: ENOENT/,
      ],
      // etcd's environment variables are read too, and a bad one is named.
      [
        "etcd-env",
        ["--data-dir", dir("etcd-env")],
        /ETCD_HEARTBEAT_INTERVAL \(environment\)/,
        { ETCD_HEARTBEAT_INTERVAL: "soon" },
      ],
    ];
    const results = await Promise.all(cases.map(([, args, , env]) => runDaemonToExit(args, 60_000, env)));
    results.forEach((r, i) => {
      const [name, , pattern] = cases[i]!;
      expect({ name, code: r.code }).toEqual({ name, code: 2 });
      expect(r.stderr).toMatch(pattern);
      expect(existsSync(dir(name))).toBe(false);
    });
  }, 120_000);
});

describe("a member that lost its data dir", { timeout: 150_000 }, () => {
  it("is refused a second bootstrap with the flags it first started with, as etcd refuses it", async () => {
    // Proves etcd's "has already been bootstrapped" check: a member of a running cluster whose
    // data dir is gone, started again with --initial-cluster-state new, would bootstrap afresh
    // and forget its term and vote. It exits 2 naming the fix instead, and leaves nothing behind.
    const three = new DaemonCluster({ token: "rebootstrap-test" });
    try {
      const names = ["w1", "w2", "w3"];
      const ms = await Promise.all(names.map((n) => three.allocate(n)));
      const initialCluster = three.initialCluster(names);
      await Promise.all(names.map((n) => three.start(n, { initialCluster })));
      await three.published(ms);
      const lost = ms[2]!;
      await three.stop(lost.name);
      rmSync(lost.dataDir, { recursive: true, force: true });
      const r = await runDaemonToExit(three.flags(lost, { initialCluster }));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /--initial-cluster-state: new, but member [0-9a-f]+ \(w3\) has already been bootstrapped: http:\/\/127\.0\.0\.1:\d+ lists it as a running member/,
      );
      expect(existsSync(lost.dataDir)).toBe(false);
      // The others go on as a cluster of three, one of them down.
      const listed = await call<chainfirev1.MemberListResponse>(ms[0]!.clients.operator, "memberList", {});
      expect(listed.members.map((x) => x.name).sort()).toEqual(names);
    } finally {
      await three.close();
    }
  });
});

describe("data directory from an offline restore", { timeout: 150_000 }, () => {
  /** A store at `path` holding the key "restored" = "yes", applied at `index`. */
  function storeWithOneKey(path: string, index: bigint): MvccStore {
    const store = new MvccStore({ path });
    const put = {
      key: b("restored"),
      value: b("yes"),
      lease: 0n,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    };
    store.applyBatch(entriesFor([{ put }], index));
    return store;
  }

  /** A data dir holding only mvcc.db with one key, applied up to `appliedIndex`. */
  function storeOnlyDataDir(name: string, appliedIndex: bigint): string {
    const dir = join(cluster.root, name);
    mkdirSync(dir);
    const store = storeWithOneKey(dataDirLayout.mvccDb(dir), appliedIndex === 0n ? 1n : appliedIndex);
    if (appliedIndex === 0n) store.restore(store.snapshot(), 0n);
    store.close();
    return dir;
  }

  it("starts a new cluster on a restored mvcc.db (applied index 0) with its data", async () => {
    // Proves the restore contract: only mvcc.db, no raft/; the member bootstraps a log and serves the data.
    const restored = await cluster.allocate("restored");
    storeOnlyDataDir("restored", 0n);
    await cluster.start("restored", { initialCluster: cluster.initialCluster(["restored"]) });
    await cluster.leaderId([restored]);
    const got = await call<etcd.RangeResponse>(
      restored.clients.kv,
      "range",
      rangeRequest({ key: b("restored") }),
    );
    expect(got.kvs.map((kv) => kv.value.toString())).toEqual(["yes"]);
    expect((await put(restored, "after", "1")).header!.revision).toBe(3n);
  });

  it("bootstraps the membership a restore was made for, as etcd does, when started without it", async () => {
    // Proves etcd's recovery steps work: three members restored for one cluster and started with
    // only --name and their URLs form that cluster (not three of their own), and a start whose
    // flags contradict the restore is refused, naming both values.
    const names = ["r1", "r2", "r3"];
    const restored = await Promise.all(names.map((n) => cluster.allocate(n)));
    const source = storeWithOneKey(join(cluster.root, "source.db"), 1n);
    const image = Buffer.from(source.snapshot());
    source.close();
    const file = join(cluster.root, "restore-me.db");
    writeFileSync(file, Buffer.concat([image, createHash("sha256").update(image).digest()]));
    const initialCluster = cluster.initialCluster(names);
    for (const m of restored) {
      restoreSnapshot(file, {
        name: m.name,
        dataDir: m.dataDir,
        initialCluster,
        initialAdvertisePeerUrls: cluster.peerUrl(m),
        initialClusterToken: "restored-cluster",
      });
    }
    await Promise.all(names.map((n) => cluster.start(n, { initialCluster: undefined })));
    await cluster.leaderId(restored);
    const list = await call<etcd.MemberListResponse>(restored[0]!.clients.cluster, "memberList", {});
    expect(list.members.map((x) => x.name).sort()).toEqual(names);
    const got = await call<etcd.RangeResponse>(
      restored[2]!.clients.kv,
      "range",
      rangeRequest({ key: b("restored") }),
    );
    expect(got.kvs.map((kv) => kv.value.toString())).toEqual(["yes"]);
    await Promise.all(names.map((n) => cluster.stop(n)));
    const fourth = join(cluster.root, "r4");
    restoreSnapshot(file, {
      name: "r1",
      dataDir: fourth,
      initialCluster,
      initialAdvertisePeerUrls: cluster.peerUrl(restored[0]!),
      initialClusterToken: "restored-cluster",
    });
    const r = await runDaemonToExit([
      "--name",
      "r1",
      "--data-dir",
      fourth,
      "--initial-cluster-token",
      "other",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /--initial-cluster-token: other differs from restored-cluster, which .* was restored for/,
    );
    expect(existsSync(dataDirLayout.raftDir(fourth))).toBe(false);
  });

  it("refuses a data dir whose store applied entries of a log that is missing", async () => {
    // Proves the half-deleted data dir check: exit 2, a message that names the fix, nothing changed.
    const dir = storeOnlyDataDir("orphan", 7n);
    chmodSync(dir, 0o755);
    const r = await runDaemonToExit(["--data-dir", dir, "--initial-cluster-token", "orphan"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/raft\.db is missing.*snapshot restore/);
    // An existing data dir others may enter is used as it is, with etcd's advice in the log.
    expect(r.stdout + r.stderr).toMatch(
      /--data-dir .*orphan has mode 755: other users may read the data in it \(chmod 700/,
    );
    expect(statSync(dir).mode & 0o777).toBe(0o755);
    expect(existsSync(dataDirLayout.raftDir(dir))).toBe(false);
  });
});
