import { createHash } from "node:crypto";
import {
  type ChainfireClients,
  createClients,
  etcd,
  type mvccpb,
  type v3election,
  type v3lock,
} from "@photoncloud/chainfire-api";
import { Metadata, status } from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { deleteRangeRequest, putRequest, rangeRequest, watchCreateRequest } from "../mvcc/messages.js";
import { putCost, txnCost } from "./kv-service.js";
import { startTestServer, type TestServer } from "../testing/test-server.js";

const b = (s: string) => Buffer.from(s);
let server: TestServer;
let clients: ChainfireClients;

// Promisifies one generated unary method.
function call<Req, Res>(client: object, method: string, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as Record<string, (r: Req, cb: (e: Error | null, res: Res) => void) => void>)[method]!.call(
      client,
      request,
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

const put = (key: string, value: string, extra: Partial<etcd.PutRequest> = {}) =>
  call<etcd.PutRequest, etcd.PutResponse>(
    clients.kv,
    "put",
    putRequest({ key: b(key), value: b(value), ...extra }),
  );
const get = (fields: Partial<etcd.RangeRequest>) =>
  call<etcd.RangeRequest, etcd.RangeResponse>(clients.kv, "range", rangeRequest(fields));

async function until(check: () => boolean, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function watchStream(on: ChainfireClients = clients, metadata = new Metadata()) {
  const stream = on.watch.watch(metadata);
  const responses: etcd.WatchResponse[] = [];
  const failure: { error: (Error & { code?: number; details?: string }) | null } = { error: null };
  stream.on("data", (r: etcd.WatchResponse) => responses.push(r));
  stream.on("error", (err: Error) => {
    failure.error = err;
  });
  const create = (fields: Partial<etcd.WatchCreateRequest>) =>
    stream.write({ createRequest: watchCreateRequest(fields) });
  const events = (id: bigint): mvccpb.Event[] =>
    responses.filter((r) => r.watchId === id).flatMap((r) => r.events);
  return { stream, responses, create, events, failure };
}

beforeEach(async () => {
  server = await startTestServer({ store: { quotaBackendBytes: 64n * 1024n * 1024n } });
  clients = createClients(server.endpoint);
});
afterEach(async () => {
  clients.close();
  await server.stop();
});

describe("etcd KV over gRPC", () => {
  it("puts and gets with headers carrying cluster, member, revision and term", async () => {
    // Proves the KV round trip through the generated client and the header contents.
    const r = await put("a", "1");
    expect(r.header).toEqual({
      clusterId: 0xc1a57e12n,
      memberId: 0x8e9e05c52164694dn,
      revision: 2n,
      raftTerm: 2n,
    });
    const got = await get({ key: b("a"), serializable: true });
    expect(got.kvs.map((kv) => kv.value.toString())).toEqual(["1"]);
  });

  it("maps errors to etcd's gRPC codes and messages", async () => {
    // Proves the status mapping: empty key is INVALID_ARGUMENT, compacted revision is OUT_OF_RANGE.
    await expect(put("", "x")).rejects.toMatchObject({ code: 3, details: "etcdserver: key is not provided" });
    await put("k", "1");
    await put("k", "2");
    await call(clients.kv, "compact", { revision: 3n, physical: true });
    await expect(get({ key: b("k"), revision: 2n })).rejects.toMatchObject({
      code: 11,
      details: "etcdserver: mvcc: required revision has been compacted",
    });
    await expect(put("k", "v", { lease: 99n })).rejects.toMatchObject({
      code: 5,
      details: "etcdserver: requested lease not found",
    });
  });

  it("refuses a request larger than max-request-bytes and changes nothing", async () => {
    // Proves the --max-request-bytes check: etcd's message and code, no revision consumed.
    const before = server.store.currentRevision();
    await expect(put("big", "x".repeat(2 * 1024 * 1024))).rejects.toMatchObject({
      code: 3,
      details: "etcdserver: request is too large",
    });
    expect(server.store.currentRevision()).toBe(before);
  });

  it("runs write txns through the log and read-only txns as reads", async () => {
    // Proves Txn over gRPC: a compare-and-put advances one revision, a read-only txn none.
    await put("cas", "old");
    const cmp = {
      result: etcd.Compare_CompareResult.EQUAL,
      target: etcd.Compare_CompareTarget.VALUE,
      key: b("cas"),
      value: b("old"),
      rangeEnd: b(""),
    };
    const written = await call<etcd.TxnRequest, etcd.TxnResponse>(clients.kv, "txn", {
      compare: [cmp],
      success: [
        { requestPut: putRequest({ key: b("cas"), value: b("new") }) },
        { requestDeleteRange: deleteRangeRequest({ key: b("zz") }) },
      ],
      failure: [],
    });
    expect([written.succeeded, written.header!.revision]).toEqual([true, 3n]);
    const read = await call<etcd.TxnRequest, etcd.TxnResponse>(clients.kv, "txn", {
      compare: [cmp],
      success: [],
      failure: [{ requestRange: rangeRequest({ key: b("cas") }) }],
    });
    expect(read.succeeded).toBe(false);
    expect(read.responses[0]!.responseRange!.kvs[0]!.value.toString()).toBe("new");
    expect(server.store.currentRevision()).toBe(3n);
  });

  it("streams a Snapshot as etcd does: bytes and what remains, no header, the sha256 last", async () => {
    // Proves the messages' shape: etcd's Snapshot sends no header (a JSON client through the
    // gateway sees none either); the last message holds the sha256 of the bytes before it.
    await put("snap", "v");
    const stream = clients.maintenance.snapshot({});
    const messages: etcd.SnapshotResponse[] = [];
    stream.on("data", (m: etcd.SnapshotResponse) => messages.push(m));
    await new Promise((resolve, reject) => {
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    expect(messages.length).toBeGreaterThan(1);
    expect(messages.every((m) => m.header === undefined)).toBe(true);
    const last = messages[messages.length - 1]!;
    expect(last.remainingBytes).toBe(0n);
    const image = Buffer.concat(messages.slice(0, -1).map((m) => m.blob));
    expect(Buffer.from(last.blob).toString("hex")).toBe(createHash("sha256").update(image).digest("hex"));
  });

  it("runs a txn holding a nested txn through the log even when it only reads, as etcd does", async () => {
    // Proves etcd's isTxnReadonly: only ranges make a read-only txn. Under the CORRUPT alarm,
    // which refuses what goes through the log, a plain read-only txn is served while one with a
    // nested txn of reads is refused (DataLoss "corrupt cluster"). Before, it was served as a read.
    await put("nr", "v");
    const read = { requestRange: rangeRequest({ key: b("nr") }) };
    const nested = { requestTxn: { compare: [], success: [read], failure: [] } };
    const txn = (success: etcd.RequestOp[]) =>
      call<etcd.TxnRequest, etcd.TxnResponse>(clients.kv, "txn", { compare: [], success, failure: [] });
    const before = server.store.currentRevision();
    const answered = await txn([nested]);
    expect(answered.responses[0]!.responseTxn!.responses[0]!.responseRange!.kvs[0]!.value.toString()).toBe(
      "v",
    );
    expect(server.store.currentRevision()).toBe(before);
    const alarm = (action: etcd.AlarmRequest_AlarmAction) =>
      call(clients.maintenance, "alarm", { action, memberID: 1n, alarm: etcd.AlarmType.CORRUPT });
    await alarm(etcd.AlarmRequest_AlarmAction.ACTIVATE);
    try {
      expect((await txn([read])).responses).toHaveLength(1);
      await expect(txn([nested])).rejects.toMatchObject({ code: 15, details: "etcdserver: corrupt cluster" });
    } finally {
      await alarm(etcd.AlarmRequest_AlarmAction.DEACTIVATE);
    }
  });
});

describe("etcd Lease over gRPC", () => {
  it("grants, lists, keeps alive, reports time to live and revokes with attached keys", async () => {
    // Proves the Lease service end to end, including TTL -1 for a revoked lease.
    const grant = await call<etcd.LeaseGrantRequest, etcd.LeaseGrantResponse>(clients.lease, "leaseGrant", {
      TTL: 60n,
      ID: 0n,
    });
    expect(grant.ID > 0n).toBe(true);
    await put("leased", "v", { lease: grant.ID });
    const list = await call<etcd.LeaseLeasesRequest, etcd.LeaseLeasesResponse>(
      clients.lease,
      "leaseLeases",
      {},
    );
    expect(list.leases.map((l) => l.ID)).toEqual([grant.ID]);
    const ttl = await call<etcd.LeaseTimeToLiveRequest, etcd.LeaseTimeToLiveResponse>(
      clients.lease,
      "leaseTimeToLive",
      { ID: grant.ID, keys: true },
    );
    expect([ttl.grantedTTL, ttl.keys.map(String)]).toEqual([60n, ["leased"]]);
    expect(ttl.TTL > 0n && ttl.TTL <= 60n).toBe(true);
    // A client that half-closes right after its requests (as python-etcd3's refresh does) still
    // gets an answer to each, in order, then the end of the stream.
    const keepAlive = clients.lease.leaseKeepAlive();
    const answers: etcd.LeaseKeepAliveResponse[] = [];
    keepAlive.on("data", (r: etcd.LeaseKeepAliveResponse) => answers.push(r));
    const closed = new Promise((resolve) => keepAlive.on("status", resolve));
    keepAlive.write({ ID: grant.ID });
    keepAlive.write({ ID: grant.ID + 1n });
    keepAlive.write({ ID: grant.ID });
    keepAlive.end();
    expect(await closed).toMatchObject({ code: status.OK });
    expect(answers.map((a) => [a.ID, a.TTL])).toEqual([
      [grant.ID, 60n],
      [grant.ID + 1n, 0n],
      [grant.ID, 60n],
    ]);
    await call(clients.lease, "leaseRevoke", { ID: grant.ID });
    expect((await get({ key: b("leased") })).count).toBe(0n);
    const gone = await call<etcd.LeaseTimeToLiveRequest, etcd.LeaseTimeToLiveResponse>(
      clients.lease,
      "leaseTimeToLive",
      { ID: grant.ID, keys: false },
    );
    expect(gone.TTL).toBe(-1n);
  });
});

describe("lease expiry", () => {
  it("expires a lease through the log when the leader's clock says so, deleting its keys", async () => {
    // Proves the leader-driven expiry path: LeaseDriver proposes LeaseExpire, apply deletes the keys.
    const grant = await call<etcd.LeaseGrantRequest, etcd.LeaseGrantResponse>(clients.lease, "leaseGrant", {
      TTL: 1n,
      ID: 0n,
    });
    await put("ephemeral", "v", { lease: grant.ID });
    const w = watchStream();
    w.create({ key: b("ephemeral") });
    await until(() => w.responses.some((r) => r.created), "created");
    await until(() => w.events(0n).some((e) => e.type === 1), "the delete event of the expired lease");
    expect((await get({ key: b("ephemeral") })).count).toBe(0n);
    expect(server.store.lessor.get(grant.ID)).toBeUndefined();
    w.stream.end();
  });
});

describe("a lease grant over the quota", () => {
  it("raises the NOSPACE alarm and is refused, as a put is", async () => {
    // Proves etcd's quota check for LeaseGrant: before, the grant was refused without the alarm, so
    // `etcdctl alarm list` showed nothing.
    const full = await startTestServer({ store: { quotaBackendBytes: 1n } });
    const c = createClients(full.endpoint);
    try {
      const refused = await call(c.lease, "leaseGrant", { TTL: 60n, ID: 0n }).then(
        () => null,
        (err: { code: number; details: string }) => err,
      );
      expect(refused).toMatchObject({
        code: status.RESOURCE_EXHAUSTED,
        details: "etcdserver: mvcc: database space exceeded",
      });
      expect(full.store.alarms()).toEqual([
        { memberID: 0x8e9e_05c5_2164_694dn, alarm: etcd.AlarmType.NOSPACE },
      ]);
      expect(full.store.lessor.ids()).toEqual([]);
    } finally {
      c.close();
      await full.stop();
    }
  });
});

describe("requests over the quota", () => {
  it("are answered as etcd's quota layer answers them: before their own checks, puts only", async () => {
    // Proves the order etcd 3.4.23 showed: over the quota a malformed put, or a txn with a put and
    // too many operations, gets NOSPACE (and raises the alarm), while a txn that puts nothing is
    // served as usual.
    const full = await startTestServer({ store: { quotaBackendBytes: 1n } });
    const c = createClients(full.endpoint);
    const outcome = (method: string, client: object, request: object) =>
      call(client, method, request).then(
        () => "served",
        (err: { details: string }) => err.details,
      );
    try {
      const range = { requestRange: rangeRequest({ key: b("a") }) };
      const putOp = { requestPut: putRequest({ key: b("a"), value: b("1") }) };
      const tooMany = Array.from({ length: 200 }, () => putOp);
      expect([
        await outcome("put", c.kv, putRequest({ key: b(""), value: b("x") })),
        await outcome("txn", c.kv, { compare: [], success: tooMany, failure: [] }),
        await outcome("txn", c.kv, { compare: [], success: [range], failure: [] }),
        await outcome("txn", c.kv, {
          compare: [],
          success: [{ requestDeleteRange: deleteRangeRequest({ key: b("a") }) }],
          failure: [],
        }),
      ]).toEqual([
        "etcdserver: mvcc: database space exceeded",
        "etcdserver: mvcc: database space exceeded",
        "served",
        "served",
      ]);
      expect(full.store.alarms().map((a) => a.alarm)).toEqual([etcd.AlarmType.NOSPACE]);
    } finally {
      c.close();
      await full.stop();
    }
  });
});

describe("what the quota charges", () => {
  it("charges as etcd's quota layer: a put its key, value and 256 bytes; a txn its dearer branch", () => {
    // Proves etcd's costPut and costTxn: the failure branch is charged when it puts more, and a
    // nested txn's puts are not charged (etcd's costTxn reads only a branch's own puts).
    const op = (key: string, value: string) => ({ requestPut: putRequest({ key: b(key), value: b(value) }) });
    expect(putCost(putRequest({ key: b("k"), value: b("vv") }))).toBe(259);
    const nested = { requestTxn: { compare: [], success: [op("n", "x".repeat(100))], failure: [] } };
    expect(
      txnCost({ compare: [], success: [op("a", "1"), nested], failure: [op("b", "22"), op("c", "333")] }),
    ).toBe(256 + 3 + 256 + 4);
    expect(txnCost({ compare: [], success: [op("a", "1")], failure: [] })).toBe(258);
    expect(txnCost({ compare: [], success: [nested], failure: [] })).toBe(0);
  });
});

describe("keep-alive of a lease whose time is up", () => {
  it("is not renewed: it answers TTL 0 once the lease's revocation is applied, as etcd does", async () => {
    // Proves a keep-alive cannot bring back a lease the leader already counts as expired. The API's
    // clock runs two minutes ahead of the lease driver's, so the 60-s lease is expired for the
    // keep-alive while its revocation is not proposed; a LeaseRevoke then plays the revocation.
    // Before, the keep-alive renewed it and answered TTL 60.
    const ahead = await startTestServer({ apiClockAheadMs: 120_000 });
    const c = createClients(ahead.endpoint);
    try {
      const grant = await call<etcd.LeaseGrantRequest, etcd.LeaseGrantResponse>(c.lease, "leaseGrant", {
        TTL: 60n,
        ID: 0n,
      });
      await call(c.kv, "put", putRequest({ key: b("held"), value: b("v"), lease: grant.ID }));
      const keepAlive = c.lease.leaseKeepAlive();
      const answers: etcd.LeaseKeepAliveResponse[] = [];
      keepAlive.on("data", (r: etcd.LeaseKeepAliveResponse) => answers.push(r));
      keepAlive.write({ ID: grant.ID });
      // An unknown lease after it on the same stream is answered after it, as etcd answers each
      // request before it reads the next: neither before the revocation.
      keepAlive.write({ ID: grant.ID + 1n });
      await until(() => ahead.store.lessor.settling === 1, "the keep-alive to wait for the revocation");
      expect(answers).toEqual([]);
      expect(ahead.store.lessor.get(grant.ID)).toBeDefined();
      await call(c.lease, "leaseRevoke", { ID: grant.ID });
      await until(() => answers.length === 2, "the answers");
      expect(answers[0]).toMatchObject({ ID: grant.ID, TTL: 0n });
      expect(answers[1]).toMatchObject({ ID: grant.ID + 1n, TTL: 0n });
      // The answer came after the revocation: the key went with the lease.
      expect(answers[0]!.header!.revision).toBe(ahead.store.currentRevision());
      const held = await call<etcd.RangeRequest, etcd.RangeResponse>(
        c.kv,
        "range",
        rangeRequest({ key: b("held") }),
      );
      expect(held.count).toBe(0n);
      const closed = new Promise((resolve) => keepAlive.on("status", resolve));
      keepAlive.end();
      expect(await closed).toMatchObject({ code: status.OK });
    } finally {
      c.close();
      await ahead.stop();
    }
  });
});

describe("the lease clock", () => {
  it("counts leases down in real time whatever the wall clock does: a step neither expires nor keeps them", async () => {
    // Proves that an NTP correction or an operator setting the leader's clock does not move lease
    // expiry: etcd compares monotonic readings. Before, a step forward expired every lease with less
    // time left than the step at the driver's next round, and a step back kept them that much longer.
    const s = await startTestServer();
    const c = createClients(s.endpoint);
    const realNow = Date.now.bind(Date);
    try {
      const grant = (TTL: bigint) =>
        call<etcd.LeaseGrantRequest, etcd.LeaseGrantResponse>(c.lease, "leaseGrant", { TTL, ID: 0n });
      const has = async (key: string) =>
        (await call<etcd.RangeRequest, etcd.RangeResponse>(c.kv, "range", rangeRequest({ key: b(key) })))
          .count === 1n;
      const ttlOf = async (ID: bigint) =>
        (
          await call<etcd.LeaseTimeToLiveRequest, etcd.LeaseTimeToLiveResponse>(c.lease, "leaseTimeToLive", {
            ID,
            keys: false,
          })
        ).TTL;
      const long = await grant(30n);
      await call(c.kv, "put", putRequest({ key: b("clock/long"), value: b("v"), lease: long.ID }));

      // An hour forward: the 30-s lease still has its time, for TimeToLive and the driver.
      vi.spyOn(Date, "now").mockImplementation(() => realNow() + 3_600_000);
      expect(await ttlOf(long.ID)).toBeGreaterThanOrEqual(28n);
      await s.leaseDriver.tick();
      expect(await has("clock/long")).toBe(true);

      // An hour back: the 30-s lease does not gain the hour, and a 2-s lease granted now still
      // expires in about 2 s and takes its key.
      vi.spyOn(Date, "now").mockImplementation(() => realNow() - 3_600_000);
      expect(await ttlOf(long.ID)).toBeLessThanOrEqual(30n);
      const granted = performance.now();
      const short = await grant(2n);
      await call(c.kv, "put", putRequest({ key: b("clock/short"), value: b("v"), lease: short.ID }));
      while (await has("clock/short")) {
        if (performance.now() - granted > 20_000) throw new Error("the 2-s lease did not expire in 20 s");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(performance.now() - granted).toBeGreaterThanOrEqual(1_900);
      expect(await has("clock/long")).toBe(true);
    } finally {
      vi.restoreAllMocks();
      c.close();
      await s.stop();
    }
  });
});

describe("etcd Watch over gRPC", () => {
  it("delivers live events, history from a start revision with prev_kv, and honours filters", async () => {
    // Proves many watchers on one stream: live, catch-up from history, and NOPUT filtering.
    await put("w/a", "1");
    await put("w/a", "2");
    const w = watchStream();
    w.create({ key: b("w/"), rangeEnd: b("w0") });
    w.create({ key: b("w/a"), startRevision: 2n, prevKv: true });
    w.create({ key: b("w/"), rangeEnd: b("w0"), filters: [etcd.WatchCreateRequest_FilterType.NOPUT] });
    await until(() => w.responses.filter((r) => r.created).length === 3, "three created responses");
    await put("w/b", "3");
    await call(clients.kv, "deleteRange", deleteRangeRequest({ key: b("w/a") }));
    await until(
      () => w.events(0n).length === 2 && w.events(1n).length === 3 && w.events(2n).length === 1,
      "events",
    );
    expect(w.events(0n).map((e) => [e.type, e.kv!.key.toString(), e.kv!.modRevision])).toEqual([
      [0, "w/b", 4n],
      [1, "w/a", 5n],
    ]);
    expect(w.events(1n).map((e) => [e.kv!.value.toString(), e.prevKv?.value.toString()])).toEqual([
      ["1", undefined],
      ["2", "1"],
      ["", "2"],
    ]);
    expect(w.events(2n).map((e) => e.type)).toEqual([1]);
    w.stream.end();
  });

  it("cancels a watcher whose start revision is compacted, with the compact revision", async () => {
    // Proves cancellation with compact_revision, and explicit cancel of another watcher.
    for (let i = 0; i < 4; i++) await put("c", String(i));
    await call(clients.kv, "compact", { revision: 4n, physical: true });
    const w = watchStream();
    w.create({ key: b("c"), startRevision: 2n });
    await until(() => w.responses.some((r) => r.canceled), "compaction cancel");
    const canceled = w.responses.find((r) => r.canceled)!;
    expect([canceled.watchId, canceled.compactRevision]).toEqual([0n, 4n]);
    w.create({ key: b("c") });
    await until(() => w.responses.filter((r) => r.created).length === 2, "second watcher");
    w.stream.write({ cancelRequest: { watchId: 1n } });
    await until(() => w.responses.filter((r) => r.canceled).length === 2, "explicit cancel");
    // As etcd: the watcher compaction canceled keeps its ID until the client cancels it too, and
    // that cancel is answered (clientv3 sends it); a second cancel of it is not.
    w.stream.write({ cancelRequest: { watchId: 0n } });
    w.stream.write({ cancelRequest: { watchId: 0n } });
    await until(
      () => w.responses.filter((r) => r.canceled).length === 3,
      "the cancel of the compacted watcher",
    );
    expect(w.responses.filter((r) => r.canceled).map((r) => [r.watchId, r.compactRevision])).toEqual([
      [0n, 4n],
      [1n, 0n],
      [0n, 0n],
    ]);
    w.stream.write({ progressRequest: {} });
    await until(() => w.responses.some((r) => r.watchId === -1n), "progress response");
    expect(w.responses.find((r) => r.watchId === -1n)!.header!.revision).toBe(5n);
    w.stream.end();
  });

  it("answers a progress request only once every watcher of the stream has caught up", async () => {
    // Proves a progress answer at revision R means the stream's watchers have had every event up
    // to R (what clients take it for): etcd 3.4.23 answered at once, ahead of the events a watcher
    // catching up from history still owed (fixed in later 3.4 releases).
    const slow = await startTestServer({ hub: { catchUpRowsMax: 10, catchUpIntervalMs: 5 } });
    const c = createClients(slow.endpoint);
    try {
      for (let i = 0; i < 100; i++)
        await call(c.kv, "put", putRequest({ key: b(`prog/${i}`), value: b("v") }));
      const w = watchStream(c);
      w.create({ key: b("prog/"), rangeEnd: b("prog0"), startRevision: 1n });
      w.stream.write({ progressRequest: {} });
      await until(() => w.responses.some((r) => r.watchId === -1n), "the progress answer");
      const at = w.responses.findIndex((r) => r.watchId === -1n);
      const progress = w.responses[at]!.header!.revision;
      const before = w.responses.slice(0, at).flatMap((r) => r.events);
      expect(progress).toBe(101n);
      expect(before.map((e) => e.kv!.modRevision)).toEqual(
        Array.from({ length: 100 }, (_, i) => BigInt(i + 2)),
      );
      w.stream.end();
    } finally {
      c.close();
      await slow.stop();
    }
  });

  it("keeps watching after the client ends its sending side, as etcd does", async () => {
    // Proves a half-closed stream (grpcurl, grpc-gateway) still gets its events: before, the
    // server ended the stream and canceled its watchers when the client stopped sending.
    const w = watchStream();
    w.create({ key: b("hc") });
    await until(() => w.responses.some((r) => r.created), "created");
    w.stream.end();
    await put("hc", "after half-close");
    await until(() => w.events(0n).length === 1, "the event after the half-close");
    expect(w.events(0n)[0]!.kv!.value.toString()).toBe("after half-close");
    w.stream.cancel();
  });

  it("takes an empty watch key as the smallest key, \\0, as etcd does", async () => {
    // Proves a watch created with no key watches "\0" (alone, or from it with range end "\0").
    const w = watchStream();
    w.create({});
    w.create({ rangeEnd: Buffer.from([0]) });
    await until(() => w.responses.filter((r) => r.created).length === 2, "two created responses");
    await put("\0", "zero");
    await put("z", "other");
    await until(() => w.events(1n).length === 2, "both events on the open-ended watcher");
    expect(w.events(0n).map((e) => e.kv!.value.toString())).toEqual(["zero"]);
    w.stream.cancel();
  });

  it("refuses an empty watch range and a duplicate watch ID as etcd does, keeping the first watcher", async () => {
    // Proves etcd's refusals: created and canceled at once under ID -1, the existing watcher untouched.
    const w = watchStream();
    w.create({ key: b("k"), watchId: 5n });
    w.create({ key: b("i/z"), rangeEnd: b("i/a") });
    w.create({ key: b("other"), watchId: 5n });
    await until(() => w.responses.filter((r) => r.created).length === 3, "three create answers");
    const refused = w.responses.filter((r) => r.canceled);
    expect(refused.map((r) => [r.watchId, r.created, r.cancelReason])).toEqual([
      [-1n, true, "mvcc: watcher range is empty"],
      [-1n, true, "mvcc: duplicate watch ID provided on the WatchStream"],
    ]);
    await put("k", "still watched");
    await until(() => w.events(5n).length === 1, "the first watcher's event");
    w.stream.end();
  });

  it("skips a progress notification for a watcher sent events since the last one, as etcd does", async () => {
    // Proves progress_notify's elision: at a tick, only watchers without events since the previous
    // tick are told the current revision, and none whose start is still ahead. The stream's interval (etcd's 10 minutes) is driven by hand.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      const w = watchStream();
      w.create({ key: b("busy"), watchId: 1n, progressNotify: true });
      w.create({ key: b("quiet"), watchId: 2n, progressNotify: true });
      // A watcher that starts past the current revision gets none: it would go below its start.
      const future = server.store.currentRevision() + 1000n;
      w.create({ key: b("later"), watchId: 3n, progressNotify: true, startRevision: future });
      await until(() => w.responses.filter((r) => r.created).length === 3, "the watchers created");
      const progress = (id: bigint) =>
        w.responses.filter((r) => r.watchId === id && !r.created && !r.canceled && r.events.length === 0);
      await put("busy", "1");
      await until(() => w.events(1n).length === 1, "the busy watcher's event");
      vi.advanceTimersByTime(600_000);
      // The stream writes a tick's notifications in watcher order: the busy one would come first.
      await until(() => progress(2n).length === 1, "the quiet watcher's notification");
      expect(progress(1n)).toEqual([]);
      vi.advanceTimersByTime(600_000);
      await until(() => progress(2n).length === 2, "the second tick");
      expect(progress(1n).map((r) => r.header!.revision)).toEqual([server.store.currentRevision()]);
      expect(progress(3n)).toEqual([]);
      w.stream.end();
    } finally {
      vi.useRealTimers();
    }
  });

  it("splits a large delivery into fragments when asked", async () => {
    // Proves the fragment flag: one revision's events arrive in several responses, the last unflagged.
    await server.stop();
    server = await startTestServer({ watchFragmentBytesMax: 200 });
    clients.close();
    clients = createClients(server.endpoint);
    const w = watchStream();
    w.create({ key: b("f/"), rangeEnd: b("f0"), fragment: true });
    await until(() => w.responses.some((r) => r.created), "created");
    const ops = Array.from({ length: 10 }, (_, i) => ({
      requestPut: putRequest({ key: b(`f/${i}`), value: Buffer.alloc(50, 1) }),
    }));
    await call(clients.kv, "txn", { compare: [], success: ops, failure: [] });
    await until(() => w.events(0n).length === 10, "all ten events");
    const parts = w.responses.filter((r) => r.events.length > 0);
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.map((p) => p.fragment)).toEqual([...parts.slice(1).map(() => true), false]);
    // Cut as etcd cuts: each response under the limit with its flag set, and filled as far as that allows.
    const size = (r: etcd.WatchResponse) =>
      etcd.WatchResponse.encode({ ...r, fragment: true }).finish().length;
    for (const [i, part] of parts.entries()) {
      expect(size(part)).toBeLessThan(200);
      const next = parts[i + 1]?.events[0];
      if (next !== undefined)
        expect(size({ ...part, events: [...part.events, next] })).toBeGreaterThanOrEqual(200);
    }
    w.stream.end();
  });

  it("lets a congested watcher catch up from storage without losing or reordering events", async () => {
    // Proves the slow-watcher path: thousands of events to a watcher that does not read stay complete and ordered.
    const w = watchStream();
    w.stream.pause();
    w.create({ key: b("s/"), rangeEnd: b("s0") });
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => put(`s/${batch * 100 + i}`, "x".repeat(200))));
    }
    w.stream.resume();
    await until(
      () => w.events(0n).length === 2000,
      () => `2000 events, have ${w.events(0n).length}, hub unsynced watchers: ${server.hub.watcherCount}`,
    );
    const revisions = w.events(0n).map((e) => e.kv!.modRevision);
    expect(revisions).toEqual([...revisions].sort((x, y) => (x < y ? -1 : 1)));
    expect(new Set(revisions).size).toBe(2000);
  });
});

