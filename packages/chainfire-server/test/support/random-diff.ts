// Support for the randomised differential tests: a 1-member etcd 3.4 and a 3-member chainfire side by
// side, seed lists from the environment, and the pieces both tests compare watches with.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChainfireClients, createClients, etcd, mvccpb } from "@photoncloud/chainfire-api";
import { Cluster, type ClusterKind, hasBinary } from "../../bench/cluster.js";
import { inRange, keyRange } from "../../src/mvcc/key-range.js";
import { rangeRequest } from "../../src/mvcc/messages.js";
import { call } from "./daemon-cluster.js";

/** Seeds from an environment variable such as "1-200" or "7,9", else `fallback`. */
export function seedsFromEnv(name: string, fallback: string): number[] {
  const seeds: number[] = [];
  for (const part of (process.env[name] ?? fallback).split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) throw new Error(`${name}: "${part}" is not a seed or a range such as 1-50`);
    for (let s = Number(m[1]); s <= Number(m[2] ?? m[1]); s++) seeds.push(s);
  }
  return seeds;
}

/** The servers a fault test runs against, from an environment variable such as "etcd,chainfire". */
export function kindsFromEnv(name: string): ClusterKind[] {
  return (process.env[name] ?? "chainfire").split(",").map((k) => {
    if (k !== "chainfire" && k !== "etcd") throw new Error(`${name}: "${k}" is not chainfire or etcd`);
    return k;
  });
}

/** A positive whole number from an environment variable, else `fallback`. */
export function countFromEnv(name: string, fallback: number): number {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name}: "${process.env[name]}" is not a positive integer`);
  return n;
}

export interface Side {
  cluster: Cluster;
  /** One per member. */
  clients: ChainfireClients[];
}

/** The two servers under comparison, started empty, and the folder they keep their data in. */
export interface Sides {
  etcd: Side;
  chainfire: Side;
  stop(): void;
}

/**
 * An etcd (one member unless told) and a 3-member chainfire, with the same extra flags. Not skipped
 * without etcd: the test command's set-up (scripts/setup.mjs) installs it.
 */
export async function startSides(name: string, extraArgs: string[] = [], etcdSize = 1): Promise<Sides> {
  if (!hasBinary("etcd"))
    throw new Error("etcd is not on PATH: run `node scripts/setup.mjs` (Debian's etcd-server)");
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  const started: Side[] = [];
  const stop = () => {
    for (const s of started) {
      for (const c of s.clients) c.close();
      s.cluster.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // chainfire with three members, each request sent to any of them: what a follower forwards must
    // come back as etcd answers. A long election timeout: a leader change under a loaded machine
    // would fail a request that etcd's single member answers.
    for (const [kind, size] of [
      ["etcd", etcdSize],
      ["chainfire", 3],
    ] as const) {
      const cluster = await Cluster.start({ kind, dir: join(dir, kind), size, electionMs: 2000, extraArgs });
      // As etcd's Go client, no limit on the size of a message received (a watch's history).
      const clients = cluster.members.map((m) =>
        createClients(m.endpoint, undefined, { "grpc.max_receive_message_length": -1 }),
      );
      started.push({ cluster, clients });
    }
  } catch (err) {
    stop();
    throw err;
  }
  return { etcd: started[0]!, chainfire: started[1]!, stop };
}

/**
 * A linearizable read on one chainfire member: once it answers, the member has applied every
 * request acknowledged before it. Run before what a member answers from its own state (serializable
 * reads, HashKV, a watch's headers) and before opening a watch there, where etcd's single member is
 * always current.
 */
export async function caughtUp(clients: ChainfireClients): Promise<void> {
  try {
    await call(clients.kv, "range", rangeRequest({ key: Buffer.from("~"), countOnly: true }), 20_000);
  } catch (err) {
    throw new Error(`linearizable read before a local one failed: ${(err as Error).message}`);
  }
}

/** Every operation of a txn, in both branches and in the txns nested in them. */
export function allOps(txn: etcd.TxnRequest): etcd.RequestOp[] {
  return [...txn.success, ...txn.failure].flatMap((op) =>
    op.requestTxn ? [op, ...allOps(op.requestTxn)] : [op],
  );
}

/**
 * Whether the txn may be one chainfire refuses on purpose where etcd 3.4 applies it (README, "Two
 * txns"): a delete from a key on (range_end "\0") and a put of a key in that range. Such txns are
 * drawn again, since the two stores would part there; store and API tests cover the refusal.
 */
export function refusedOnPurpose(txn: etcd.TxnRequest): boolean {
  const all = allOps(txn);
  const fromKeys = all.flatMap((op) => {
    const d = op.requestDeleteRange;
    return d !== undefined && d.rangeEnd.length === 1 && d.rangeEnd[0] === 0 ? [d.key] : [];
  });
  return all.some(
    (op) => op.requestPut && fromKeys.some((from) => Buffer.compare(op.requestPut!.key, from) >= 0),
  );
}

/** A request or answer as failure text: 64-bit integers marked, bytes as latin1 text. */
export const show = (v: unknown) =>
  JSON.stringify(v, (_k, x) =>
    typeof x === "bigint" ? `${x}n` : x?.type === "Buffer" ? Buffer.from(x.data).toString("latin1") : x,
  );

/** A key-value as compared: key and value as latin1 text, so a failure shows them. */
export const latin1Kv = (kv: mvccpb.KeyValue) => ({
  ...kv,
  key: kv.key.toString("latin1"),
  value: kv.value.toString("latin1"),
});

export interface WatchedEvent {
  type: number;
  kv: ReturnType<typeof latin1Kv>;
  prevKv: ReturnType<typeof latin1Kv> | undefined;
}

export const watchedEvent = (ev: mvccpb.Event): WatchedEvent => ({
  type: ev.type,
  kv: latin1Kv(ev.kv!),
  prevKv: ev.prevKv && latin1Kv(ev.prevKv),
});

/** What selects a watch's events: its keys, the first revision and the filters. */
export interface EventSelector {
  key: Buffer;
  rangeEnd: Buffer;
  startRevision: bigint;
  filters: etcd.WatchCreateRequest_FilterType[];
}

/** The events of a full history (all keys, every revision) that a watch must deliver. */
export function selectEvents(spec: EventSelector, all: readonly WatchedEvent[]): WatchedEvent[] {
  // As etcd: an empty key is the smallest key, "\0".
  const range = keyRange(spec.key.length === 0 ? Buffer.from([0]) : spec.key, spec.rangeEnd);
  const dropped = (type: number) =>
    spec.filters.includes(
      type === mvccpb.Event_EventType.PUT
        ? etcd.WatchCreateRequest_FilterType.NOPUT
        : etcd.WatchCreateRequest_FilterType.NODELETE,
    );
  return all.filter(
    (ev) => ev.kv.modRevision >= spec.startRevision && inRange(range, ev.kv.key) && !dropped(ev.type),
  );
}
