// Differential test: the same etcdctl 3.4 command sequences against a 3-member etcd and a 3-member
// chainfire (both started with the same etcd flags), outputs compared after normalising what
// legitimately differs: member and cluster IDs, ports, lease IDs, terms, Raft indexes, sizes, timings.
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { type ChainfireClients, createClients, type v3election } from "@photoncloud/chainfire-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, type ClusterKind, type ClusterMember, freePort, hasBinary } from "../bench/cluster.js";
import { prefixEnd } from "../src/mvcc/key-range.js";
import { rangeRequest } from "../src/mvcc/messages.js";

const hasEtcd = hasBinary("etcd") && hasBinary("etcdctl");
const COMMAND_DEADLINE_MS = 60_000;

interface Run {
  out: string;
  code: number;
}

function etcdctl(endpoints: string, args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      "etcdctl",
      [`--endpoints=${endpoints}`, "--dial-timeout=10s", "--command-timeout=30s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: COMMAND_DEADLINE_MS },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ out: `${stdout}${stderr}`, code: typeof code === "number" ? code : 1 });
      },
    );
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

async function until<T>(check: () => Promise<T | undefined> | T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
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
    await until(() => (out.includes(`${marker}\n`) ? true : undefined), `watch output containing ${marker}`);
  } finally {
    child.kill("SIGKILL");
  }
  return out;
}

/** What differs legitimately between the two clusters, learnt as the session goes. */
class Normaliser {
  private readonly names = new Map<string, string>();
  private readonly leases: string[] = [];

  constructor(ports: Map<number, string>) {
    for (const [port, name] of ports) this.names.set(`127.0.0.1:${port}`, `<${name}>`);
  }

  port(port: number, name: string): void {
    this.names.set(`127.0.0.1:${port}`, `<${name}>`);
  }

  memberId(id: bigint, name: string): void {
    this.names.set(id.toString(16).padStart(16, "0"), `<id:${name}>`);
    this.names.set(id.toString(16), `<id:${name}>`);
    this.names.set(id.toString(), `<id:${name}>`);
  }

  lease(hex: string): void {
    if (this.leases.includes(hex)) return;
    this.leases.push(hex);
    const i = this.leases.length - 1;
    this.names.set(hex, `<lease${i}>`);
    this.names.set(BigInt(`0x${hex}`).toString(), `<lease${i}>`);
  }

  apply(text: string): string {
    // etcdctl's own retry warnings carry timestamps and client UUIDs: not server behaviour.
    let out = text
      .split("\n")
      .filter((line) => !line.startsWith('{"level":'))
      .join("\n");
    // Longest first, so a decimal ID is not half-replaced by a shorter one.
    for (const [from, to] of [...this.names].sort((a, b) => b[0].length - a[0].length)) {
      out = out.split(from).join(to);
    }
    return (
      out
        .replace(/"cluster_id":\d+/g, '"cluster_id":<c>')
        .replace(/cluster +[0-9a-f]{1,16}\b/g, "cluster <c>")
        // etcdctl prints IDs with %16x: an ID with a leading zero nibble comes space-padded.
        .replace(/ {2,}<id:/g, " <id:")
        .replace(/"raft_term":\d+/g, '"raft_term":<t>')
        .replace(/"ClusterID" : \d+/g, '"ClusterID" : <c>')
        .replace(/"RaftTerm" : \d+/g, '"RaftTerm" : <t>')
        .replace(/"(raftTerm|raftIndex|raftAppliedIndex|dbSize|dbSizeInUse)":\d+/g, '"$1":<n>')
        .replace(/"version":"[0-9.]+"/g, '"version":<v>')
        .replace(/took = [0-9.]+[µm]?s/g, "took = <t>")
        .replace(/"took":"[0-9.]+[µm]?s"/g, '"took":"<t>"')
        .replace(/remaining\(\d+s\)/g, "remaining(<n>s)")
        // etcd lists a lease's keys from a Go map (random order): compare them as a set.
        .replace(
          /attached keys\(\[([^\]]*)\]\)/g,
          (_m, keys: string) => `attached keys([${keys.split(" ").sort().join(" ")}])`,
        )
    );
  }
}

/** endpoint status lines: version, DB size, term and Raft indexes are each member's own. */
function statusLine(line: string): string {
  const cols = line.split(", ");
  if (cols.length < 9) return line;
  return [cols[0], cols[1], "<v>", "<size>", cols[4], cols[5], "<t>", "<i>", "<i>", ...cols.slice(9)].join(
    ", ",
  );
}

function sortedLines(text: string): string {
  return text
    .split("\n")
    .filter((l) => l !== "")
    .sort()
    .join("\n");
}

/** `member list -w json`: both list by member ID, and the two clusters' IDs differ: compare by name. */
function sortedMembers(text: string): string {
  return text.replace(/"members":\[(.*)\]/, (_m, inner: string) => {
    const items = inner
      .split(/\},(?=\{"ID")/)
      .map((item, i, all) => (i < all.length - 1 ? `${item}}` : item));
    return `"members":[${items.sort().join(",")}]`;
  });
}

/** `endpoint hashkv --cluster` lines: the hashes become `<hash>` when every member gave the same one. */
function sameHashes(text: string): string {
  const hashes = new Set([...text.matchAll(/, (\d+)$/gm)].map((m) => m[1]));
  return hashes.size === 1 ? text.replace(/, \d+$/gm, ", <hash>") : text;
}