describe("etcd Maintenance over gRPC", () => {
  it("reports status, hashes and alarms", async () => {
    // Proves Status fields, HashKV stability and the alarm list.
    await put("m", "1");
    const st = await call<etcd.StatusRequest, etcd.StatusResponse>(clients.maintenance, "status", {});
    expect([st.version, st.leader, st.raftAppliedIndex, st.isLearner]).toEqual([
      "3.4.0",
      0x8e9e05c52164694dn,
      1n,
      false,
    ]);
    expect(st.dbSize > 0n).toBe(true);
    const h1 = await call<etcd.HashKVRequest, etcd.HashKVResponse>(clients.maintenance, "hashKv", {
      revision: 0n,
    });
    const h2 = await call<etcd.HashKVRequest, etcd.HashKVResponse>(clients.maintenance, "hashKv", {
      revision: 0n,
    });
    expect(h1.hash).toBe(h2.hash);
    const alarms = await call<etcd.AlarmRequest, etcd.AlarmResponse>(clients.maintenance, "alarm", {
      action: 0,
      memberID: 0n,
      alarm: 0,
    });
    expect(alarms.alarms).toEqual([]);
  });

  it("ends watch, keep-alive and Observe streams that require a leader once the member has none, as etcd does", async () => {
    // Proves clientv3.WithRequireLeader semantics: a cut-off member says so instead of going quiet.
    let leader = 0x8e9e_05c5_2164_694dn;
    const member = await startTestServer({ leaderId: () => leader, leaderCheckMs: 20 });
    const c = createClients(member.endpoint);
    const open = (requireLeader: boolean) => {
      const md = new Metadata();
      if (requireLeader) md.set("hasleader", "true");
      const w = watchStream(c, md);
      w.create({ key: b("w") });
      return w;
    };
    const created = (w: ReturnType<typeof open>) => w.responses.some((r) => r.created);
    try {
      const required = open(true);
      const plain = open(false);
      await until(() => created(required) && created(plain), "both watchers created");
      const md = new Metadata();
      md.set("hasleader", "true");
      const keepAlive = c.lease.leaseKeepAlive(md);
      let keepAliveError: unknown = null;
      let keepAliveAnswers = 0;
      keepAlive.on("data", () => keepAliveAnswers++);
      keepAlive.on("error", (err: Error) => {
        keepAliveError = err;
      });
      keepAlive.write({ ID: 1n });
      await until(() => keepAliveAnswers === 1, "a keep-alive answer while there is a leader");
      // An election's Observe too (etcd's interceptor cancels its context); a candidate's key is
      // there, so it answers at once.
      await call(c.kv, "put", putRequest({ key: b("e/1"), value: b("candidate") }));
      const observe = c.election.observe({ name: b("e") }, md);
      let observeError: unknown = null;
      let observed = 0;
      observe.on("data", () => observed++);
      observe.on("error", (err: Error) => {
        observeError = err;
      });
      await until(() => observed === 1, "the Observe's current leader");
      leader = 0n;
      await until(() => observeError !== null, "the leader-requiring Observe to end");
      expect(observeError).toMatchObject({ code: status.CANCELLED, details: "context canceled" });
      await until(() => required.failure.error !== null, "the leader-requiring stream to end");
      expect(required.failure.error).toMatchObject({
        code: status.UNAVAILABLE,
        details: "etcdserver: no leader",
      });
      await until(() => keepAliveError !== null, "the leader-requiring keep-alive stream to end");
      expect(keepAliveError).toMatchObject({ code: status.UNAVAILABLE, details: "etcdserver: no leader" });
      const refused = open(true);
      await until(() => refused.failure.error !== null, "a new leader-requiring stream to be refused");
      expect(refused.failure.error).toMatchObject({
        code: status.UNAVAILABLE,
        details: "etcdserver: no leader",
      });
      // A stream that did not ask keeps watching.
      await call(c.kv, "put", putRequest({ key: b("w"), value: b("v") }));
      await until(() => plain.responses.some((r) => r.events.length === 1), "the plain watcher's event");
      expect(plain.failure.error).toBeNull();
      plain.stream.end();
    } finally {
      c.close();
      await member.stop();
    }
  });

  it("says in Status when the member knows no leader, as etcd does", async () => {
    // Proves health checks reading Status.errors see a member cut off from its cluster.
    const alone = await startTestServer({ leaderId: () => 0n });
    const aloneClients = createClients(alone.endpoint);
    try {
      const st = await call<etcd.StatusRequest, etcd.StatusResponse>(aloneClients.maintenance, "status", {});
      expect([st.leader, st.errors]).toEqual([0n, ["etcdserver: no leader"]]);
    } finally {
      aloneClients.close();
      await alone.stop();
    }
  });
});

