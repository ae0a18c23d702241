// Proves the cluster-wide APIs on 3 members: leases (keep-alive and time-to-live sent to a follower
// reach the leader's countdown; the remaining TTL survives a leader change; leader-decided expiry
// deletes keys everywhere) and etcd's Cluster API (MemberAdd by peer URL with the joiner finding its
// ID, Promote, Update, Remove; a learner refusing MemberList as etcd 3.4 does), etcd's metrics
// under etcd's names, and answers past gRPC's default 4 MiB sent whole, as etcd sends them.
import { createClients, etcd } from "@photoncloud/chainfire-api";
import { memberIdForPeerUrls } from "../src/daemon/etcd-cluster-service.js";
import { rangeRequest, watchCreateRequest } from "../src/mvcc/messages.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  DaemonCluster,
  GiveUp,
  type Member,
  put,
  putRequest,
  readPrefix,
  until,
} from "./support/daemon-cluster.js";

const cluster = new DaemonCluster({
  token: "lease-test",
  extraFlags: ["--experimental-lease-checkpoint-interval", "200ms"],
});
let members: Member[];
const b = (s: string) => Buffer.from(s);

beforeAll(async () => {
  const names = ["l1", "l2", "l3"];
  members = await Promise.all(names.map((n) => cluster.allocate(n)));
  const initial = cluster.initialCluster(names);
  await Promise.all(names.map((n) => cluster.start(n, { initialCluster: initial })));
  // Relays go to the leader's published client URL, so every member has published before the tests.
  await cluster.published(members);
}, 180_000);

afterAll(() => cluster.close());

async function followers(): Promise<{ leader: Member; followers: Member[] }> {
  const leader = await cluster.memberNamed(await cluster.leaderId());
  return { leader, followers: members.filter((m) => m !== leader) };
}

function timeToLive(m: Member, id: bigint): Promise<etcd.LeaseTimeToLiveResponse> {
  return call<etcd.LeaseTimeToLiveResponse>(m.clients.lease, "leaseTimeToLive", { ID: id, keys: true });
}

async function grant(m: Member, ttl: bigint): Promise<bigint> {
  const res = await call<etcd.LeaseGrantResponse>(m.clients.lease, "leaseGrant", { TTL: ttl, ID: 0n });
  return res.ID;
}

function putLeased(m: Member, key: string, lease: bigint) {
  return call(m.clients.kv, "put", {
    key: b(key),
    value: b("v"),
    lease,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  });
}