/** A JSON array printed on one line, its elements in a stable order (etcdctl prints as answers come). */
function sortedJsonArray(text: string): string {
  const items = JSON.parse(text.trim()) as unknown[];
  return items
    .map((item) => JSON.stringify(item))
    .sort()
    .join("\n");
}

interface Session {
  cluster: Cluster;
  norm: Normaliser;
  outputs: string[];
  snapshotDir: string;
}

async function run(
  s: Session,
  args: string[],
  opts: { stdin?: string; all?: boolean; endpoints?: string; post?: (t: string) => string } = {},
): Promise<Run> {
  const endpoints = opts.endpoints ?? (opts.all ? s.cluster.endpoints : s.cluster.members[0]!.endpoint);
  const r = await etcdctl(endpoints, args, opts.stdin);
  const lease = /lease ([0-9a-f]+) granted/.exec(r.out);
  if (lease) s.norm.lease(lease[1]!);
  const text = s.norm.apply(r.out);
  s.outputs.push(
    `$ etcdctl ${s.norm.apply(args.join(" "))}\n[exit ${r.code}]\n${opts.post ? opts.post(text) : text}`,
  );
  return r;
}

async function learnMembers(s: Session): Promise<void> {
  const r = await etcdctl(s.cluster.members[0]!.endpoint, ["member", "list", "-w", "json"]);
  const json = JSON.parse(r.out.replace(/"ID":(\d+)/g, '"ID":"$1"')) as {
    members: { ID: string; name: string }[];
  };
  for (const m of json.members) if (m.name !== "") s.norm.memberId(BigInt(m.ID), m.name);
}

/** KV, txn, watch and compaction: the sequence every etcd user runs. */
async function kvSession(s: Session): Promise<void> {
  const first = s.cluster.members[0]!.endpoint;
  // A store never compacted reports compact revision -1, and revision 0 can be compacted once.
  await run(s, ["endpoint", "hashkv", "-w", "json"]);
  await run(s, ["compaction", "0"]);
  await run(s, ["compaction", "0"]);
  for (const [k, v] of [
    ["foo", "bar"],
    ["foo/a", "1"],
    ["foo/b", "3"],
    ["foo/c", "2"],
    ["zoo", "z"],
  ]) {
    await run(s, ["put", k!, v!]);
  }
  await run(s, ["put", "foo/a", "1b", "--prev-kv"]);
  await run(s, ["get", "foo", "--prefix"]);
  await run(s, ["get", "foo/b", "--from-key"]);
  await run(s, ["get", "foo", "--prefix", "--limit=2", "-w", "json"]);
  await run(s, ["get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"]);
  await run(s, ["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=ASCEND", "--limit=3"]);
  // Without --order, etcd takes the first keys in key order (limit + 1), then sorts those.
  await run(s, ["get", "foo", "--prefix", "--sort-by=VALUE", "--limit=2", "-w", "json"]);
  await run(s, ["get", "foo", "--prefix", "--keys-only"]);
  await run(s, ["get", "foo", "--prefix", "--limit=1", "-w", "fields"]);
  await run(s, ["get", "foo/a", "--rev=3"]);
  await run(s, ["get", "foo/a", "--rev=100"]);
  await run(s, ["get", "", "--from-key", "--keys-only"]);
  // A serializable read on another member: every member has applied the same history.
  await run(s, ["get", "foo", "--prefix", "--consistency=s", "--print-value-only"], { all: true });
  await run(s, ["get", "foo/a", "foo/c", "-w", "json"]);
  await run(s, ["del", "foo/c"]);
  await run(s, ["del", "nothing"]);
  await run(s, ["put", "foo/marker", "m1"]);
  s.outputs.push(s.norm.apply(await watchUntil(first, ["--rev=2", "--prev-kv", "--prefix", "foo"], "m1")));
  await run(s, ["txn"], { stdin: 'mod("zoo") > "0"\n\nput zoo z2\nget zoo\n\nput zoo fail\n\n' });
  await run(s, ["txn"], {
    stdin: 'value("zoo") = "nope"\n\nput zoo never\n\nget foo --prefix --keys-only\n\n',
  });
  await run(s, ["txn", "-w", "json"], { stdin: 'version("foo") = "1"\n\ndel foo --prev-kv\n\n\n' });
  // Each operation's header: the revision before the txn until its first change, the txn's after.
  await run(s, ["txn", "-w", "json"], {
    stdin: 'value("zoo") = "z2"\n\nget zoo\ndel nothing\nput zoo z3\ndel nothing\nget zoo\n\n\n',
  });
  await run(s, ["del", "foo", "--prefix", "--prev-kv"]);
  // The same history hashes the same: every revision, sub-revision, deletion and value as etcd's.
  await run(s, ["endpoint", "hashkv"]);
  await run(s, ["endpoint", "hashkv", "--rev=9"]);
}

