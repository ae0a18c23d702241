// Randomised differential test: seeded sequences of KV, Txn, Compact, Lease and HashKV requests sent
// to a 1-member etcd 3.4 and to any member of a 3-member chainfire, over gRPC or (a quarter) the JSON
// gateway, each answer or error compared; then watches compared: live ones opened before each seed,
// and ones replaying the history (all of it with prev_kv, or parts with filters, or from compacted
// revisions). Both servers start empty and receive the same requests in the same order, so
// revisions, versions and errors must agree exactly. What legitimately differs: member and cluster
// IDs and terms in headers, remaining lease TTLs (timing), the order of lease lists, and the order
// of ties under a non-key sort (etcd sorts those with Go's unstable sort). Where etcd's single member
// is always current, a chainfire member is first made to catch up (caughtUp), and etcd is made to
// finish its background compactions before a HashKV (etcdCompactionsSettled).
//
// KV_DIFF_SEEDS (e.g. "1-200" or "7,9") and KV_DIFF_OPS (requests per seed) widen the search. A
// failure names the seed and the request. Each seed starts where the previous ones left the stores,
// so the same list of seeds up to that one replays it.
import type { ServiceError } from "@grpc/grpc-js";
import { type ChainfireClients, etcd, type mvccpb } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prefixEnd } from "../src/mvcc/key-range.js";
import { deleteRangeRequest, putRequest, rangeRequest } from "../src/mvcc/messages.js";
import { call, until } from "./support/daemon-cluster.js";
import {
  allOps,
  caughtUp,
  countFromEnv,
  refusedOnPurpose,
  type Side,
  type Sides,
  seedsFromEnv,
  selectEvents,
  startSides,
  type WatchedEvent,
  watchedEvent,
} from "./support/random-diff.js";

const SEEDS = seedsFromEnv("KV_DIFF_SEEDS", "1-8");
const OPS = countFromEnv("KV_DIFF_OPS", 300);

/** The keys the requests touch: nested prefixes, a key below and above them, and a 0xff key. */
const KEYS = ["a", "a/", "a/1", "a/2", "a/2/x", "b", "b0", "c", "\xff", "\xff\xff"].map((k) =>
  Buffer.from(k, "latin1"),
);
const VALUES = ["", "v0", "v1", "v2", "a longer value"].map((v) => Buffer.from(v));
/** Lease IDs granted explicitly (both servers then hold the same IDs); 0 is "no lease". */
const LEASES = [0n, 0x10n, 0x20n, 0x7fff_ffff_ffff_fff0n];

type Request =
  | { rpc: "range"; req: etcd.RangeRequest }
  | { rpc: "put"; req: etcd.PutRequest }
  | { rpc: "deleteRange"; req: etcd.DeleteRangeRequest }
  | { rpc: "txn"; req: etcd.TxnRequest }
  | { rpc: "compact"; req: etcd.CompactionRequest }
  | { rpc: "leaseGrant"; req: etcd.LeaseGrantRequest }
  | { rpc: "leaseRevoke"; req: etcd.LeaseRevokeRequest }
  | { rpc: "leaseTimeToLive"; req: etcd.LeaseTimeToLiveRequest }
  | { rpc: "leaseLeases"; req: etcd.LeaseLeasesRequest }
  | { rpc: "hashKv"; req: etcd.HashKVRequest };

/** Draws requests; tracks the revision as the servers report it, so revision fields land near it. */
class Generator {
  revision = 1n;
  compacted = 0n;

  constructor(private readonly rnd: SeededRandom) {}

  private pick<T>(items: readonly T[]): T {
    return items[this.rnd.intBelow(items.length)]!;
  }

  private key(): Buffer {
    // Now and then the empty key, which every request refuses.
    return this.rnd.chance(0.02) ? Buffer.alloc(0) : this.pick(KEYS);
  }

  private rangeEnd(key: Buffer): Buffer {
    switch (this.rnd.intBelow(6)) {
      case 0:
      case 1:
        return Buffer.alloc(0);
      case 2:
        return Buffer.from([0]);
      case 3:
        return key.length === 0 ? Buffer.alloc(0) : prefixEnd(key);
      default:
        return this.pick(KEYS);
    }
  }