describe("leases on a 3-member cluster", { timeout: 150_000 }, () => {
  it("relays keep-alives from a follower and keeps the remaining TTL across a leader change", async () => {
    // Proves follower relaying and that a new leader continues the countdown instead of restarting it.
    const {
      leader,
      followers: [f1, f2],
    } = await followers();
    const id = await grant(f1!, 30n);
    await putLeased(f1!, "lease/kept", id);
    // Half-closed right after the request (as python-etcd3's refresh does): the relayed answer
    // still comes, then the end of the stream.
    const keepAlive = f2!.clients.lease.leaseKeepAlive();
    const renewed = new Promise<etcd.LeaseKeepAliveResponse>((resolve, reject) => {
      keepAlive.once("data", resolve);
      keepAlive.once("error", reject);
    });
    const closed = new Promise((resolve) => keepAlive.on("status", resolve));
    keepAlive.write({ ID: id });
    keepAlive.end();
    const renewal = await renewed;
    expect(renewal.TTL).toBe(30n);
    expect(await closed).toMatchObject({ code: 0 });
    // Relayed answers carry the header of the member asked, as etcd's followers fill it.
    const target = (await cluster.status(f2!)).header!.memberId;
    expect(renewal.header!.memberId).toBe(target);
    const counted = await until(async () => {
      const ttl = await timeToLive(f1!, id);
      return ttl.TTL <= 26n ? ttl : undefined;
    }, "the leader's countdown to pass 4 seconds");
    expect(counted.keys.map(String)).toEqual(["lease/kept"]);
    expect(counted.header!.memberId).toBe((await cluster.status(f1!)).header!.memberId);
    await call(leader.clients.maintenance, "moveLeader", { targetID: target });
    await cluster.leaderId(members, (await cluster.status(leader)).header!.memberId);
    const after = await timeToLive(f1!, id);
    // Continued from the last recorded remaining TTL, which is rounded up to whole seconds.
    expect(after.TTL).toBeGreaterThan(0n);
    expect(after.TTL).toBeLessThanOrEqual(27n);
    expect(after.grantedTTL).toBe(30n);
  });

  it("goes on answering a keep-alive stream, in order, once its member stops leading mid-stream", async () => {
    // The stream is opened on the leader, which answers from its own lessor; a leader transfer
    // then leaves the same stream on a follower, which relays what comes next to the new leader.
    // Every request is answered, in the order sent: renewals at the full TTL, and an unknown lease
    // between them at TTL 0.
    const {
      leader,
      followers: [f1],
    } = await followers();
    const id = await grant(leader, 30n);
    const keepAlive = leader.clients.lease.leaseKeepAlive();
    const answers: etcd.LeaseKeepAliveResponse[] = [];
    let failure: unknown = null;
    keepAlive.on("data", (r: etcd.LeaseKeepAliveResponse) => answers.push(r));
    keepAlive.on("error", (err: unknown) => {
      failure = err;
    });
    const closed = new Promise((resolve) => keepAlive.on("status", resolve));
    keepAlive.write({ ID: id });
    await until(() => answers.length === 1 || failure !== null, "the leader's own answer");
    const asked = (await cluster.status(leader)).header!.memberId;
    const target = (await cluster.status(f1!)).header!.memberId;
    await call(leader.clients.maintenance, "moveLeader", { targetID: target });
    await cluster.leaderId(members, asked);
    keepAlive.write({ ID: id });
    keepAlive.write({ ID: id + 1n });
    keepAlive.write({ ID: id });
    keepAlive.end();
    expect(await closed).toMatchObject({ code: 0 });
    expect(failure).toBeNull();
    expect(answers.map((a) => [a.ID, a.TTL])).toEqual([
      [id, 30n],
      [id, 30n],
      [id + 1n, 0n],
      [id, 30n],
    ]);
    // Every answer carries the header of the member asked, relayed or not.
    expect(answers.every((a) => a.header!.memberId === asked)).toBe(true);
    // The new leader counts the lease from a renewal made through it.
    expect((await timeToLive(f1!, id)).TTL).toBeGreaterThanOrEqual(25n);
  });

  it("gives up a TimeToLive relayed to a leader that stopped answering, at etcd's request timeout", async () => {
    // Proves the relay has a deadline: asked of a follower right after the leader froze (SIGSTOP),
    // the call goes to the frozen leader and ends with etcd's "request timed out" (5 s and two
    // election timeouts) instead of waiting for it to come back. Before, it waited with it.
    const {
      leader,
      followers: [f1],
    } = await followers();
    const id = await grant(f1!, 60n);
    leader.proc!.kill("SIGSTOP");
    try {
      // The client waits 10 s; the relay gives up at 6 s (election timeout 500 ms).
      await expect(timeToLive(f1!, id)).rejects.toMatchObject({
        code: 14,
        details: "etcdserver: request timed out",
      });
    } finally {
      leader.proc!.kill("SIGCONT");
    }
    await cluster.leaderId(members);
  });

  it("expires a lease on the leader's clock and deletes its keys everywhere", async () => {
    // Proves leader-driven expiry through the log: every member loses the key, the lease is gone.
    const {
      followers: [f1],
    } = await followers();
    const id = await grant(f1!, 2n);
    await putLeased(f1!, "lease/short", id);
    for (const m of members) {
      await until(
        async () => !(await readPrefix(m, "lease/short", true)).has("lease/short"),
        `${m.name} to drop the key`,
      );
    }
    expect((await timeToLive(f1!, id)).TTL).toBe(-1n);
    const listed = await call<etcd.LeaseLeasesResponse>(f1!.clients.lease, "leaseLeases", {});
    expect(listed.leases.map((l) => l.ID)).not.toContain(id);
  });
});