async function leaseSession(s: Session): Promise<void> {
  const grant = await run(s, ["lease", "grant", "100"]);
  const id = /lease ([0-9a-f]+) granted/.exec(grant.out)![1]!;
  await run(s, ["put", "leased", "v", `--lease=${id}`]);
  await run(s, ["put", "leased2", "v", `--lease=${id}`]);
  await run(s, ["lease", "timetolive", id, "--keys"]);
  await run(s, ["lease", "keep-alive", "--once", id]);
  await run(s, ["lease", "list"]);
  await run(s, ["put", "leased", "--ignore-value"]);
  await run(s, ["get", "leased", "-w", "json"]);
  await run(s, ["lease", "revoke", id]);
  await run(s, ["get", "leased", "--prefix"]);
  await run(s, ["lease", "timetolive", id]);
  await run(s, ["lease", "revoke", id]);
  await run(s, ["put", "x", "y", "--lease=1234"]);
  // Both wrong (no such key, a revoked lease): a put is refused for its lease first.
  await run(s, ["put", "missing", "--ignore-value", `--lease=${id}`]);
  // etcdctl's lock recipe: a lease, a key under the lock's name, a wait on any key created before it
  // (a range by create revision, then a watch); the command runs holding it, and the key goes after.
  await run(s, ["lock", "difflock", "echo", "held"]);
  await run(s, ["get", "difflock", "--prefix", "--keys-only"]);
  // A client given a user connects to a cluster without authentication and carries on.
  await run(s, ["put", "authless", "v", "--user=ops:secret"]);
  await run(s, ["get", "authless", "--user=ops:secret", "--print-value-only"]);
  // The shortest TTL follows the election timeout (500 ms here: 1 s), then the lease runs out.
  const short = await run(s, ["lease", "grant", "1"]);
  const shortId = /lease ([0-9a-f]+) granted/.exec(short.out)![1]!;
  await until(async () => {
    const r = await etcdctl(s.cluster.members[0]!.endpoint, ["lease", "timetolive", shortId]);
    return r.out.includes("already expired") ? true : undefined;
  }, "the 1-s lease to expire");
}

async function maintenanceSession(s: Session): Promise<void> {
  await run(s, ["compaction", "5"]);
  await run(s, ["get", "foo/a", "--rev=4"]);
  await run(s, ["get", "foo/a", "--rev=5"]);
  await run(s, ["compaction", "4"]);
  await run(s, ["watch", "--rev=2", "foo/a"]);
  await run(s, ["watch", "--rev=-5", "foo/a"]);
  await run(s, ["watch", "--rev=3", "foo/a", "-w", "json"]);
  await run(s, ["endpoint", "hashkv", "--rev=5"]);
  await run(s, ["endpoint", "hashkv", "--rev=4"]);
  // Above the compaction only what was still visible there counts.
  await run(s, ["endpoint", "hashkv", "--rev=13", "-w", "json"]);
  await run(s, ["alarm", "list"]);
  await run(s, ["alarm", "list", "-w", "json"]);
  await run(s, ["defrag"], { all: true, post: sortedLines });
  await run(s, ["snapshot", "save", join(s.snapshotDir, "snap.db")]);
  await run(s, ["get", "zoo", "-w", "json"]);
  await run(s, ["del", "a", "--from-key", "--prev-kv"]);
  await run(s, ["get", "", "--from-key", "-w", "json"]);
  // Watching from a compact revision: an event at it has no prev_kv (the versions before it are
  // gone), the next one's prev_kv is the version the compaction kept. (Whether a deletion at the
  // compact revision still shows is not compared: etcd removes compacted rows in the background.)
  const first = s.cluster.members[0]!.endpoint;
  await run(s, ["put", "wk", "v1"]);
  const kept = await run(s, ["put", "wk", "v2", "-w", "json"]);
  const keptAt = BigInt(/"revision":(\d+)/.exec(kept.out)![1]!);
  await run(s, ["put", "wk", "v3"]);
  await run(s, ["put", "wk", "wk-end"]);
  for (const at of [keptAt, keptAt + 1n]) {
    await run(s, ["compaction", String(at)]);
    s.outputs.push(s.norm.apply(await watchUntil(first, [`--rev=${at}`, "--prev-kv", "wk"], "wk-end")));
  }
}