  /** A revision around the ones that exist: 0 (newest), old, compacted, current, future. */
  private someRevision(): bigint {
    switch (this.rnd.intBelow(8)) {
      case 0:
      case 1:
      case 2:
        return 0n;
      case 3:
        return this.revision;
      case 4:
        return this.revision + 1n + BigInt(this.rnd.intBelow(2));
      case 5:
        return -1n;
      default:
        return BigInt(1 + this.rnd.intBelow(Number(this.revision)));
    }
  }

  /** A value for a revision filter or a compare: 0 often, else near the existing revisions. */
  private revisionBound(): bigint {
    return this.rnd.chance(0.5) ? 0n : BigInt(this.rnd.intBelow(Number(this.revision) + 2));
  }

  range(): etcd.RangeRequest {
    const key = this.key();
    const sortOrder = this.rnd.chance(0.6) ? etcd.RangeRequest_SortOrder.NONE : this.pick([1, 2]);
    const sortTarget = this.rnd.chance(0.5) ? etcd.RangeRequest_SortTarget.KEY : this.pick([1, 2, 3, 4]);
    return rangeRequest({
      key,
      rangeEnd: this.rangeEnd(key),
      limit: this.rnd.chance(0.6) ? 0n : this.pick([1n, 2n, 3n, 5n, -1n]),
      revision: this.someRevision(),
      sortOrder,
      sortTarget,
      serializable: this.rnd.chance(0.3),
      // Not with a sort on the value: the empty values would hide the order.
      keysOnly: sortTarget !== etcd.RangeRequest_SortTarget.VALUE && this.rnd.chance(0.2),
      countOnly: this.rnd.chance(0.1),
      minModRevision: this.rnd.chance(0.85) ? 0n : this.revisionBound(),
      maxModRevision: this.rnd.chance(0.85) ? 0n : this.revisionBound(),
      minCreateRevision: this.rnd.chance(0.85) ? 0n : this.revisionBound(),
      maxCreateRevision: this.rnd.chance(0.85) ? 0n : this.revisionBound(),
    });
  }

  put(): etcd.PutRequest {
    const ignoreValue = this.rnd.chance(0.1);
    const ignoreLease = this.rnd.chance(0.1);
    return putRequest({
      key: this.key(),
      // With ignore_value, a value is mostly left out (etcd refuses one that is given).
      value: ignoreValue && this.rnd.chance(0.8) ? Buffer.alloc(0) : this.pick(VALUES),
      lease: ignoreLease && this.rnd.chance(0.8) ? 0n : this.rnd.chance(0.7) ? 0n : this.pick(LEASES),
      prevKv: this.rnd.chance(0.4),
      ignoreValue,
      ignoreLease,
    });
  }

  deleteRange(): etcd.DeleteRangeRequest {
    const key = this.key();
    return deleteRangeRequest({ key, rangeEnd: this.rangeEnd(key), prevKv: this.rnd.chance(0.5) });
  }

  private compare(): etcd.Compare {
    const key = this.key();
    const target = this.rnd.intBelow(5) as etcd.Compare_CompareTarget;
    const c: etcd.Compare = {
      result: this.rnd.intBelow(4) as etcd.Compare_CompareResult,
      target,
      key,
      rangeEnd: this.rnd.chance(0.7) ? Buffer.alloc(0) : this.rangeEnd(key),
    };
    switch (target) {
      case etcd.Compare_CompareTarget.VERSION:
        c.version = BigInt(this.rnd.intBelow(4));
        break;
      case etcd.Compare_CompareTarget.CREATE:
        c.createRevision = this.revisionBound();
        break;
      case etcd.Compare_CompareTarget.MOD:
        c.modRevision = this.revisionBound();
        break;
      case etcd.Compare_CompareTarget.VALUE:
        c.value = this.pick(VALUES);
        break;
      default:
        c.lease = this.pick(LEASES);
    }
    return c;
  }

  private op(depth: number): etcd.RequestOp {
    const kind = this.rnd.intBelow(depth < 2 ? 4 : 3);
    if (kind === 0) return { requestRange: this.range() };
    if (kind === 1) return { requestPut: this.put() };
    if (kind === 2) return { requestDeleteRange: this.deleteRange() };
    return { requestTxn: this.txn(depth + 1) };
  }