describe("etcd's Cluster API on a 3-member cluster", { timeout: 150_000 }, () => {
  it("adds a learner by peer URL, lets it find its ID, promotes, updates and removes it", async () => {
    // Proves MemberAdd/Promote/Update/Remove/List through etcd's API, sent to a follower.
    const {
      followers: [f1],
    } = await followers();
    const joiner = await cluster.allocate("e4");
    const peerUrl = cluster.peerUrl(joiner);
    const added = await call<etcd.MemberAddResponse>(f1!.clients.cluster, "memberAdd", {
      peerURLs: [peerUrl],
      isLearner: true,
    });
    const id = memberIdForPeerUrls(cluster.token, [peerUrl]);
    expect(added.member).toEqual({ ID: id, name: "", peerURLs: [peerUrl], clientURLs: [], isLearner: true });
    // Started without --member-id: it asks the others which ID its peer URL was given.
    await cluster.start("e4", {
      state: "existing",
      initialCluster: `${cluster.initialCluster(["l1", "l2", "l3"])},e4=${peerUrl}`,
    });
    expect((await cluster.status(joiner)).header!.memberId).toBe(id);
    const published = await until(async () => {
      const list = await call<etcd.MemberListResponse>(f1!.clients.cluster, "memberList", {});
      const mine = list.members.find((m) => m.ID === id);
      return mine?.name === "e4" ? mine : undefined;
    }, "e4 to publish its name and client URLs");
    expect(published.clientURLs).toEqual([cluster.clientUrl(joiner)]);
    await expect(call(joiner.clients.cluster, "memberList", {})).rejects.toMatchObject({
      code: 14,
      details: "etcdserver: rpc not supported for learner",
    });
    // As etcd 3.4: one learner at a time, and a learner cannot be given leadership. Nothing changes.
    const before = (await call<etcd.MemberListResponse>(f1!.clients.cluster, "memberList", {})).members;
    await expect(
      call(f1!.clients.cluster, "memberAdd", { peerURLs: ["http://127.0.0.1:9"], isLearner: true }),
    ).rejects.toMatchObject({ code: 9, details: "etcdserver: too many learner members in cluster" });
    await expect(call(f1!.clients.maintenance, "moveLeader", { targetID: id })).rejects.toMatchObject({
      code: 9,
      details: "etcdserver: bad leader transferee",
    });
    const after = (await call<etcd.MemberListResponse>(f1!.clients.cluster, "memberList", {})).members;
    expect(after).toEqual(before);
    await until(
      () => call(f1!.clients.cluster, "memberPromote", { ID: id }).then(() => true),
      "the promotion of e4",
    );
    await expect(call(f1!.clients.cluster, "memberPromote", { ID: id })).rejects.toMatchObject({
      code: 9,
      details: "etcdserver: can only promote a learner member",
    });
    await put(joiner, "etcd-api/after-promote", "v");
    const otherPeer = cluster.peerUrl(members[0]!);
    await expect(
      call(f1!.clients.cluster, "memberUpdate", { ID: id, peerURLs: [otherPeer] }),
    ).rejects.toMatchObject({ code: 9, details: "etcdserver: Peer URLs already exists" });
    const updated = await call<etcd.MemberUpdateResponse>(f1!.clients.cluster, "memberUpdate", {
      ID: id,
      peerURLs: [peerUrl],
    });
    expect(updated.members.find((m) => m.ID === id)!.isLearner).toBe(false);
    const removed = await call<etcd.MemberRemoveResponse>(f1!.clients.cluster, "memberRemove", { ID: id });
    expect(removed.members.map((m) => m.ID)).not.toContain(id);
    // A removed member stops by itself, cleanly, as etcd's do.
    expect(await cluster.exited("e4")).toBe(0);
    expect((await readPrefix(f1!, "etcd-api/", false)).get("etcd-api/after-promote")).toBe("v");
  });

  it("lets a member join under a leader that was itself added by peer URL (an ID no name derives)", async () => {
    // etcd's MemberAdd gives an ID derived from the peer URLs, not from the --name a joiner's
    // --initial-cluster lists: a joiner must take the other members' IDs from the cluster, or it
    // cannot answer such a leader and never catches up.
    const { leader } = await followers();
    const e5 = await cluster.allocate("e5");
    const e5Url = cluster.peerUrl(e5);
    const e5Id = (
      await call<etcd.MemberAddResponse>(leader.clients.cluster, "memberAdd", {
        peerURLs: [e5Url],
        isLearner: false,
      })
    ).member!.ID;
    const four = `${cluster.initialCluster(["l1", "l2", "l3"])},e5=${e5Url}`;
    await cluster.start("e5", { state: "existing", initialCluster: four });
    await until(() => put(e5, "join/e5", "v").then(() => true), "e5 to take writes");
    await until(
      () => call(leader.clients.maintenance, "moveLeader", { targetID: e5Id }).then(() => true),
      "the leadership to move to e5",
    );
    expect(await cluster.leaderId()).toBe(e5Id);
    await put(members[0]!, "join/before-e6", "v");
    const e6 = await cluster.allocate("e6");
    const e6Url = cluster.peerUrl(e6);
    const e6Id = (
      await call<etcd.MemberAddResponse>(e5.clients.cluster, "memberAdd", {
        peerURLs: [e6Url],
        isLearner: true,
      })
    ).member!.ID;
    await cluster.start("e6", { state: "existing", initialCluster: `${four},e6=${e6Url}` });
    await until(
      async () => (await readPrefix(e6, "join/", true)).get("join/before-e6") === "v",
      () => `e6 to catch up under leader e5\n${e6.output.join("").slice(-3000)}`,
      30_000,
    );
    // Back to three members: the joined ones removed (e5, the leader, last), each stopping itself.
    for (const [m, id] of [
      [e6, e6Id],
      [e5, e5Id],
    ] as const) {
      await until(
        () => call(members[0]!.clients.cluster, "memberRemove", { ID: id }).then(() => true),
        `the removal of ${m.name}`,
      );
      expect(await cluster.exited(m.name)).toBe(0);
    }
    await cluster.leaderId(members);
  });
});