function statusByEndpoint(s: Session): Promise<Map<string, { leader: bigint; id: bigint }>> {
  return etcdctl(s.cluster.endpoints, ["endpoint", "status", "-w", "json"]).then((r) => {
    const parsed = JSON.parse(r.out.replace(/":(\d{10,})/g, '":"$1"')) as {
      Endpoint: string;
      Status: { leader: string; header: { member_id: string } };
    }[];
    return new Map(
      parsed.map((e) => [
        e.Endpoint,
        { leader: BigInt(e.Status.leader), id: BigInt(e.Status.header.member_id) },
      ]),
    );
  });
}

/** move-leader to m2 (untimed, the starting leader differs), then to m3 (recorded). */
async function leaderSession(s: Session): Promise<void> {
  const [, m2, m3] = s.cluster.members;
  const ids = await statusByEndpoint(s);
  const m2Id = ids.get(m2!.endpoint)!.id;
  if (ids.get(m2!.endpoint)!.leader !== m2Id) {
    const r = await etcdctl(s.cluster.endpoints, ["move-leader", m2Id.toString(16)]);
    expect(r.code, r.out).toBe(0);
  }
  await run(s, ["move-leader", ids.get(m3!.endpoint)!.id.toString(16)], { all: true });
  await until(async () => {
    const now = await statusByEndpoint(s);
    return [...now.values()].every((v) => v.leader === ids.get(m3!.endpoint)!.id) ? true : undefined;
  }, "every member to see m3 as leader");
  await run(s, ["endpoint", "status"], { all: true, post: (t) => t.split("\n").map(statusLine).join("\n") });
  await run(s, ["endpoint", "status", "-w", "json"], { all: true });
  // Endpoints written as URLs, as etcd's documentation writes them, and --cluster, which dials
  // the members' advertised client URLs: etcdctl 3.4 sends the URL as the HTTP/2 authority.
  const urls = s.cluster.members.map((m) => `http://${m.endpoint}`).join(",");
  await run(s, ["endpoint", "status"], {
    endpoints: urls,
    post: (t) => t.split("\n").map(statusLine).join("\n"),
  });
  await run(s, ["endpoint", "status", "--cluster"], {
    post: (t) => sortedLines(t.split("\n").map(statusLine).join("\n")),
  });
  // The hash covers leases, whose IDs differ between the clusters; the members of one agree.
  await run(s, ["endpoint", "hashkv", "--cluster"], { post: (t) => sortedLines(sameHashes(t)) });
  await run(s, ["defrag", "--cluster"], { post: sortedLines });
  await run(s, ["endpoint", "health"], { all: true, post: sortedLines });
  await run(s, ["endpoint", "health", "-w", "json"], {
    all: true,
    post: sortedJsonArray,
  });
}

/** etcdctl's "member add" prints ETCD_INITIAL_CLUSTER in the server's member order: compare it sorted. */
function sortInitialCluster(text: string): string {
  return text.replace(
    /ETCD_INITIAL_CLUSTER="([^"]*)"/,
    (_m, list: string) => `ETCD_INITIAL_CLUSTER="${list.split(",").sort().join(",")}"`,
  );
}

/** The seed's membership sequence through etcdctl: learner add, promote, update in place, remove. */
async function memberSession(s: Session): Promise<void> {
  const list = () => run(s, ["member", "list"], { post: sortedLines });
  await list();
  await run(s, ["member", "list", "-w", "json"], { post: sortedMembers });
  const m4 = await s.cluster.planExtra("m4");
  const movedPeerPort = await freePort();
  s.norm.port(m4.clientPort, "m4-client");
  s.norm.port(m4.peerPort, "m4-peer");
  s.norm.port(movedPeerPort, "m4-peer-moved");
  // etcd refuses reconfiguration ("unhealthy cluster") until its peers have been connected for
  // 5 s; an operator retries, and so does this step.
  const add = await until(async () => {
    const r = await etcdctl(s.cluster.members[0]!.endpoint, [
      "member",
      "add",
      "m4",
      "--learner",
      `--peer-urls=http://127.0.0.1:${m4.peerPort}`,
    ]);
    return /unhealthy cluster/.test(r.out) ? undefined : r;
  }, "member add to be accepted");
  const id = /Member +([0-9a-f]+) added/.exec(add.out)?.[1];
  expect(id, add.out).toBeDefined();
  s.norm.memberId(BigInt(`0x${id}`), "m4");
  s.outputs.push(
    `$ etcdctl member add m4 --learner\n[exit ${add.code}]\n${sortInitialCluster(s.norm.apply(add.out))}`,
  );
  s.cluster.startMember(m4, {
    initialCluster: `${s.cluster.initialCluster},m4=http://127.0.0.1:${m4.peerPort}`,
  });
  try {
    // A learner is promotable once it has caught up with the leader: poll, record the final answer.
    const promoted = await until(async () => {
      const r = await etcdctl(s.cluster.members[0]!.endpoint, ["member", "promote", id!]);
      return r.code === 0 ? r : undefined;
    }, "m4 to be promotable");
    s.outputs.push(`$ etcdctl member promote <id:m4>\n[exit 0]\n${s.norm.apply(promoted.out)}`);
    let seen = "";
    await until(async () => {
      const r = await etcdctl(s.cluster.members[0]!.endpoint, ["member", "list"]);
      seen = r.out;
      return r.out.includes(", m4, ") && r.out.includes("false\n") && !/m4.*true/.test(r.out)
        ? true
        : undefined;
    }, "m4 to be a started voter in the member list").catch((err: Error) => {
      throw new Error(`${err.message}; promote answered: ${promoted.out}; the list last read:\n${seen}`);
    });
    await list();
    await run(s, ["member", "update", id!, `--peer-urls=http://127.0.0.1:${movedPeerPort}`]);
    await list();
    await run(s, ["member", "remove", id!]);
    await list();
  } catch (err) {
    // The joining member is not among the cluster's members whose logs a failed session shows.
    throw new Error(`${(err as Error).message}\nm4: ${m4.log}`);
  } finally {
    s.cluster.stopMember(m4);
  }
  await run(s, ["member", "remove", "1234abcd"]);
  await run(s, ["member", "promote", "1234abcd"]);
}

/** A gRPC answer as text: bytes as UTF-8, 64-bit numbers in decimal, of a header only the revision. */
function plain(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] =
      k === "header" && v !== undefined
        ? { revision: plain((v as { revision: bigint }).revision) }
        : plain(v);
  }
  return out;
}

type Callback<T> = (err: ServiceError | null, res: T) => void;

/** Calls a unary method, resolving with its answer or its error, as text for the transcript. */
function ask<T>(call: (cb: Callback<T>) => void): Promise<{ res?: T; text: string }> {
  return new Promise((resolve) => {
    call((err, res) =>
      resolve(err ? { text: `error ${err.code} ${err.details}` } : { res, text: JSON.stringify(plain(res)) }),
    );
  });
}