  txn(depth = 0): etcd.TxnRequest {
    const ops = (n: number) => Array.from({ length: this.rnd.intBelow(n) }, () => this.op(depth));
    return {
      compare: Array.from({ length: this.rnd.intBelow(3) }, () => this.compare()),
      success: ops(4),
      failure: ops(3),
    };
  }

  next(): Request {
    const p = this.rnd.intBelow(100);
    if (p < 25) return { rpc: "range", req: this.range() };
    if (p < 50) return { rpc: "put", req: this.put() };
    if (p < 60) return { rpc: "deleteRange", req: this.deleteRange() };
    if (p < 82) {
      let txn = this.txn();
      while (refusedOnPurpose(txn)) txn = this.txn();
      return { rpc: "txn", req: txn };
    }
    if (p < 85) {
      // Mostly at or below the newest revision; sometimes at the compacted one, or in the future.
      const revision = this.rnd.chance(0.15)
        ? this.revision + 1n
        : this.rnd.chance(0.1)
          ? this.compacted
          : this.compacted + BigInt(this.rnd.intBelow(Number(this.revision - this.compacted) + 1));
      return { rpc: "compact", req: { revision, physical: this.rnd.chance(0.5) } };
    }
    if (p < 90) {
      // Long enough not to expire during the test; now and then etcd's largest, or one past it.
      const TTL = this.rnd.chance(0.8) ? 3600n : this.pick([9_000_000_000n, 9_000_000_001n]);
      return { rpc: "leaseGrant", req: { ID: this.pick(LEASES.slice(1)), TTL } };
    }
    if (p < 94) return { rpc: "leaseRevoke", req: { ID: this.pick(LEASES) } };
    if (p < 97) return { rpc: "leaseTimeToLive", req: { ID: this.pick(LEASES), keys: this.rnd.chance(0.7) } };
    if (p < 98) return { rpc: "leaseLeases", req: {} };
    // etcd's hash of the history from the compaction to a revision (etcdctl endpoint hashkv).
    return { rpc: "hashKv", req: { revision: this.someRevision() } };
  }
}

/**
 * Whether the serving member answers from its own state (etcd's serializable reads): a serializable
 * range, and a txn whose every operation is one, a txn with none included (etcd's isTxnSerializable).
 */
function servedLocally(r: Request): boolean {
  if (r.rpc === "range") return r.req.serializable;
  if (r.rpc !== "txn") return false;
  return [...r.req.success, ...r.req.failure].every((op) => op.requestRange?.serializable === true);
}

type Outcome = { ok: unknown } | { code: number; details: string };

function send(clients: ChainfireClients, r: Request): Promise<Outcome> {
  const client = r.rpc.startsWith("lease")
    ? clients.lease
    : r.rpc === "hashKv"
      ? clients.maintenance
      : clients.kv;
  return call(client, r.rpc, r.req, 20_000).then(
    (ok) => ({ ok }),
    (err: ServiceError) => ({ code: err.code, details: err.details }),
  );
}

/** Each request's path on the JSON gateway (etcd 3.4's rpc.proto HTTP annotations). */
const GATEWAY_PATHS: Record<Request["rpc"], string> = {
  range: "kv/range",
  put: "kv/put",
  deleteRange: "kv/deleterange",
  txn: "kv/txn",
  compact: "kv/compaction",
  leaseGrant: "lease/grant",
  leaseRevoke: "kv/lease/revoke",
  leaseTimeToLive: "kv/lease/timetolive",
  leaseLeases: "kv/lease/leases",
  // etcd 3.4 maps Hash and HashKV to the same path (Hash takes it): HashKV goes over gRPC only.
  hashKv: "maintenance/hash",
};

/** A request as the gateway takes it: bytes in base64, 64-bit integers as strings. */
function gatewayJson(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString("base64");
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(gatewayJson);
  if (value === null || typeof value !== "object") return value;
  const fields = Object.entries(value).filter(([, v]) => v !== undefined);
  return Object.fromEntries(fields.map(([k, v]) => [k, gatewayJson(v)]));
}