/** A /metrics page as `name{labels}` → value (the labels as printed, sorted by the registry). */
async function scrape(m: Member): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${m.ports.client}/metrics`)).text();
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) series.set(match[1]!, Number(match[2]));
  }
  return series;
}

describe("etcd's metrics", { timeout: 150_000 }, () => {
  it("exports leadership, proposals, store, disk and peer metrics under etcd's names", async () => {
    // Proves what etcd's dashboards and alerts read: one leader seen by all, this member's ID and
    // versions, puts counted on every member, the key count and revision as the store has them,
    // fsync and commit latencies observed, and sends to a stopped member counted as failures.
    const {
      leader,
      followers: [f1, f2],
    } = await followers();
    // Labels carry IDs as etcd prints them: hex without leading zeros.
    const ids = new Map<Member, string>();
    for (const m of members) ids.set(m, (await cluster.status(m)).header!.memberId.toString(16));
    const before = new Map<Member, Map<string, number>>();
    for (const m of members) before.set(m, await scrape(m));
    // The client messages' bytes, as etcd's codec counts them: each encoded message, no framing.
    let requestBytes = 0;
    let responseBytes = 0;
    for (let i = 0; i < 5; i++) {
      const res = await put(leader, `metrics/k${i}`, "v");
      requestBytes += etcd.PutRequest.encode(putRequest(`metrics/k${i}`, "v")).finish().length;
      responseBytes += etcd.PutResponse.encode(res).finish().length;
    }
    {
      const now = await scrape(leader);
      const was = before.get(leader)!;
      const delta = (name: string) => now.get(name)! - was.get(name)!;
      expect(delta("etcd_network_client_grpc_received_bytes_total")).toBe(requestBytes);
      expect(delta("etcd_network_client_grpc_sent_bytes_total")).toBe(responseBytes);
    }
    await until(async () => {
      for (const m of members) if ((await readPrefix(m, "metrics/", true)).size !== 5) return undefined;
      return true;
    }, "every member to apply the puts");
    for (const m of members) {
      const now = await scrape(m);
      const was = before.get(m)!;
      expect(now.get("etcd_server_is_learner")).toBe(0);
      expect(now.get(`etcd_server_id{server_id="${ids.get(m)}"}`)).toBe(1);
      expect(now.get('etcd_server_version{server_version="3.4.0"}')).toBe(1);
      expect(now.get('etcd_cluster_version{cluster_version="3.4"}')).toBe(1);
      expect(now.get("etcd_server_leader_changes_seen_total")).toBeGreaterThanOrEqual(1);
      expect(now.get("etcd_server_quota_backend_bytes")).toBe(2 * 1024 ** 3);
      expect(now.get("etcd_mvcc_put_total")! - was.get("etcd_mvcc_put_total")!).toBe(5);
      expect(now.get("etcd_server_proposals_applied_total")).toBeGreaterThan(
        was.get("etcd_server_proposals_applied_total")!,
      );
      expect(now.get("etcd_server_proposals_committed_total")).toBeGreaterThanOrEqual(
        now.get("etcd_server_proposals_applied_total")!,
      );
      expect(now.get("etcd_disk_wal_fsync_duration_seconds_count")).toBeGreaterThan(0);
      expect(now.get('etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}')).toBe(
        now.get("etcd_disk_wal_fsync_duration_seconds_count"),
      );
      expect(now.get("etcd_mvcc_db_total_size_in_bytes")).toBeGreaterThan(0);
    }
    // The store commits its batched writes on a timer (etcd's backend batch interval).
    for (const m of members)
      await until(
        async () =>
          (await scrape(m)).get("etcd_disk_backend_commit_duration_seconds_count")! >
            before.get(m)!.get("etcd_disk_backend_commit_duration_seconds_count")! || undefined,
        "a commit of the puts",
      );
    // Every member sees a leader, and exactly the one that leads says so (asked again should
    // leadership move under a loaded machine).
    await until(async () => {
      const lead = await cluster.memberNamed(await cluster.leaderId());
      for (const m of members) {
        const now = await scrape(m);
        if (now.get("etcd_server_has_leader") !== 1) return undefined;
        if (now.get("etcd_server_is_leader") !== (m === lead ? 1 : 0)) return undefined;
      }
      return true;
    }, "every member to report the leader");
    // The key count and revision are the store's: compared with a count of every key, polled
    // since leases from the tests above may still expire.
    await until(async () => {
      const all = await call<etcd.RangeResponse>(
        leader.clients.kv,
        "range",
        rangeRequest({ key: b("\0"), rangeEnd: b("\0"), countOnly: true, serializable: true }),
      );
      const now = await scrape(leader);
      return now.get("etcd_debugging_mvcc_keys_total") === Number(all.count) &&
        now.get("etcd_debugging_mvcc_current_revision") === Number(all.header!.revision)
        ? true
        : undefined;
    }, "the key count and revision to match the store's");
    // Raft traffic per peer: the leader sent each follower at least the puts' keys and values, each
    // follower received as much from it, and every peer connection is active.
    const putBytes = 5 * "metrics/k0v".length;
    const scraped = new Map<Member, Map<string, number>>();
    for (const m of members) scraped.set(m, await scrape(m));
    const grew = (m: Member, name: string) => scraped.get(m)!.get(name)! - (before.get(m)!.get(name) ?? 0);
    for (const f of [f1!, f2!]) {
      expect(grew(leader, `etcd_network_peer_sent_bytes_total{To="${ids.get(f)}"}`)).toBeGreaterThan(
        putBytes,
      );
      expect(grew(f, `etcd_network_peer_received_bytes_total{From="${ids.get(leader)}"}`)).toBeGreaterThan(
        putBytes,
      );
    }
    // Followers exchange no Raft messages: they find each other active through the prober.
    await until(async () => {
      for (const m of members) {
        const now = await scrape(m);
        for (const peer of members) {
          const labels = `{Local="${ids.get(m)}",Remote="${ids.get(peer)}"}`;
          if (peer !== m && now.get(`etcd_network_active_peers${labels}`) !== 1) return undefined;
        }
      }
      return true;
    }, "every member to find both peers active");
    // Each member probes the others' peer URLs, as etcd's prober, and keeps their round trips.
    await until(async () => {
      const now = await scrape(f2!);
      return (
        [leader, f1!].every(
          (m) => (now.get(`etcd_network_peer_round_trip_time_seconds_count{To="${ids.get(m)}"}`) ?? 0) > 0,
        ) || undefined
      );
    }, "round trips to both peers");
    // A stopped member: sends to it fail, counted per peer as etcd counts them; sends to the
    // member still running do not.
    const stopped = f1!;
    const failuresTo = (m: Member) => `etcd_network_peer_sent_failures_total{To="${ids.get(m)}"}`;
    const toRunning = (await scrape(leader)).get(failuresTo(f2!)) ?? 0;
    await cluster.stop(stopped.name, "SIGTERM");
    try {
      await until(async () => {
        await put(f2!, "metrics/while-down", "v");
        for (const m of [leader, f2!]) if (((await scrape(m)).get(failuresTo(stopped)) ?? 0) > 0) return true;
        return undefined;
      }, "a member to count failed sends to the stopped member");
      // Its connections are no longer active, and each counts one disconnection.
      await until(async () => {
        for (const m of [leader, f2!]) {
          const labels = `{Local="${ids.get(m)}",Remote="${ids.get(stopped)}"}`;
          const now = await scrape(m);
          if (now.get(`etcd_network_active_peers${labels}`) !== 0) return undefined;
          if ((now.get(`etcd_network_disconnected_peers_total${labels}`) ?? 0) < 1) return undefined;
        }
        return true;
      }, "both members to count the stopped member's connection as lost");
      expect(
        (await scrape(leader)).get(
          `etcd_network_active_peers{Local="${ids.get(leader)}",Remote="${ids.get(f2!)}"}`,
        ),
      ).toBe(1);
      expect((await scrape(leader)).get(failuresTo(f2!)) ?? 0).toBe(toRunning);
    } finally {
      await cluster.start(stopped.name, { initialCluster: cluster.initialCluster(["l1", "l2", "l3"]) });
    }
  });
});

describe("answers larger than gRPC's default 4 MiB", { timeout: 150_000 }, () => {
  it("sends a 6-MB Range answer (over gRPC and the gateway) and a watch's 6-MB history whole, as etcd does (it sets no limit)", async () => {
    // etcd's Go client accepts any size; the generated client here is told to as well.
    const m = members[1]!;
    const big = createClients(`127.0.0.1:${m.ports.client}`, undefined, {
      "grpc.max_receive_message_length": -1,
    });
    const stream = big.watch.watch();
    let failure: Error | undefined;
    stream.on("error", (err: Error) => {
      failure = err;
    });
    try {
      const value = Buffer.alloc(1_000_000, 0x61);
      const revisions: bigint[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await call<etcd.PutResponse>(big.kv, "put", {
          key: b(`big/${i}`),
          value,
          lease: 0n,
          prevKv: false,
          ignoreValue: false,
          ignoreLease: false,
        });
        revisions.push(res.header!.revision);
      }
      const range = await call<etcd.RangeResponse>(
        big.kv,
        "range",
        rangeRequest({ key: b("big/"), rangeEnd: b("big0") }),
        30_000,
      );
      expect(range.kvs.map((kv) => [kv.key.toString(), kv.value.length])).toEqual(
        [0, 1, 2, 3, 4, 5].map((i) => [`big/${i}`, 1_000_000]),
      );
      // The same through the JSON gateway.
      const viaGateway = await fetch(`http://127.0.0.1:${m.ports.client}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: b("big/").toString("base64"), range_end: b("big0").toString("base64") }),
      });
      const body = (await viaGateway.json()) as { kvs?: { value: string }[] };
      expect([viaGateway.status, body.kvs?.map((kv) => Buffer.from(kv.value, "base64").length)]).toEqual([
        200,
        [0, 1, 2, 3, 4, 5].map(() => 1_000_000),
      ]);
      // A watch from the first put replays all six.
      const events: bigint[] = [];
      let largest = 0;
      stream.on("data", (res: etcd.WatchResponse) => {
        events.push(...res.events.map((e) => e.kv!.modRevision));
        largest = Math.max(largest, res.events.length);
      });
      stream.write({
        createRequest: watchCreateRequest({
          key: b("big/"),
          rangeEnd: b("big0"),
          startRevision: revisions[0]!,
        }),
      });
      await until(() => {
        if (failure !== undefined) throw new GiveUp(`the watch failed: ${failure.message}`);
        return events.length >= 6;
      }, "the watch's six events");
      expect(events).toEqual(revisions);
      // The six in one response, as etcd replays them: a message of 6 MB.
      expect(largest).toBe(6);
    } finally {
      stream.cancel();
      big.close();
    }
  });

  it("relays a follower's TimeToLive of a lease holding 5 MB of keys, as etcd does", async () => {
    const writer = members[0]!;
    const lease = await grant(writer, 3600n);
    // 40 txns of 128 puts (etcd's op limit), each key about 1 KB.
    const key = (i: number) => b(`lk/${String(i).padStart(5, "0")}/`.padEnd(1000, "k"));
    for (let t = 0; t < 40; t++) {
      const success = Array.from({ length: 128 }, (_, i) => ({
        requestPut: {
          key: key(t * 128 + i),
          value: b("v"),
          lease,
          prevKv: false,
          ignoreValue: false,
          ignoreLease: false,
        },
      }));
      await call(writer.clients.kv, "txn", { compare: [], success, failure: [] }, 30_000);
    }
    // A follower as of now, so the answer is relayed from the leader.
    const {
      followers: [follower],
    } = await followers();
    const big = createClients(`127.0.0.1:${follower!.ports.client}`, undefined, {
      "grpc.max_receive_message_length": -1,
    });
    try {
      const res = await call<etcd.LeaseTimeToLiveResponse>(
        big.lease,
        "leaseTimeToLive",
        { ID: lease, keys: true },
        30_000,
      );
      expect(res.keys.length).toBe(5120);
      expect(res.keys.reduce((n, k) => n + k.length, 0)).toBeGreaterThan(5_000_000);
      await call(big.lease, "leaseRevoke", { ID: lease });
    } finally {
      big.close();
    }
  });
});