/**
 * etcd's server-side Lock and Election services (v3lockpb, v3electionpb), which etcdctl does not
 * use (its lock and elect commands run the recipes in the client) but jetcd and the gateway do:
 * a lock handed over on unlock, elections with proclaim, resign, hand-over and observe.
 */
async function lockElectionSession(s: Session): Promise<void> {
  const [c0, c1] = [0, 1].map((i) => createClients(s.cluster.members[i]!.endpoint)) as [
    ChainfireClients,
    ChainfireClients,
  ];
  const step = async <T>(label: string, call: (cb: Callback<T>) => void) => {
    const r = await ask(call);
    s.outputs.push(`$ grpc ${label}\n${s.norm.apply(r.text)}`);
    return r.res;
  };
  const lease = async () => {
    const r = await ask<{ ID: bigint }>((cb) => c0.lease.leaseGrant({ TTL: 60n, ID: 0n }, cb));
    s.norm.lease(r.res!.ID.toString(16));
    return r.res!.ID;
  };
  const count = async (prefix: string) => {
    const key = Buffer.from(prefix);
    const r = await ask<{ count: bigint }>((cb) =>
      c0.kv.range(rangeRequest({ key, rangeEnd: prefixEnd(key), countOnly: true }), cb),
    );
    return r.res!.count;
  };
  const observed: string[] = [];
  let observer: ClientReadableStream<v3election.LeaderResponse> | undefined;
  try {
    await step("Election.Leader e1", (cb) => c0.election.leader({ name: Buffer.from("e1") }, cb));
    const [l1, l2] = [await lease(), await lease()];
    const held = await step<{ key: Buffer }>("Lock.Lock l1", (cb) =>
      c0.lock.lock({ name: Buffer.from("l1"), lease: l1 }, cb),
    );
    let secondDone = false;
    const second = ask((cb) => c1.lock.lock({ name: Buffer.from("l1"), lease: l2 }, cb));
    void second.then(() => (secondDone = true));
    await until(async () => ((await count("l1/")) === 2n ? true : undefined), "the second locker queued");
    s.outputs.push(`$ second locker waiting: ${!secondDone}`);
    await step("Lock.Unlock l1 (first)", (cb) => c0.lock.unlock({ key: held!.key }, cb));
    s.outputs.push(`$ grpc Lock.Lock l1 (second, after the unlock)\n${s.norm.apply((await second).text)}`);
    await step("Lock.Lock with an unknown lease", (cb) =>
      c0.lock.lock({ name: Buffer.from("l2"), lease: 0x1234n }, cb),
    );
    const [l3, l4] = [await lease(), await lease()];
    const alice = await step<v3election.CampaignResponse>("Election.Campaign e1 alice", (cb) =>
      c0.election.campaign({ name: Buffer.from("e1"), lease: l3, value: Buffer.from("alice") }, cb),
    );
    observer = c1.election.observe({ name: Buffer.from("e1") });
    observer.on("data", (r: v3election.LeaderResponse) =>
      observed.push(s.norm.apply(JSON.stringify(plain(r)))),
    );
    observer.on("error", () => undefined);
    await until(() => (observed.length === 1 ? true : undefined), "the observer's first answer");
    let bobDone = false;
    const bob = ask((cb) =>
      c1.election.campaign({ name: Buffer.from("e1"), lease: l4, value: Buffer.from("bob") }, cb),
    );
    void bob.then(() => (bobDone = true));
    await until(async () => ((await count("e1/")) === 2n ? true : undefined), "bob queued");
    s.outputs.push(`$ bob waiting: ${!bobDone}`);
    const leaderKey = alice!.leader!;
    await step("Election.Proclaim alice2", (cb) =>
      c0.election.proclaim({ leader: leaderKey, value: Buffer.from("alice2") }, cb),
    );
    await step("Election.Leader e1", (cb) => c1.election.leader({ name: Buffer.from("e1") }, cb));
    await step("Election.Proclaim with a stale rev", (cb) =>
      c0.election.proclaim(
        { leader: { ...leaderKey, rev: leaderKey.rev - 1n }, value: Buffer.from("x") },
        cb,
      ),
    );
    await step("Election.Proclaim without a leader", (cb) =>
      c0.election.proclaim({ leader: undefined, value: Buffer.from("x") }, cb),
    );
    await step("Election.Resign alice", (cb) => c0.election.resign({ leader: leaderKey }, cb));
    s.outputs.push(
      `$ grpc Election.Campaign e1 bob (after alice resigned)\n${s.norm.apply((await bob).text)}`,
    );
    await step("Election.Resign alice again", (cb) => c0.election.resign({ leader: leaderKey }, cb));
    await step("Election.Campaign e1 bob2 under bob's lease", (cb) =>
      c1.election.campaign({ name: Buffer.from("e1"), lease: l4, value: Buffer.from("bob2") }, cb),
    );
    await until(() => (observed.length >= 4 ? true : undefined), "the observer to see bob2");
    s.outputs.push(`$ observed\n${observed.join("\n")}`);
  } finally {
    observer?.cancel();
    c0.close();
    c1.close();
  }
}

/**
 * etcd's gRPC gateway: the API as JSON over HTTP POST on the client URL, as `curl` users call it
 * (etcd's documentation shows it so): KV, txn, lease, watch stream, errors, methods and prefixes.
 */