/**
 * Whether the answer needs nothing but its headers taken out to compare: no range sorted on anything
 * but the key (ties), no lease TTL or lease list. Such requests may go through the JSON gateway.
 */
function plainAnswer(r: Request): boolean {
  const keySorted = (req: etcd.RangeRequest) => req.sortTarget === etcd.RangeRequest_SortTarget.KEY;
  if (r.rpc === "range") return keySorted(r.req);
  if (r.rpc === "txn")
    return allOps(r.req).every((op) => op.requestRange === undefined || keySorted(op.requestRange));
  return r.rpc !== "leaseTimeToLive" && r.rpc !== "leaseLeases" && r.rpc !== "hashKv";
}

/** Headers reduced to their revision, at any depth of a gateway answer. */
function revisionsOnly(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revisionsOnly);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => {
      if (k !== "header") return [k, revisionsOnly(v)];
      const revision = (v as { revision?: string }).revision;
      return [k, revision === undefined ? {} : { revision }];
    }),
  );
}

interface GatewayOutcome {
  status: number;
  body: unknown;
}

/** One request through the JSON gateway on the client URL, as `curl -X POST` sends it. */
async function post(endpoint: string, r: Request): Promise<GatewayOutcome> {
  const res = await fetch(`http://${endpoint}/v3/${GATEWAY_PATHS[r.rpc]}`, {
    method: "POST",
    body: JSON.stringify(gatewayJson(r.req)),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, body: revisionsOnly(JSON.parse(await res.text())) };
}

const SORT_FIELD: Record<number, (kv: mvccpb.KeyValue) => string | bigint> = {
  [etcd.RangeRequest_SortTarget.VERSION]: (kv) => kv.version,
  [etcd.RangeRequest_SortTarget.CREATE]: (kv) => kv.createRevision,
  [etcd.RangeRequest_SortTarget.MOD]: (kv) => kv.modRevision,
  [etcd.RangeRequest_SortTarget.VALUE]: (kv) => kv.value.toString("latin1"),
};

/**
 * A range response as comparable: under a sort on anything but the key, keys of equal sort value
 * are put in key order, and when the limit cut a run of equal values, only that run's length counts.
 */
function canonicalRange(req: etcd.RangeRequest, res: etcd.RangeResponse): unknown {
  const field = SORT_FIELD[req.sortTarget];
  if (field === undefined || res.kvs.length < 2) return res;
  const kvs = [...res.kvs];
  const runs: mvccpb.KeyValue[][] = [];
  for (const kv of kvs) {
    const last = runs[runs.length - 1];
    if (last !== undefined && field(last[0]!) === field(kv)) last.push(kv);
    else runs.push([kv]);
  }
  const cut = req.limit > 0n && BigInt(kvs.length) === req.limit && res.more;
  const shown = runs.map((run, i) =>
    cut && i === runs.length - 1
      ? { sortValue: field(run[0]!), keysInCutRun: run.length }
      : [...run].sort((a, b) => Buffer.compare(a.key, b.key)),
  );
  return { ...res, kvs: shown };
}

/** What both servers must agree on, with the legitimately different parts taken out. */
function canonical(r: Request, o: Outcome): unknown {
  if (!("ok" in o)) return o;
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (Buffer.isBuffer(value)) return value.toString("latin1");
    if (value === null || typeof value !== "object") return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === "header") out[k] = v === undefined ? v : { revision: (v as etcd.ResponseHeader).revision };
      else out[k] = strip(v);
    }
    return out;
  };
  const res = o.ok as Record<string, unknown>;
  switch (r.rpc) {
    case "range":
      return strip(canonicalRange(r.req, res as unknown as etcd.RangeResponse));
    case "txn":
      return strip(canonicalTxn(r.req, res as unknown as etcd.TxnResponse));
    case "leaseTimeToLive": {
      const t = res as unknown as etcd.LeaseTimeToLiveResponse;
      // The remaining TTL depends on timing: only whether the lease exists (-1) must agree.
      return strip({ ...t, TTL: t.TTL < 0n ? t.TTL : "live", keys: [...t.keys].sort(Buffer.compare) });
    }
    case "leaseLeases": {
      const l = res as unknown as etcd.LeaseLeasesResponse;
      return strip({ ...l, leases: [...l.leases].sort((a, b) => (a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0)) });
    }
    default:
      return strip(res);
  }
}