describe("etcd Lock and Election over gRPC", () => {
  const grant = async (TTL: bigint) =>
    (
      await call<etcd.LeaseGrantRequest, etcd.LeaseGrantResponse>(clients.lease, "leaseGrant", {
        TTL,
        ID: 0n,
      })
    ).ID;
  /** Waits (with a deadline) until `n` keys are queued under `prefix`. */
  const queued = async (prefix: string, n: bigint) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { count } = await get({
        key: b(prefix),
        rangeEnd: b(`${prefix.slice(0, -1)}0`),
        countOnly: true,
      });
      if (count === n) return;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${n} keys under ${prefix} (${count})`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };

  it("hands a lock on when its holder's lease is revoked, and a waiter that cancels leaves the queue", async () => {
    // Proves the lock's queue: a cancelled Lock deletes its key (as etcd's Mutex does), the lease
    // ending releases the holder, and the next waiter in create order gets the lock.
    const [a, b2, c] = [await grant(60n), await grant(60n), await grant(60n)];
    const held = await call<v3lock.LockRequest, v3lock.LockResponse>(clients.lock, "lock", {
      name: b("q"),
      lease: a,
    });
    expect(held.key.toString()).toBe(`q/${a.toString(16)}`);
    const cancelled = clients.lock.lock({ name: b("q"), lease: b2 }, () => undefined);
    await queued("q/", 2n);
    cancelled.cancel();
    await queued("q/", 1n);
    let got: v3lock.LockResponse | undefined;
    void call<v3lock.LockRequest, v3lock.LockResponse>(clients.lock, "lock", { name: b("q"), lease: c }).then(
      (r) => (got = r),
    );
    await queued("q/", 2n);
    expect(got).toBeUndefined();
    await call(clients.lease, "leaseRevoke", { ID: a });
    await until(() => got !== undefined, "the waiter to get the lock");
    expect(got!.key.toString()).toBe(`q/${c.toString(16)}`);
  });

  it("fails a Lock or Campaign whose own lease ends while it waits, at once, and passes the place on", async () => {
    // Proves a waiter is never told it holds a lock, or leads, once its key has gone with its lease:
    // etcd 3.4 answered such a Lock as held when the holder let go, while the waiter after it took
    // the lock too. Here the waiter fails as soon as its key goes, with clientv3's texts.
    const [holder, waiter, next] = [await grant(60n), await grant(60n), await grant(60n)];
    await call(clients.lock, "lock", { name: b("gone"), lease: holder });
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (err: Error & { code?: number; details?: string }) => ({ code: err.code, details: err.details }),
      );
    const waiting = failure(call(clients.lock, "lock", { name: b("gone"), lease: waiter }));
    await queued("gone/", 2n);
    let nextGot: v3lock.LockResponse | undefined;
    void call<v3lock.LockRequest, v3lock.LockResponse>(clients.lock, "lock", {
      name: b("gone"),
      lease: next,
    }).then((r) => (nextGot = r));
    await queued("gone/", 3n);
    await call(clients.lease, "leaseRevoke", { ID: waiter });
    // Told while the holder still holds the lock, not when it lets go.
    expect(await waiting).toEqual({ code: status.UNKNOWN, details: "session expired" });
    expect(nextGot).toBeUndefined();
    await call(clients.lock, "unlock", { key: b(`gone/${holder.toString(16)}`) });
    await until(() => nextGot !== undefined, "the next waiter to get the lock");
    expect(nextGot!.key.toString()).toBe(`gone/${next.toString(16)}`);

    const [leader, candidate] = [await grant(60n), await grant(60n)];
    await call(clients.election, "campaign", { name: b("gone-e"), lease: leader, value: b("l") });
    const campaigning = failure(
      call(clients.election, "campaign", { name: b("gone-e"), lease: candidate, value: b("c") }),
    );
    await queued("gone-e/", 2n);
    await call(clients.lease, "leaseRevoke", { ID: candidate });
    expect(await campaigning).toEqual({ code: status.UNKNOWN, details: "election: not leader" });
    const { kv } = await call<v3election.LeaderRequest, v3election.LeaderResponse>(
      clients.election,
      "leader",
      {
        name: b("gone-e"),
      },
    );
    expect(kv!.value.toString()).toBe("l");
  });

  it("holds an Observe whose client stops reading, then delivers every value in order", async () => {
    // Proves backpressure on Observe: while the client reads nothing, its changes wait in storage
    // (the observer's watch is unsynced) instead of in the stream's buffer, and none is lost.
    const lease = await grant(60n);
    const { leader } = await call<v3election.CampaignRequest, v3election.CampaignResponse>(
      clients.election,
      "campaign",
      { name: b("slow"), lease, value: b("v0") },
    );
    const observer = clients.election.observe({ name: b("slow") });
    const seen: string[] = [];
    observer.on("data", (r: v3election.LeaderResponse) => seen.push(r.kv!.value.toString().trim()));
    observer.on("error", () => {});
    await until(() => seen.length === 1, "the observer's first answer");
    observer.pause();
    const values = Array.from({ length: 2000 }, (_, i) => `v${i + 1}`);
    for (let i = 0; i < values.length; i += 100)
      await Promise.all(
        values
          .slice(i, i + 100)
          .map((v) => call(clients.election, "proclaim", { leader, value: b(v.padEnd(200)) })),
      );
    await until(() => server.hub.unsyncedCount > 0, "the observer's watch to wait in storage");
    observer.resume();
    await until(
      () => seen.length === 2001,
      () => `2001 values, have ${seen.length}`,
    );
    expect(seen).toEqual(["v0", ...values]);
    expect(server.hub.unsyncedCount).toBe(0);
    observer.cancel();
  });

  it("ends an Observe when the client cancels it, and answers Leader with the first candidate", async () => {
    // Proves the election's reads: the leader is the oldest candidate, and a cancelled observer
    // stream is let go.
    const [x, y] = [await grant(60n), await grant(60n)];
    await call(clients.election, "campaign", { name: b("e"), lease: x, value: b("x") });
    const observer = clients.election.observe({ name: b("e") });
    const seen: v3election.LeaderResponse[] = [];
    let ended: Error | null | undefined;
    observer.on("data", (r: v3election.LeaderResponse) => seen.push(r));
    observer.on("error", (err: Error) => (ended = err));
    observer.on("end", () => (ended ??= null));
    const pending = call(clients.election, "campaign", { name: b("e"), lease: y, value: b("y") });
    await until(() => seen.length === 1, "the observer's first answer");
    expect(seen[0]!.kv!.value.toString()).toBe("x");
    const leader = await call<v3election.LeaderRequest, v3election.LeaderResponse>(
      clients.election,
      "leader",
      {
        name: b("e"),
      },
    );
    expect(leader.kv!.value.toString()).toBe("x");
    observer.cancel();
    await until(() => ended !== undefined, "the observer to end");
    await call(clients.lease, "leaseRevoke", { ID: x });
    const next = (await pending) as v3election.CampaignResponse;
    expect(next.leader!.key.toString()).toBe(`e/${y.toString(16)}`);
  });
});