async function gatewaySession(s: Session): Promise<void> {
  const base = `http://${s.cluster.members[0]!.endpoint}`;
  const b64 = (text: string) => Buffer.from(text).toString("base64");
  const record = (label: string, text: string) => {
    for (const m of text.matchAll(/"ID":"(\d+)"/g)) s.norm.lease(BigInt(m[1]!).toString(16));
    const shown = s.norm
      .apply(text)
      .replace(/"cluster_id":"\d+"/g, '"cluster_id":<c>')
      .replace(/"raft_term":"\d+"/g, '"raft_term":<t>');
    s.outputs.push(`$ POST ${s.norm.apply(label)}\n${shown}`);
  };
  const post = async (path: string, body: string, method = "POST") => {
    const res = await fetch(`${base}${path}`, {
      method,
      body: method === "GET" || method === "HEAD" ? undefined : body,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    record(`${path} ${body}`, `${res.status} ${res.headers.get("content-type")}\n${text.trim()}`);
    return text;
  };
  const put = JSON.parse(await post("/v3/kv/put", JSON.stringify({ key: b64("gw/a"), value: b64("1") }))) as {
    header: { revision: string };
  };
  await post("/v3/kv/put", JSON.stringify({ key: b64("gw/b"), value: b64("2"), prev_kv: true }));
  await post(
    "/v3/kv/range",
    JSON.stringify({ key: b64("gw/"), range_end: b64("gw0"), sort_order: "DESCEND" }),
  );
  await post("/v3beta/kv/range", JSON.stringify({ key: b64("gw/a"), count_only: true }));
  await post("/v3/kv/range", JSON.stringify({ key: b64("gw/a"), revision: "100000" }));
  await post("/v3/kv/put", JSON.stringify({ value: b64("no key") }));
  await post("/v3/kv/range", "");
  await post(
    "/v3/kv/txn",
    JSON.stringify({
      compare: [{ target: "VALUE", key: b64("gw/a"), value: b64("1") }],
      success: [
        { request_put: { key: b64("gw/a"), value: b64("one") } },
        { request_range: { key: b64("gw/a") } },
      ],
    }),
  );
  await post("/v3/kv/deleterange", JSON.stringify({ key: b64("gw/b"), prev_kv: true }));
  const lease = JSON.parse(await post("/v3/lease/grant", JSON.stringify({ TTL: 60 }))) as { ID: string };
  await post("/v3/kv/put", JSON.stringify({ key: b64("gw/l"), value: b64("v"), lease: lease.ID }));
  const ttl = await fetch(`${base}/v3/kv/lease/timetolive`, {
    method: "POST",
    body: JSON.stringify({ ID: lease.ID, keys: true }),
  });
  // The remaining TTL counts down: only its presence is compared.
  record("/v3/kv/lease/timetolive", (await ttl.text()).replace(/"TTL":"\d+"/, '"TTL":<n>'));
  // A keep-alive through each member (followers relay it to the leader): one answer, then the
  // stream ends, the body's only request answered.
  for (const member of s.cluster.members) {
    const res = await fetch(`http://${member.endpoint}/v3/lease/keepalive`, {
      method: "POST",
      body: JSON.stringify({ ID: lease.ID }),
      signal: AbortSignal.timeout(30_000),
    });
    record(`/v3/lease/keepalive via ${member.name}`, `${res.status}\n${(await res.text()).trim()}`);
  }
  // A lease ID given as a JSON number beyond 2^53, then granted again (FAILED_PRECONDITION: 412).
  await post("/v3/lease/grant", '{"TTL":60,"ID":9007199254740993}');
  await post("/v3/lease/grant", '{"TTL":60,"ID":9007199254740993}');
  await post("/v3/lease/revoke", '{"ID":"9007199254740993"}');
  // Base64 broken into lines, as Python's base64.encodebytes writes it.
  await post("/v3/kv/put", JSON.stringify({ key: b64("gw/wrapped"), value: `${b64("x".repeat(60))}\n` }));
  // proto3 JSON's lowerCamelCase names are accepted too.
  await post("/v3/kv/range", JSON.stringify({ key: b64("gw/"), rangeEnd: b64("gw0"), countOnly: true }));
  await post("/v3/lease/revoke", JSON.stringify({ ID: lease.ID }));
  await post("/v3/election/leader", JSON.stringify({ name: b64("nobody") }));
  await post("/v3/maintenance/alarm", JSON.stringify({ action: "GET" }));
  await post("/v3/kv/range", "", "GET");
  // Go's answers beside the API: an unknown path, and /health and /version for another method.
  await post("/nothing", "", "GET");
  await post("/health", "", "POST");
  await post("/health", "", "HEAD");
  await post("/version", "", "PUT");
  // A value of the wrong type for its field is refused with jsonpb's words, never coerced (a
  // lease "abc" read as no lease, "yes" as true), and nothing is written.
  const t = b64("gw/t");
  for (const [path, body] of [
    ["kv/put", `{"key":"${t}","lease":"abc"}`],
    ["kv/put", `{"key":"${t}","lease":1.5}`],
    ["kv/put", `{"key":"${t}","lease":1e3}`],
    ["kv/put", `{"key":"${t}","lease":true}`],
    ["kv/put", `{"key":"${t}","prev_kv":"yes"}`],
    ["kv/put", `{"key":["${t}"]}`],
    ["kv/put", '{"key":5}'],
    ["kv/put", '{"key":"Zg"}'],
    ["kv/put", `{"key":"${t}","value":"Zm-v"}`],
    ["kv/range", `{"key":"${t}","sort_order":"BOGUS"}`],
    ["kv/range", `{"key":"${t}","limit":-9223372036854775809}`],
    ["kv/txn", '{"success":[{"request_put":{"key":5}}]}'],
    ["kv/txn", `{"compare":{"key":"${t}"}}`],
    ["lease/grant", '{"TTL":"x"}'],
    ["cluster/member/remove", '{"ID":-1}'],
    ["watch", `{"create_request":{"key":"${t}","filters":["BOGUS"]}}`],
    ["kv/range", "[]"],
    // What etcd's gateway takes: null as an empty request, the first value of a body (the rest
    // ignored), a null element of a list of scalars as its zero value.
    ["kv/range", "null"],
    ["kv/range", `{"key":"${t}"} {"key":"eA=="} trailing`],
    ["kv/range", '{"key":[103,119,47,null]}'],
  ])
    await post(`/v3/${path}`, body!);
  await post("/v3/kv/range", JSON.stringify({ key: t }));
  // Bytes may also be sent as an array of byte values; integers may be quoted.
  await post("/v3/kv/put", `{"key":[103,119,47,116],"value":"dg==","lease":" 0"}`);
  await post("/v3/kv/range", JSON.stringify({ key: t, limit: "9223372036854775807" }));
  // Text that is not JSON (a number as a key, a leading zero among them: long numbers are read
  // exactly, which must not make such text valid): refused in Go's words, blaming the same
  // character, and nothing is written.
  for (const body of [
    "not json",
    `{"key":"${t}",99999999999999999999:0}`,
    `{"key":"${t}","lease":01}`,
    `{"key":"${t}" "value":"dg=="}`,
    `{"key":"${t}","lease":1.}`,
    `{"key":"${t}","lease":-}`,
    `{"key":"${t}","prev_kv":tru}`,
    `{"key":"${t}",}`,
    `{"key":"\\q"}`,
    `{"key":"tab\there"}`,
    `{"key":["${t}" 1]}`,
    "trux",
    '"abc',
    `{"key":["${t}",}`,
    `{"key":"${t}","value":x`,
  ])
    await post("/v3/kv/put", body);
  await post("/v3/kv/range", JSON.stringify({ key: t }));
  // A watch from the first put's revision: its created answer and the events since, one line each.
  const abort = new AbortController();
  const watch = await fetch(`${base}/v3/watch`, {
    method: "POST",
    body: JSON.stringify({
      create_request: { key: b64("gw/"), range_end: b64("gw0"), start_revision: put.header.revision },
    }),
    signal: abort.signal,
  });
  let lines = "";
  const reader = watch.body!.getReader();
  try {
    while (lines.split("\n").length < 3) {
      const chunk = await reader.read();
      if (chunk.done) break;
      lines += Buffer.from(chunk.value).toString();
    }
  } finally {
    abort.abort();
  }
  record("/v3/watch", `${watch.status}\n${lines.trim()}`);
}

/**
 * The etcd metrics chainfire exports, by etcd's names: each one's HELP and TYPE lines on a member's
 * client URL, so a name, type or description that drifts from etcd's shows as a difference.
 */
const ETCD_METRICS = [
  "etcd_cluster_version",
  "etcd_debugging_mvcc_compact_revision",
  "etcd_debugging_mvcc_current_revision",
  "etcd_debugging_mvcc_db_total_size_in_bytes",
  "etcd_debugging_mvcc_delete_total",
  "etcd_debugging_mvcc_keys_total",
  "etcd_debugging_mvcc_put_total",
  "etcd_debugging_mvcc_range_total",
  "etcd_debugging_mvcc_slow_watcher_total",
  "etcd_debugging_mvcc_txn_total",
  "etcd_debugging_mvcc_watcher_total",
  "etcd_disk_backend_commit_duration_seconds",
  "etcd_disk_wal_fsync_duration_seconds",
  "etcd_mvcc_db_total_size_in_bytes",
  "etcd_mvcc_db_total_size_in_use_in_bytes",
  "etcd_mvcc_delete_total",
  "etcd_mvcc_put_total",
  "etcd_mvcc_range_total",
  "etcd_mvcc_txn_total",
  "etcd_network_active_peers",
  "etcd_network_client_grpc_received_bytes_total",
  "etcd_network_client_grpc_sent_bytes_total",
  "etcd_network_disconnected_peers_total",
  "etcd_network_peer_received_bytes_total",
  "etcd_network_peer_round_trip_time_seconds",
  "etcd_network_peer_sent_bytes_total",
  "etcd_server_has_leader",
  "etcd_server_health_failures",
  "etcd_server_health_success",
  "etcd_server_heartbeat_send_failures_total",
  "etcd_server_id",
  "etcd_server_is_leader",
  "etcd_server_is_learner",
  "etcd_server_leader_changes_seen_total",
  "etcd_server_learner_promote_successes",
  "etcd_server_proposals_applied_total",
  "etcd_server_proposals_committed_total",
  "etcd_server_proposals_failed_total",
  "etcd_server_proposals_pending",
  "etcd_server_quota_backend_bytes",
  "etcd_server_read_indexes_failed_total",
  "etcd_server_slow_apply_total",
  "etcd_server_slow_read_indexes_total",
  "etcd_server_snapshot_apply_in_progress_total",
  "etcd_server_version",
];

async function metricsSession(s: Session): Promise<void> {
  // etcd lists etcd_network_disconnected_peers_total only once a peer it was connected to went
  // away, which the sessions before may or may not have caused: the third member is killed and
  // restarted first, so that the first has counted a disconnection in both clusters.
  const third = s.cluster.members[2]!;
  const exited = once(third.process!, "exit");
  s.cluster.stopMember(third);
  await exited;
  s.cluster.startMember(third);
  await s.cluster.waitReady();
  const scrape = async () => {
    const res = await fetch(`http://${s.cluster.members[0]!.endpoint}/metrics`, {
      signal: AbortSignal.timeout(30_000),
    });
    return (await res.text()).split("\n");
  };
  const lines = await until(async () => {
    const got = await scrape();
    return got.includes("# TYPE etcd_network_disconnected_peers_total counter") ? got : undefined;
  }, "the first member to count the third's disconnection").catch(scrape);
  for (const name of ETCD_METRICS) {
    const described = lines.filter(
      (l) => l === `# TYPE ${name} ${l.split(" ")[3]}` || l.startsWith(`# HELP ${name} `),
    );
    // Both lines, or the comparison would pass on two clusters that both lack the metric.
    if (described.length !== 2) throw new Error(`/metrics does not describe ${name}`);
    s.outputs.push(`$ GET /metrics ${name}\n${described.sort().join("\n")}`);
  }
}

/**
 * Last, as it stops two members: with quorum lost, reconfiguration is refused at once with etcd's
 * "unhealthy cluster" (etcd checks on the member asked; chainfire, which knows no leader by then,
 * too), for a voter, a learner and the survivor's own removal.
 */
async function quorumLossSession(s: Session): Promise<void> {
  const [survivor, ...others] = s.cluster.members as [ClusterMember, ...ClusterMember[]];
  for (const m of others) s.cluster.stopMember(m);
  // Once the survivor has seen its leader go (an election timeout), as an operator would find it.
  const id = await until(async () => {
    const r = await etcdctl(survivor.endpoint, ["endpoint", "status", "-w", "json"]);
    const member = /"member_id":(\d+)/.exec(r.out)?.[1];
    return r.code === 0 && member !== undefined && !/"leader":[1-9]/.test(r.out) ? member : undefined;
  }, "the survivor to know no leader");
  await run(s, ["member", "add", "m5", "--peer-urls=http://127.0.0.1:1"]);
  await run(s, ["member", "add", "m6", "--learner", "--peer-urls=http://127.0.0.1:2"]);
  await run(s, ["member", "remove", BigInt(id).toString(16)]);
}

async function session(cluster: Cluster, snapshotDir: string): Promise<string[]> {
  const ports = new Map<number, string>();
  for (const m of cluster.members) {
    ports.set(m.clientPort, `${m.name}-client`);
    ports.set(m.peerPort, `${m.name}-peer`);
  }
  const s: Session = { cluster, norm: new Normaliser(ports), outputs: [], snapshotDir };
  await learnMembers(s);
  await kvSession(s);
  await leaseSession(s);
  await maintenanceSession(s);
  await leaderSession(s);
  await memberSession(s);
  await lockElectionSession(s);
  await gatewaySession(s);
  await metricsSession(s);
  await quorumLossSession(s);
  return s.outputs;
}

/** On a mismatch, prints both transcripts' differing commands so the failure explains itself. */
function firstDifferences(expected: string[], actual: string[]): string {
  const lines: string[] = [];
  for (let i = 0; i < Math.max(expected.length, actual.length) && lines.length < 12; i++) {
    if (expected[i] !== actual[i]) lines.push(`--- etcd\n${expected[i]}\n+++ chainfire\n${actual[i]}`);
  }
  return lines.join("\n\n");
}

export async function runDiff(
  kinds: [ClusterKind, ClusterKind],
  dir: string,
): Promise<{ expected: string[]; actual: string[] }> {
  const transcripts: string[][] = [];
  for (const kind of kinds) {
    const cluster = await Cluster.start({
      kind,
      dir: join(dir, `${kind}-${transcripts.length}`),
      heartbeatMs: 50,
      electionMs: 500,
    });
    try {
      transcripts.push(await session(cluster, dir));
    } catch (err) {
      throw new Error(
        `${kind} session failed: ${(err as Error).message}\n${cluster.members.map((m) => `${m.name}: ${m.log}`).join("\n")}`,
      );
    } finally {
      cluster.stop();
    }
  }
  return { expected: transcripts[0]!, actual: transcripts[1]! };
}

describe.runIf(hasEtcd)("etcdctl 3.4 against a 3-member etcd and a 3-member chainfire", () => {
  let dir = "";

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "etcdctl-diff-"));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("gives the same outputs for KV, txn, watch, lease, maintenance, leader, member, lock, election, gateway and quorum-loss sequences", async () => {
    // Proves wire and semantic compatibility with a real etcd cluster as etcdctl users see it.
    const { expected, actual } = await runDiff(["etcd", "chainfire"], dir);
    const differences = firstDifferences(expected, actual);
    if (differences !== "") console.error(differences);
    expect(actual.join("\n")).toBe(expected.join("\n"));
  }, 600_000);
});