/** A txn's responses, with the ranges in it made comparable as above (the branch taken decides). */
function canonicalTxn(req: etcd.TxnRequest, res: etcd.TxnResponse): unknown {
  const ops = res.succeeded ? req.success : req.failure;
  return {
    ...res,
    responses: res.responses.map((r, i) => {
      const op = ops[i];
      if (r.responseRange !== undefined && op?.requestRange !== undefined)
        return { responseRange: canonicalRange(op.requestRange, r.responseRange) };
      if (r.responseTxn !== undefined && op?.requestTxn !== undefined)
        return { responseTxn: canonicalTxn(op.requestTxn, r.responseTxn) };
      return r;
    }),
  };
}

function describeRequest(r: Request): string {
  return `${r.rpc} ${JSON.stringify(r.req, (_k, v) =>
    typeof v === "bigint" ? `${v}n` : v?.type === "Buffer" ? Buffer.from(v.data).toString("latin1") : v,
  )}`;
}

interface WatchSpec {
  key: Buffer;
  rangeEnd: Buffer;
  startRevision: bigint;
  filters: etcd.WatchCreateRequest_FilterType[];
  prevKv: boolean;
}

interface Watched {
  canceled?: boolean;
  compactRevision?: bigint;
  events: WatchedEvent[];
}

function describeSpec(spec: WatchSpec): string {
  const shown = { ...spec, key: spec.key.toString("latin1"), rangeEnd: spec.rangeEnd.toString("latin1") };
  return JSON.stringify(shown, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
}

/** Watches over part of the keys, from some revision, with filters: drawn apart from the requests. */
function drawWatchSpecs(rnd: SeededRandom, revision: bigint, count: number): WatchSpec[] {
  return Array.from({ length: count }, () => {
    const key = KEYS[rnd.intBelow(KEYS.length)]!;
    const ends = [Buffer.alloc(0), Buffer.from([0]), prefixEnd(key), KEYS[rnd.intBelow(KEYS.length)]!];
    const filters: etcd.WatchCreateRequest_FilterType[] = [];
    if (rnd.chance(0.25)) filters.push(etcd.WatchCreateRequest_FilterType.NOPUT);
    if (rnd.chance(0.25)) filters.push(etcd.WatchCreateRequest_FilterType.NODELETE);
    return {
      key,
      rangeEnd: ends[rnd.intBelow(ends.length)]!,
      startRevision: BigInt(1 + rnd.intBelow(Number(revision))),
      filters,
      prevKv: rnd.chance(0.5),
    };
  });
}

/** How many of the full history's events a watch must deliver. */
const expectedCount = (spec: WatchSpec, all: readonly WatchedEvent[]) => selectEvents(spec, all).length;

/** A watch whose events are kept as they come, until `until` has what it waits for and closes it. */
class RecordedWatch {
  private readonly stream: ReturnType<ChainfireClients["watch"]["watch"]>;
  private readonly events: Watched["events"] = [];
  private canceled: { compactRevision: bigint } | undefined;
  /** Resolves with the revision the watch starts after, once the server has created it. */
  readonly created: Promise<bigint>;

  constructor(
    clients: ChainfireClients,
    readonly spec: WatchSpec,
  ) {
    this.stream = clients.watch.watch();
    this.stream.on("error", () => {});
    this.created = new Promise((resolve) => {
      this.stream.on("data", (res: etcd.WatchResponse) => {
        if (res.created) resolve(res.header!.revision);
        if (res.canceled) this.canceled = { compactRevision: res.compactRevision };
        for (const ev of res.events) {
          this.events.push(watchedEvent(ev));
        }
      });
    });
    this.stream.write({ createRequest: { ...spec, progressNotify: false, watchId: 0n, fragment: false } });
  }

  /** The events once `enough` holds for them or the server cancelled the watch (polled, with a deadline). */
  async until(enough: (events: Watched["events"]) => boolean): Promise<Watched> {
    try {
      await until(
        () => this.canceled !== undefined || enough(this.events),
        () => `watch ${describeSpec(this.spec)}: ${this.events.length} event(s) so far`,
        30_000,
      );
    } finally {
      this.stream.cancel();
    }
    const events = [...this.events];
    return this.canceled === undefined ? { events } : { canceled: true, ...this.canceled, events };
  }
}

/** One counter from etcd's metrics (0 when not there yet). */
async function etcdMetric(metricsPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  return m === null ? 0 : Number(m[1]);
}

/**
 * etcd 3.4 removes the history of a compaction without `physical` after answering it, and its
 * readers see the removal only from the backend's next commit (every 100 ms). A HashKV before then
 * counts rows still there (when no key is visible at the hashed revision), and its number changes a
 * moment later. Before a HashKV the test waits on etcd's metrics until every compaction etcd
 * answered has finished, then has etcd defragment, which commits at once and changes no key or
 * revision. chainfire's compaction is done when it answers.
 */
async function etcdCompactionsSettled(side: Side, compactions: number): Promise<void> {
  const finished = "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count";
  const metricsPort = side.cluster.members[0]!.metricsPort;
  await until(
    async () => (await etcdMetric(metricsPort, finished)) >= compactions,
    "etcd's compactions",
    10_000,
  );
  await new Promise<void>((resolve, reject) =>
    side.clients[0]!.maintenance.defragment({}, (err) => (err ? reject(err) : resolve())),
  );
}

describe("randomised KV, Txn, Compact and Lease requests: chainfire answers as etcd 3.4", () => {
  let sides: Sides | undefined;

  beforeAll(async () => {
    sides = await startSides("kv-random-diff");
  }, 120_000);

  afterAll(() => sides?.stop());

  it(
    `${SEEDS.length} seed(s) of ${OPS} requests each`,
    async () => {
      const { etcd: etcdSide, chainfire: chainfireSide } = sides!;
      // One generator runs across the seeds on the same two servers: each seed starts where the
      // previous left both (the same state, or the test has already failed).
      let revision = 1n;
      let compacted = 0n;
      let etcdCompactions = 0;
      let etcdCompactionsWaited = 0;
      for (const seed of SEEDS) {
        const gen = new Generator(new SeededRandom(BigInt(seed)));
        // Which chainfire member serves each request, drawn apart from the requests.
        const members = new SeededRandom(BigInt(seed) ^ 0xc0ffeen);
        const anyMember = () => members.intBelow(chainfireSide.clients.length);
        /** A member that has applied everything acknowledged so far (see caughtUp). */
        const currentMember = async () => {
          const clients = chainfireSide.clients[anyMember()]!;
          await caughtUp(clients);
          return clients;
        };
        // Some requests go through the JSON gateway instead, to both servers alike.
        const transports = new SeededRandom(BigInt(seed) ^ 0x6a7en);
        gen.revision = revision;
        gen.compacted = compacted;
        // Live watches, opened before the requests on a caught-up member, so both start after the
        // same revision. Without prev_kv: etcd reads a live event's prev_kv when it sends the event,
        // and a compaction applied meanwhile would take it away (the history watches check prev_kv).
        const live: RecordedWatch[][] = [];
        for (const spec of drawWatchSpecs(new SeededRandom(BigInt(seed) ^ 0x11fen), revision, 3)) {
          const from = { ...spec, startRevision: 0n, prevKv: false };
          live.push([
            new RecordedWatch(etcdSide.clients[0]!, from),
            new RecordedWatch(await currentMember(), from),
          ]);
        }
        const liveStart: bigint[] = [];
        for (const [e, c] of live) {
          const [fromEtcd, fromChainfire] = await Promise.all([e!.created, c!.created]);
          expect(fromChainfire, `seed ${seed}: live watch ${describeSpec(e!.spec)} created at`).toBe(
            fromEtcd,
          );
          liveStart.push(fromEtcd);
        }
        for (let i = 0; i < OPS; i++) {
          const r = gen.next();
          const member = anyMember();
          if (servedLocally(r) || r.rpc === "hashKv") await caughtUp(chainfireSide.clients[member]!);
          const what = `seed ${seed}, request ${i}`;
          let etcdRevision: bigint | undefined;
          let ok: boolean;
          if (transports.chance(0.25) && plainAnswer(r)) {
            const fromEtcd = await post(etcdSide.cluster.members[0]!.endpoint, r);
            const fromChainfire = await post(chainfireSide.cluster.members[member]!.endpoint, r);
            expect(fromChainfire, `${what} (JSON gateway): ${describeRequest(r)}`).toStrictEqual(fromEtcd);
            const revisionText = (fromEtcd.body as { header?: { revision?: string } }).header?.revision;
            if (revisionText !== undefined) etcdRevision = BigInt(revisionText);
            ok = fromEtcd.status === 200;
          } else {
            if (r.rpc === "hashKv" && etcdCompactionsWaited < etcdCompactions) {
              await etcdCompactionsSettled(etcdSide, etcdCompactions);
              etcdCompactionsWaited = etcdCompactions;
            }
            const fromEtcd = await send(etcdSide.clients[0]!, r);
            const etcdProcess = etcdSide.cluster.members[0]!.process;
            if (etcdProcess?.exitCode !== null || etcdProcess?.signalCode !== null) {
              throw new Error(
                `etcd exited on ${what}: ${describeRequest(r)}\n${etcdSide.cluster.members[0]!.log.slice(-3000)}`,
              );
            }
            const fromChainfire = await send(chainfireSide.clients[member]!, r);
            expect(
              canonical(r, fromChainfire),
              `${what}: ${describeRequest(r)}\netcd answered ${JSON.stringify(canonical(r, fromEtcd), (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`,
            ).toStrictEqual(canonical(r, fromEtcd));
            ok = "ok" in fromEtcd;
            if (ok) etcdRevision = (fromEtcd as { ok: { header?: etcd.ResponseHeader } }).ok.header?.revision;
          }
          if (etcdRevision !== undefined && etcdRevision > gen.revision) gen.revision = etcdRevision;
          if (r.rpc === "compact" && ok) {
            gen.compacted = r.req.revision;
            etcdCompactions++;
          }
        }
        revision = gen.revision;
        compacted = gen.compacted;
        // The history both still hold, replayed by a watch with previous values; then watches over
        // parts of it with filters, each until it has delivered what the full history holds for it
        // or is cancelled for starting below the compaction.
        const everything: WatchSpec = {
          key: Buffer.from([0]),
          rangeEnd: Buffer.from([0]),
          startRevision: compacted + 1n,
          filters: [],
          prevKv: true,
        };
        const reached = (events: Watched["events"]) => events.at(-1)?.kv.modRevision === revision;
        let w1: Watched = { events: [] };
        if (everything.startRevision <= revision) {
          let w2: Watched;
          [w1, w2] = await Promise.all([
            new RecordedWatch(etcdSide.clients[0]!, everything).until(reached),
            new RecordedWatch(await currentMember(), everything).until(reached),
          ]);
          expect(w2, `seed ${seed}: watch ${describeSpec(everything)}`).toStrictEqual(w1);
        }
        // What the live watches saw: as many events as the history still held has for each (all of
        // them unless the seed compacted past the watch's start; then the first that many).
        for (const [k, [e, c]] of live.entries()) {
          const count = expectedCount({ ...e!.spec, startRevision: liveStart[k]! + 1n }, w1.events);
          const first = (w: Watched): Watched => ({ ...w, events: w.events.slice(0, count) });
          const enough = (events: Watched["events"]) => events.length >= count;
          const [l1, l2] = (await Promise.all([e!.until(enough), c!.until(enough)])).map(first);
          expect(l2, `seed ${seed}: live watch ${describeSpec(e!.spec)}`).toStrictEqual(l1);
        }
        for (const spec of drawWatchSpecs(new SeededRandom(BigInt(seed) ^ 0x5eedn), revision, 6)) {
          const count = expectedCount(spec, w1.events);
          if (count === 0 && spec.startRevision >= compacted) continue;
          const enough = (events: Watched["events"]) => events.length >= count;
          const [s1, s2] = await Promise.all([
            new RecordedWatch(etcdSide.clients[0]!, spec).until(enough),
            new RecordedWatch(await currentMember(), spec).until(enough),
          ]);
          expect(s2, `seed ${seed}: watch ${describeSpec(spec)}`).toStrictEqual(s1);
        }
      }
    },
    600_000 + SEEDS.length * 60_000,
  );
});
